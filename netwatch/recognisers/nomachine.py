"""NoMachine NX: the plain-text hello on TCP, the keepalive framing on UDP; any port.

Facts (../shared/reference/tools.yaml, "nomachine", from nDPI's nomachine.c): over TCP the
client sends a short line "NXSH-<version>" and the server answers "NXD-<version>" (11 to 14
bytes each), then both start TLS. Over UDP the datagrams carry a little-endian u16 equal to 1
at offset 2, the payload length as a u16 at offset 4 and a zero u16 at offset 8.
"""

from __future__ import annotations

import re
import struct

from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

CLIENT_RE = re.compile(rb"NXSH-\d+(?:\.\d+){0,3}\n?")
SERVER_RE = re.compile(rb"NXD-\d+(?:\.\d+){0,3}\n?")
HELLO_MIN, HELLO_MAX = 11, 14
UDP_MIN_DATAGRAMS = 3
_u16le = struct.Struct("<H").unpack_from


def _hello(p: bytes, rx: re.Pattern[bytes], prefix: bytes) -> bool | None:
    """True for a hello line, None while it could still become one, False otherwise."""
    if len(p) < len(prefix):
        return None if prefix.startswith(p) else False
    if not p.startswith(prefix):
        return False
    return HELLO_MIN - 1 <= len(p) <= HELLO_MAX and rx.fullmatch(p) is not None


def udp_frame(p: bytes) -> bool:
    return (len(p) >= 10 and _u16le(p, 2)[0] == 1 and _u16le(p, 4)[0] == len(p)
            and p[8:10] == b"\x00\x00")


@register
class NoMachineRecogniser(Recogniser):
    name = "nomachine"
    protos = (6, 17)


    def could_start(self, proto: int, first: int) -> bool:
        return proto == 17 or first == 0x4E  # "NXSH-" / "NXD-"; UDP frames start anyhow

    def inspect(self, flow: FlowView) -> Result:
        if flow.proto == 17:
            return self._udp(flow)
        cseg, sseg = flow.segments
        c = _hello(cseg[0], CLIENT_RE, b"NXSH-") if cseg else None
        s = _hello(sseg[0], SERVER_RE, b"NXD-") if sseg else None
        if c is False or s is False:
            return GIVE_UP
        if c and s:
            return Detection("nomachine", "session", "high", [Evidence(
                "handshake", "NX hello", f"client {cseg[0].strip().decode()}, "
                                         f"server {sseg[0].strip().decode()}")])
        if (c or s) and getattr(flow, "closing", False):
            line = (cseg[0] if c else sseg[0]).strip().decode()
            return Detection("nomachine", "scan", "medium",
                             [Evidence("handshake", "NX hello", f"{line}, no answer")])
        return None

    @staticmethod
    def _udp(flow: FlowView) -> Result:
        dgrams = flow.segments[0] + flow.segments[1]
        if not all(udp_frame(p) for p in dgrams):
            return GIVE_UP
        if len(dgrams) < UDP_MIN_DATAGRAMS:
            return None
        both = bool(flow.segments[0]) and bool(flow.segments[1])
        return Detection("nomachine", "session", "high" if both else "medium", [Evidence(
            "payload", "NX UDP framing (u16 1 at 2, length at 4, 0 at 8)",
            f"{len(dgrams)} datagrams, {'both ways' if both else 'one way'}")])
