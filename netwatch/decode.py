"""Link, IP and transport decoding on the hot path: slice bytes, unpack once.

``decode_frame`` turns a captured frame into a ``Packet`` tuple or tells why it could not.
It does no allocation beyond the payload slice and the returned tuple, and it never raises on
bad input: a frame that is cut short or inconsistent comes back as MALFORMED and is counted by
the caller.
"""

from __future__ import annotations

import struct

# Link types, from the tcpdump.org LINKTYPE_ registry.
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW on most systems
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239  # tcpdump -i nflog:N
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW_DLT12: "raw IP",
    LINKTYPE_RAW_DLT14: "raw IP",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_NFLOG: "Linux NFLOG",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_PPPOE_SESSION = 0x8864  # a router's WAN side (RFC 2516)
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
# 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 tag all carry a 4-byte tag before the
# inner EtherType.
VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_DEPTH = 4

# BSD loopback address families: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD/OpenBSD),
# 28 (FreeBSD) or 30 (macOS). Values per the LINKTYPE_NULL entry of the registry.
NULL_AF_INET = 2
NULL_AF_INET6 = (24, 28, 30)

PROTO_TCP = 6
PROTO_UDP = 17

# IPv6 extension headers walked to reach TCP/UDP (RFC 8200 §4).
IPV6_EXT_GENERIC = (0, 43, 60)  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44
IPV6_AH = 51
MAX_IPV6_EXT = 8

# What decode_frame returns besides a packet.
NOT_IP = 0  # ARP, LLDP, … : not counted as malformed
MALFORMED = 1
FRAGMENT = 2  # a non-first IP fragment: no transport header to read
OTHER_L4 = 3  # ICMP, IGMP, …
UNSUPPORTED_LINK = 4

# (proto, src_ip, dst_ip, src_port, dst_port, tcp_flags, tcp_seq, payload)
Packet = tuple[int, bytes, bytes, int, int, int, int, bytes]
Decoded = Packet | int

_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_le32 = struct.Struct("<I").unpack_from
_ports = struct.Struct("!HH").unpack_from

# LINKTYPE_NFLOG (tcpdump.org/linktypes/LINKTYPE_NFLOG.html): a 4-byte header (u8 address
# family, u8 version 0, be16 group), then TLVs of u16 length (header included) and u16 type
# in the byte order of the host that wrote the file, each padded to 4 bytes. Type 9
# (NFULA_PAYLOAD) holds the packet from its IP header.
NFLOG_HDR = 4
NFULA_PAYLOAD = 9

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10


def decode_frame(linktype: int, frame: bytes) -> Decoded:
    """Decode one frame down to its transport payload."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return MALFORMED
        etype = _u16(frame, 12)[0]
        off = 14
        depth = 0
        while etype in VLAN_TAGS:
            if len(frame) < off + 4 or depth == MAX_VLAN_DEPTH:
                return MALFORMED
            etype = _u16(frame, off + 2)[0]
            off += 4
            depth += 1
        if etype == ETH_PPPOE_SESSION:
            # RFC 2516 §4: 6-byte PPPoE header, then the 2-byte PPP protocol (RFC 1661).
            if len(frame) < off + 8:
                return MALFORMED
            ppp = _u16(frame, off + 6)[0]
            etype = ETH_IPV4 if ppp == PPP_IPV4 else ETH_IPV6 if ppp == PPP_IPV6 else 0
            off += 8
            if not etype:
                return NOT_IP
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return MALFORMED
        etype = _u16(frame, 14)[0]
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return MALFORMED
        etype = _u16(frame, 0)[0]
        off = 20
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14,
                      LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not frame:
            return MALFORMED
        v = frame[0] >> 4
        etype = ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else 0
        off = 0
        if not etype:
            return MALFORMED
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return MALFORMED
        af = _u32(frame, 0)[0] if linktype == LINKTYPE_LOOP else _le32(frame, 0)[0]
        if af > 0xFFFF:  # written on a big-endian host
            af = _u32(frame, 0)[0]
        etype = ETH_IPV4 if af == NULL_AF_INET else ETH_IPV6 if af in NULL_AF_INET6 else 0
        off = 4
        if not etype:
            return NOT_IP
    elif linktype == LINKTYPE_NFLOG:
        packet = nflog_payload(frame)
        if packet is None:
            return MALFORMED
        return decode_frame(LINKTYPE_RAW, packet)
    else:
        return UNSUPPORTED_LINK

    if etype == ETH_IPV4:
        if len(frame) < off + 20:
            return MALFORMED
        vihl = frame[off]
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return MALFORMED
        total = _u16(frame, off + 2)[0]
        end = off + total
        if total < ihl or end > len(frame):
            # Captures with a short snaplen keep the header but not the whole datagram.
            if total < ihl:
                return MALFORMED
            end = len(frame)
        if _u16(frame, off + 6)[0] & 0x1FFF:
            return FRAGMENT
        proto = frame[off + 9]
        src = frame[off + 12:off + 16]
        dst = frame[off + 16:off + 20]
        l4 = off + ihl
    elif etype == ETH_IPV6:
        if len(frame) < off + 40:
            return MALFORMED
        if frame[off] >> 4 != 6:
            return MALFORMED
        plen = _u16(frame, off + 4)[0]
        end = off + 40 + plen
        if end > len(frame) or plen == 0:  # plen 0: jumbogram; treat as "to end of frame"
            end = len(frame)
        proto = frame[off + 6]
        src = frame[off + 8:off + 24]
        dst = frame[off + 24:off + 40]
        l4 = off + 40
        n = 0
        while proto not in (PROTO_TCP, PROTO_UDP):
            if n == MAX_IPV6_EXT or l4 + 8 > end:
                return OTHER_L4 if n < MAX_IPV6_EXT and proto not in IPV6_EXT_GENERIC else MALFORMED
            if proto in IPV6_EXT_GENERIC:
                nxt = frame[l4]
                l4 += (frame[l4 + 1] + 1) * 8
            elif proto == IPV6_FRAGMENT:
                nxt = frame[l4]
                if _u16(frame, l4 + 2)[0] & 0xFFF8:
                    return FRAGMENT
                l4 += 8
            elif proto == IPV6_AH:
                nxt = frame[l4]
                l4 += (frame[l4 + 1] + 2) * 4
            else:
                return OTHER_L4
            proto = nxt
            n += 1
    else:
        return NOT_IP

    if proto == PROTO_TCP:
        if l4 + 20 > end:
            return MALFORMED
        sport, dport = _ports(frame, l4)
        doff = (frame[l4 + 12] >> 4) * 4
        if doff < 20 or l4 + doff > end:
            return MALFORMED
        return (PROTO_TCP, src, dst, sport, dport, frame[l4 + 13], _u32(frame, l4 + 4)[0],
                frame[l4 + doff:end])
    if proto == PROTO_UDP:
        if l4 + 8 > end:
            return MALFORMED
        sport, dport = _ports(frame, l4)
        ulen = _u16(frame, l4 + 4)[0]
        uend = l4 + ulen if 8 <= ulen and l4 + ulen <= end else end
        return (PROTO_UDP, src, dst, sport, dport, 0, 0, frame[l4 + 8:uend])
    return OTHER_L4


def nflog_payload(frame: bytes) -> bytes | None:
    """The packet inside an NFLOG record (the slow path: such captures are rare). The TLV
    byte order is the writer's: little-endian is tried first, then big-endian."""
    if len(frame) < NFLOG_HDR or frame[1] != 0:
        return None
    for order in ("<", ">"):
        tlv = struct.Struct(order + "HH").unpack_from
        pos = NFLOG_HDR
        while pos + 4 <= len(frame):
            length, kind = tlv(frame, pos)
            if length < 4 or pos + length > len(frame):
                break
            if kind & 0x3FFF == NFULA_PAYLOAD:
                return frame[pos + 4:pos + length]
            pos += (length + 3) & ~3
    return None
