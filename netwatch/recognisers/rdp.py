"""RDP: TPKT + X.224 Connection Request / Confirm (TCP) and the MS-RDPEUDP SYN (UDP).

Byte layouts from MS-RDPBCGR 2.2.1.1 (Client X.224 Connection Request PDU) and 2.2.1.2
(Server X.224 Connection Confirm PDU), TPKT per RFC 1006 §6, MS-RDPEUDP 2.2.2.1 (RDPUDP_FEC
header) and 3.1.5.1.1 (SYN datagram padded to at least 1232 bytes), as restated in
../shared/reference/tools.yaml entry "rdp".
"""

from __future__ import annotations

import struct

from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

TPKT_VERSION = 3
X224_CR = 0xE0  # Connection Request TPDU code (upper nibble; lower nibble is CDT, 0)
X224_CC = 0xD0  # Connection Confirm
RDP_NEG_REQ = 0x01
RDP_NEG_RSP = 0x02
RDP_NEG_FAILURE = 0x03
NEG_LEN = 8
# Smallest CR: 4 TPKT + 7 X.224 fixed part. A CR carries at most a cookie or routing token
# and an 8-byte RDP_NEG_REQ; mstsc's cookie is cut at 9 characters of user name, but a
# routing token can be longer, so bound the whole PDU loosely by 512 bytes.
MIN_CR = 11
MAX_CR = 512
COOKIE = b"Cookie: mstshash="
ROUTING_TOKEN = b"Cookie: msts="
PROTOCOLS = {0x0: "standard RDP security", 0x1: "TLS", 0x2: "CredSSP", 0x4: "RDSTLS",
             0x8: "CredSSP with Early User Authorization"}

# MS-RDPEUDP SYN: snSourceAck = -1, flags RDPUDP_FLAG_SYN, MTUs between 1132 and 1232, the
# datagram zero-padded to at least 1232 bytes (3.1.5.1.1).
RDPUDP_FLAG_SYN = 0x0001
RDPUDP_FLAG_ACK = 0x0004
RDPUDP_MIN_MTU = 1132
RDPUDP_MAX_MTU = 1232
_u16 = struct.Struct("!H").unpack_from
_u32le = struct.Struct("<I").unpack_from


def _protocols(mask: int) -> str:
    names = [n for bit, n in PROTOCOLS.items() if bit and mask & bit]
    return ", ".join(names) if names else PROTOCOLS[0]


def parse_connection_request(data: bytes | bytearray) -> tuple[bool, list[Evidence]] | None:
    """Recognise a Client X.224 Connection Request; None when the bytes are not one.

    Returns (strong, evidence): strong when a cookie, routing token or a well-formed
    RDP_NEG_REQ confirms it, weak when only the TPKT/X.224 framing matched.
    """
    if len(data) < MIN_CR or data[0] != TPKT_VERSION or data[1] != 0:
        return None
    tlen = _u16(data, 2)[0]
    if tlen < MIN_CR or tlen > MAX_CR or data[5] & 0xF0 != X224_CR:
        return None
    li = data[4]
    if li != tlen - 5:
        return None
    body = bytes(data[11:tlen])
    ev = [Evidence("handshake", "X.224 Connection Request")]
    strong = False
    if body.startswith(COOKIE):
        end = body.find(b"\r\n")
        if end < 0:
            return None  # incomplete: wait for more bytes
        ev[0].detail = "mstshash=" + body[len(COOKIE):end].decode("latin-1")
        body = body[end + 2:]
        strong = True
    elif body.startswith(ROUTING_TOKEN) or body.startswith(b"Cookie: "):
        end = body.find(b"\r\n")
        if end < 0:
            return None
        ev[0].detail = "routing token"
        body = body[end + 2:]
        strong = True
    if len(body) >= NEG_LEN and body[0] == RDP_NEG_REQ and _u16(body, 2)[0] == 0x0800:
        req = _u32le(body, 4)[0]
        ev.append(Evidence("handshake", "RDP_NEG_REQ", "requested: " + _protocols(req)))
        strong = True
    elif body:
        # Bytes after the cookie that are not an RDP_NEG_REQ: still a CR, but say less.
        strong = strong and len(body) < NEG_LEN
    return strong, ev


def parse_connection_confirm(data: bytes | bytearray) -> list[Evidence] | None:
    """Recognise a Server X.224 Connection Confirm carrying RDP_NEG_RSP or RDP_NEG_FAILURE.

    A bare CC (no negotiation) is also what other X.224 users send, so it is not taken.
    """
    if len(data) < 19 or data[0] != TPKT_VERSION or data[1] != 0:
        return None
    tlen = _u16(data, 2)[0]
    if tlen != 19 or data[4] != 14 or data[5] & 0xF0 != X224_CC:
        return None
    t = data[11]
    if t not in (RDP_NEG_RSP, RDP_NEG_FAILURE):
        return None
    code = _u32le(data, 15)[0]
    bad_len = "" if data[13] == NEG_LEN and data[14] == 0 else \
        f", length field {data[13] | data[14] << 8} where the spec says 8"
    if t == RDP_NEG_RSP:
        return [Evidence("handshake", "X.224 Connection Confirm",
                         "RDP_NEG_RSP selected: " + _protocols(code) + bad_len)]
    return [Evidence("handshake", "X.224 Connection Confirm",
                     f"RDP_NEG_FAILURE code {code}{bad_len}")]


def parse_rdpeudp_syn(data: bytes) -> Evidence | None:
    if len(data) < RDPUDP_MAX_MTU or data[:4] != b"\xff\xff\xff\xff":
        return None
    flags = _u16(data, 6)[0]
    if not flags & RDPUDP_FLAG_SYN or flags & RDPUDP_FLAG_ACK:
        return None
    up, down = _u16(data, 12)[0], _u16(data, 14)[0]
    if not (RDPUDP_MIN_MTU <= up <= RDPUDP_MAX_MTU and RDPUDP_MIN_MTU <= down <= RDPUDP_MAX_MTU):
        return None
    return Evidence("handshake", "MS-RDPEUDP SYN", f"MTU {up}/{down}")


RDPUDP_FLAG_DATA = 0x0008
FEC_HEADER_LEN = 8  # snSourceAck u32, uReceiveWindowSize u16, uFlags u16 (2.2.2.1)


def parse_rdpeudp_data(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(snSourceAck, snCoded, payload) of an RDPUDP data datagram (2.2.2.1, 2.2.2.7,
    2.2.2.4), or None. Seen when a capture starts after the SYN exchange."""
    if len(data) < FEC_HEADER_LEN + 12:
        return None
    flags = _u16(data, 6)[0]
    if flags & (RDPUDP_FLAG_DATA | RDPUDP_FLAG_ACK) != RDPUDP_FLAG_DATA | RDPUDP_FLAG_ACK or \
            flags & RDPUDP_FLAG_SYN:
        return None
    ack_vec = _u16(data, FEC_HEADER_LEN)[0]
    if ack_vec > 2048:
        return None
    src = (FEC_HEADER_LEN + 2 + ack_vec + 3) & ~3  # the ack vector is padded to 4 bytes
    if len(data) < src + 8:
        return None
    return data[0:4], data[src:src + 4], data[src + 8:]


def rdpeudp_data_exchange(cseg: list[bytes], sseg: list[bytes]) -> Evidence | None:
    """Each side acknowledges the other's sequence numbers and carries TLS/DTLS records."""
    if not cseg or not sseg:
        return None
    c = parse_rdpeudp_data(cseg[0])
    s = parse_rdpeudp_data(sseg[0])
    if c is None or s is None:
        return None
    if s[0] != c[1]:
        return None
    tls = any(p[:1] in (b"\x14", b"\x15", b"\x16", b"\x17") and p[1:2] in (b"\x03", b"\xfe")
              for p in (c[2], s[2]))
    if not tls:
        return None
    return Evidence("handshake", "MS-RDPEUDP data exchange",
                    "sequence numbers acknowledged both ways, TLS records inside")


def rdpeudp_synack_matches(syn: bytes, reply: bytes) -> bool:
    """The server's SYN+ACK acknowledges the client's initial sequence number."""
    if len(reply) < 16:
        return False
    flags = _u16(reply, 6)[0]
    return (flags & (RDPUDP_FLAG_SYN | RDPUDP_FLAG_ACK) == RDPUDP_FLAG_SYN | RDPUDP_FLAG_ACK
            and reply[0:4] == syn[8:12])


def _pending(data: bytearray) -> str:
    """For bytes that did not parse: "wait" while they may still become a TPKT PDU, else "no"."""
    if not data:
        return "wait"
    if data[0] != TPKT_VERSION or len(data) > 1 and data[1] != 0:
        return "no"
    if len(data) < 4:
        return "wait"
    return "wait" if len(data) < min(_u16(data, 2)[0], MAX_CR) else "no"


@register
class RdpRecogniser(Recogniser):
    name = "rdp"
    protos = (6, 17)


    def could_start(self, proto: int, first: int) -> bool:
        return proto == 17 or first == 0x03  # TPKT version 3; RDPEUDP takes any datagram

    def inspect(self, flow: FlowView) -> Result:
        if flow.proto == 17:
            return self._udp(flow)
        cts, stc = flow.streams
        cr = parse_connection_request(cts) if cts else None
        cc = parse_connection_confirm(stc) if stc else None
        if cr is not None and cc is not None:
            return Detection("rdp", "session", "high", cr[1] + cc)
        if cc is not None:
            return Detection("rdp", "session", "high", cc)
        server = _pending(stc)
        if cr is not None:
            strong, ev = cr
            if strong:
                return Detection("rdp", "session", "high", ev)
            if server == "no":
                return Detection("rdp", "session", "medium", ev)
            return None  # a bare request: wait for the server's answer
        if _pending(cts) == "no" and server == "no":
            return GIVE_UP
        return None

    def _udp(self, flow: FlowView) -> Result:
        cseg, sseg = flow.segments
        if not cseg:
            return None
        syn = cseg[0]
        ev = parse_rdpeudp_syn(syn)
        if ev is None:
            if parse_rdpeudp_data(syn) is None:
                return GIVE_UP
            data_ev = rdpeudp_data_exchange(cseg, sseg)
            if data_ev is not None:
                return Detection("rdp", "session", "high", [data_ev])
            return GIVE_UP if sseg else None
        if sseg and rdpeudp_synack_matches(syn, sseg[0]):
            return Detection("rdp", "session", "high",
                             [ev, Evidence("handshake", "MS-RDPEUDP SYN+ACK")])
        if len(cseg) >= 2 or sseg:
            return Detection("rdp", "session", "medium", [ev])
        return None
