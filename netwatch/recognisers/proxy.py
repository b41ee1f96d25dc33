"""Proxy and gateway openings: where a flow's real payload begins, and where it goes.

Remote control can reach a home through a proxy (SOCKS, an HTTP CONNECT proxy) or through
RDP's and VNC's own gateways. Each of these opens with a short exchange in the clear: the
client names a target, the proxy answers that the tunnel is up, and from then on both
directions carry the tunnelled protocol unchanged. ``parse_opening`` reads that exchange
from a flow's first bytes and says how many bytes of each direction it took and what the
target is; the pipeline cuts those bytes off and shows the rest to the recognisers as the
flow's payload. An opening is never a detection by itself: a proxied visit to a bank is
still a visit to a bank.

Sans-I/O, like the recognisers: bytes in, an ``Opening`` (or ``None``: wait for more, or
``NOT_PROXIED``) out.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

# A client's proxy request is small: SOCKS4's user id and SOCKS4a's host name, SOCKS5's
# greeting + RFC 1929 credentials (255 + 255) + request (a name of at most 255), an HTTP
# CONNECT head. Past this many bytes with no complete opening, the flow is not a proxy.
# HTTP heads: 8 KiB, the smallest limit of the usual servers (Apache's and nginx's default
# request line and header buffers, RFC 9112 §2.3 leaves it to the server).
MAX_OPENING = 8192
# HTTP CONNECT: a proxy asking for credentials (407, RFC 9110 §15.4.8) is answered on the
# same connection with a new CONNECT; more rounds than this are not a tunnel being opened.
MAX_HTTP_ROUNDS = 3
# UltraVNC repeater: the viewer or server sends a block of this many bytes, NUL-padded text,
# "ID:<number>" or "host:port" (x11vnc(1), -connect repeater=: "the same as pre250=, this is
# the ultravnc repeater buffer size"); to a viewer, the repeater first sends this banner
# (UltraVNC repeater add-on, http://www.uvnc.com/addons/repeater.html, mode I).
REPEATER_BLOCK = 250
REPEATER_BANNER = b"RFB 000.000\n"

SOCKS4, SOCKS5 = 4, 5
SOCKS_CONNECT = 1  # SOCKS4 CD and SOCKS5 CMD for CONNECT (SOCKS4 protocol; RFC 1928 §4)
SOCKS4_GRANTED = 90  # SOCKS4 reply CD "request granted"
SOCKS5_NO_AUTH, SOCKS5_USERPASS = 0x00, 0x02  # RFC 1928 §3 METHOD values
RFC1929_VERSION = 1  # username/password sub-negotiation version (RFC 1929 §2)
ATYP_IPV4, ATYP_NAME, ATYP_IPV6 = 1, 3, 4  # RFC 1928 §5
ADDR_LEN = {ATYP_IPV4: 4, ATYP_IPV6: 16}

HTTP_CONNECT = b"CONNECT "
# MS-TSGU 2.2.3.1.1 and 2.2.3.1.2: the RD Gateway's HTTP transport opens its IN and OUT
# channels with these custom methods (target "/remoteDesktopGateway/", HTTP/1.1).
RDG_METHODS = (b"RDG_IN_DATA ", b"RDG_OUT_DATA ")
REPEATER_ID = b"ID:"
# The first bytes a client's opening may start with (SOCKS versions, the methods, an
# UltraVNC repeater ID); a server that speaks first only in the repeater's viewer mode.
CLIENT_FIRST = frozenset({SOCKS4, SOCKS5, HTTP_CONNECT[0], RDG_METHODS[0][0], REPEATER_ID[0]})

REQUEST_LINE = re.compile(rb"([A-Z_]+) (\S+) HTTP/1\.[01]\r?\n")
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r\n]")
CONTENT_LENGTH = re.compile(rb"\r?\ncontent-length:[ \t]*(\d{1,9})", re.IGNORECASE)
HOST_TEXT = re.compile(r"[A-Za-z0-9._-]{1,253}")
REPEATER_TEXT = re.compile(rb"(ID:(\d{1,32})|([A-Za-z0-9._-]{1,253}):(\d{1,5}))")
REPEATER_CHARS = re.compile(rb"[A-Za-z0-9._:-]*")
HOST_OF = re.compile(rb"\r?\nhost:[ \t]*([^\r\n]+)", re.IGNORECASE)

# The HTTP_PACKET header of the RD Gateway's HTTP transport (MS-TSGU 2.2.10.1, little
# endian): packetType u16, reserved u16, packetLength u32 (header included). Packet types
# are listed in 2.2.5.3.3: the handshake request (PKT_TYPE_HANDSHAKE_REQUEST 0x1, 2.2.10.10)
# is the client's first packet, on the IN channel; the handshake response (0x2, 2.2.10.11)
# the server's, on the OUT channel.
RDG_PACKET = struct.Struct("<HHI")
RDG_FIRST_TYPES = (0x1, 0x2)


@dataclass(slots=True, frozen=True)
class Opening:
    """A proxy's opening: what it was, how many bytes of each direction it took, and the
    target it named (host name or address text; ``None`` when it named none)."""

    protocol: str  # socks4, socks4a, socks5, http-connect, ultravnc-repeater, rd-gateway
    skip: tuple[int, int]  # bytes of [client->server, server->client] the opening took
    host: str | None = None
    port: int | None = None
    address: bytes | None = None  # the target as packed IPv4/IPv6, when given as one
    # The tool the opening itself belongs to: a gateway that exists only to carry one
    # protocol (the RD Gateway's channel carries RDP; nothing else speaks its packets).
    carries: str = ""
    detail: str = ""

    @property
    def target(self) -> str:
        if self.host is None:
            return ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


class _NotProxied:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_PROXIED"


NOT_PROXIED = _NotProxied()
Parsed = Opening | None | _NotProxied


def parse_opening(cts: bytes | bytearray, stc: bytes | bytearray) -> Parsed:
    """Read a proxy opening from the first bytes of each direction.

    Returns the ``Opening`` once the client's request and the proxy's success reply are
    both complete, ``None`` while they may still become one, ``NOT_PROXIED`` otherwise
    (including a proxy that refused: nothing is tunnelled then)."""
    if stc[:1] == REPEATER_BANNER[:1] and not cts:
        return _repeater_viewer(cts, stc)
    if not cts:
        return NOT_PROXIED if stc else None
    if stc.startswith(REPEATER_BANNER):
        return _repeater_viewer(cts, stc)
    first = cts[0]
    if first not in CLIENT_FIRST:
        return NOT_PROXIED
    if first == SOCKS5:
        res = _socks5(bytes(cts[:MAX_OPENING]), bytes(stc[:MAX_OPENING]))
    elif first == SOCKS4:
        res = _socks4(bytes(cts[:MAX_OPENING]), bytes(stc[:MAX_OPENING]))
    elif first == REPEATER_ID[0]:
        res = _repeater_id(cts, stc)
    else:
        res = _http(bytes(cts[:MAX_OPENING]), bytes(stc[:MAX_OPENING]))
    if res is None and len(cts) >= MAX_OPENING:
        return NOT_PROXIED
    return res


# ---------------------------------------------------------------- SOCKS


def _socks4(c: bytes, s: bytes) -> Parsed:
    """SOCKS4 (Ying-Da Lee, "SOCKS: A protocol for TCP proxy across firewalls"): VN 4,
    CD 1, DSTPORT, DSTIP, USERID, NUL; SOCKS4a: DSTIP 0.0.0.x (x != 0) and the host name,
    NUL, after the user id. Reply: VN 0, CD 90 (granted), 6 more bytes."""
    if len(c) < 2:
        return None
    if c[1] != SOCKS_CONNECT:
        return NOT_PROXIED
    if len(c) < 9:
        return None
    port = struct.unpack_from("!H", c, 2)[0]
    ip = c[4:8]
    end = c.find(b"\x00", 8)
    if end < 0:
        return None
    host: str | None = None
    address: bytes | None = ip
    protocol = "socks4"
    if ip[:3] == b"\x00\x00\x00" and ip[3]:
        name_end = c.find(b"\x00", end + 1)
        if name_end < 0:
            return None
        named = _named(c[end + 1:name_end].decode("latin-1"))
        if named is None:
            return NOT_PROXIED
        host, address = named
        end, protocol = name_end, "socks4a"
    else:
        host = ipaddress.IPv4Address(ip).compressed
    if port == 0:
        return NOT_PROXIED
    if len(s) < 8:
        return None if len(s) < 2 or s[:2] == bytes([0, SOCKS4_GRANTED]) else NOT_PROXIED
    if s[0] != 0 or s[1] != SOCKS4_GRANTED:
        return NOT_PROXIED
    return Opening(protocol, (end + 1, 8), host, port, address)


def _socks5(c: bytes, s: bytes) -> Parsed:
    """RFC 1928: greeting (VER 5, NMETHODS, METHODS) and the chosen METHOD (§3); with
    username/password, RFC 1929's request and status 0 (§2); then the request (VER 5, CMD,
    RSV 0, ATYP, DST.ADDR, DST.PORT) and the reply with REP 0 "succeeded" (§4-§6). A client
    may send all its parts before the answers arrive, so each side is read on its own."""
    if len(c) < 2:
        return None
    n = c[1]
    if n == 0:
        return NOT_PROXIED
    ci = 2 + n
    if len(c) < ci or len(s) < 2:
        return None
    if s[0] != SOCKS5 or s[1] not in c[2:ci]:
        return NOT_PROXIED  # 0xFF (no acceptable method) lands here too
    si = 2
    user = ""
    if s[1] == SOCKS5_USERPASS:
        if len(c) < ci + 2:
            return None
        if c[ci] != RFC1929_VERSION:
            return NOT_PROXIED
        ulen = c[ci + 1]
        if len(c) < ci + 2 + ulen + 1:
            return None
        user = c[ci + 2:ci + 2 + ulen].decode("latin-1")
        plen = c[ci + 2 + ulen]
        ci += 2 + ulen + 1 + plen
        if len(s) < si + 2:
            return None
        if s[si] != RFC1929_VERSION or s[si + 1] != 0:
            return NOT_PROXIED
        si += 2
    elif s[1] != SOCKS5_NO_AUTH:
        return NOT_PROXIED  # GSSAPI and private methods: their exchange is not read
    req = _socks5_address(c, ci, request=True)
    if req is None or isinstance(req, _NotProxied):
        return req
    host, port, address, cend = req
    rep = _socks5_address(s, si, request=False)
    if rep is None or isinstance(rep, _NotProxied):
        return rep
    detail = f"user {user}" if user else ""
    return Opening("socks5", (cend, rep[3]), host, port, address, detail=detail)


def _socks5_address(b: bytes, i: int, request: bool
                    ) -> tuple[str, int, bytes | None, int] | None | _NotProxied:
    """A SOCKS5 request or reply at ``i``: (host, port, packed address, end)."""
    if len(b) < i + 5:
        return None
    if b[i] != SOCKS5 or b[i + 2] != 0:
        return NOT_PROXIED
    if request and b[i + 1] != SOCKS_CONNECT or not request and b[i + 1] != 0:
        return NOT_PROXIED  # BIND, UDP ASSOCIATE, or a refusal (REP != 0)
    atyp = b[i + 3]
    if atyp == ATYP_NAME:
        start, size = i + 5, b[i + 4]
    elif atyp in ADDR_LEN:
        start, size = i + 4, ADDR_LEN[atyp]
    else:
        return NOT_PROXIED
    end = start + size + 2
    if len(b) < end:
        return None
    raw = b[start:start + size]
    port = struct.unpack_from("!H", b, start + size)[0]
    if atyp == ATYP_NAME:
        # Clients send address literals as names too (FreeRDP 2 does): read them as such.
        named = _named(raw.decode("latin-1"))
        if named is None:
            return NOT_PROXIED
        return named[0], port, named[1], end
    return ipaddress.ip_address(raw).compressed, port, raw, end


def _host_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text.lower() if HOST_TEXT.fullmatch(text) else None


# ---------------------------------------------------------------- HTTP


def _head(b: bytes, i: int) -> int | None:
    """The end of the HTTP head starting at ``i`` (after its empty line), None if not yet."""
    end = b.find(b"\r\n\r\n", i)
    if end >= 0:
        return end + 4
    end = b.find(b"\n\n", i)
    return end + 2 if end >= 0 else None


def _http(c: bytes, s: bytes) -> Parsed:
    """HTTP CONNECT (RFC 9110 §9.3.6): "CONNECT host:port HTTP/1.1", any 2xx answer opens
    the tunnel; a 407 with a body of Content-Length bytes may come first. The RD Gateway's
    RDG_IN_DATA / RDG_OUT_DATA (MS-TSGU 3.3.5.1) answered by 200: the channel's packets
    follow, and those are RDP's own."""
    ci = si = 0
    for _ in range(MAX_HTTP_ROUNDS):
        if not any(c.startswith(m, ci) or m.startswith(c[ci:]) for m in
                   (HTTP_CONNECT, *RDG_METHODS)):
            return NOT_PROXIED
        cend = _head(c, ci)
        if cend is None:
            return None
        line = REQUEST_LINE.match(c, ci)
        if line is None:
            return NOT_PROXIED
        method, target = line.group(1), line.group(2).decode("latin-1")
        send = _head(s, si)
        if send is None and method != HTTP_CONNECT.strip() and not s[si:]:
            # The IN channel's packets may follow its request before any answer.
            return _rd_gateway(c, s, cend, si, target)
        if send is None:
            if len(s) - si > 12 and STATUS_LINE.match(s, si) is None:
                return NOT_PROXIED
            return None
        status = STATUS_LINE.match(s, si)
        if status is None:
            return NOT_PROXIED
        code = int(status.group(1))
        if 200 <= code < 300:
            if method == HTTP_CONNECT.strip():
                return _connect_target(target, (cend, send))
            return _rd_gateway(c, s, cend, send, target)
        if code not in (401, 407):
            return NOT_PROXIED  # refused: nothing is tunnelled
        body = CONTENT_LENGTH.search(s, si, send)
        si = send + (int(body.group(1)) if body else 0)
        ci = cend
        if ci >= len(c):
            return None
    return NOT_PROXIED


def _connect_target(target: str, skip: tuple[int, int]) -> Parsed:
    """The authority form "host:port" (RFC 9110 §9.3.6, RFC 3986 §3.2.2 for "[v6]:port")."""
    host, sep, port = target.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        return NOT_PROXIED
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    named = _named(host)
    if named is None:
        return NOT_PROXIED
    return Opening("http-connect", skip, named[0], int(port), named[1])


def _named(text: str) -> tuple[str, bytes | None] | None:
    """A target as (host, packed address when it is an address literal), None if neither."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        name = _host_text(text.encode("latin-1"))
        return None if name is None else (name, None)
    return ip.compressed, ip.packed


def _rd_gateway(c: bytes, s: bytes, cend: int, send: int, target: str) -> Parsed:
    """The gateway's channel is RDP's once its first HTTP_PACKET is there, either way."""
    if cend == len(c) and send == len(s):
        return None
    for body in (c[cend:], s[send:]):
        if len(body) < RDG_PACKET.size:
            continue
        ptype, reserved, length = RDG_PACKET.unpack_from(body)
        if ptype in RDG_FIRST_TYPES and reserved == 0 and RDG_PACKET.size <= length <= 65535:
            host = HOST_OF.search(c, 0, cend)
            name = _host_text(host.group(1).split(b":")[0]) if host else None
            return Opening("rd-gateway", (cend, send), name, None, None, "rdp",
                           f"{target}, HTTP_PACKET type {ptype:#x}")
    if len(c) - cend >= RDG_PACKET.size or len(s) - send >= RDG_PACKET.size:
        return NOT_PROXIED
    return None



# ---------------------------------------------------------------- UltraVNC repeater


Block = tuple[tuple[str, bytes | None] | None, int | None, str]


def _repeater_block(c: bytes | bytearray) -> Block | None | _NotProxied:
    """The 250-byte block: ((host, address), port, what it said), None while short, or
    NOT_PROXIED."""
    head = bytes(c[:REPEATER_BLOCK])
    nul = head.find(b"\x00")
    text = head if nul < 0 else head[:nul]
    if nul >= 0 and head[nul:].strip(b"\x00") or not REPEATER_CHARS.fullmatch(text):
        return NOT_PROXIED
    if len(head) < REPEATER_BLOCK:
        return None
    m = REPEATER_TEXT.fullmatch(text)
    if m is None:
        return NOT_PROXIED
    if m.group(2) is not None:
        return None, None, f"repeater ID {m.group(2).decode()}"
    host = _named(m.group(3).decode("ascii"))
    port = int(m.group(4))
    if host is None or not 0 < port < 65536:
        return NOT_PROXIED
    return host, port, "host:port block"


def _repeater_viewer(cts: bytes | bytearray, stc: bytes | bytearray) -> Parsed:
    """Mode I: the repeater greets the viewer with "RFB 000.000\\n", the viewer answers with
    the block; the real server's RFB greeting follows."""
    if len(stc) < len(REPEATER_BANNER):
        return None if REPEATER_BANNER.startswith(bytes(stc)) else NOT_PROXIED
    if not stc.startswith(REPEATER_BANNER):
        return NOT_PROXIED
    got = _repeater_block(cts)
    if got is None or isinstance(got, _NotProxied):
        return got
    host, port, what = got
    name, address = host if host is not None else (None, None)
    return Opening("ultravnc-repeater", (REPEATER_BLOCK, len(REPEATER_BANNER)), name, port,
                   address, detail=f"viewer side, {what}")


def _repeater_id(cts: bytes | bytearray, stc: bytes | bytearray) -> Parsed:
    """Mode II: the VNC server opens with the "ID:" block, then speaks RFB as a server."""
    got = _repeater_block(cts)
    if got is None or isinstance(got, _NotProxied):
        return got
    host, _port, what = got
    if host is not None:
        return NOT_PROXIED
    return Opening("ultravnc-repeater", (REPEATER_BLOCK, 0), detail=f"server side, {what}")
