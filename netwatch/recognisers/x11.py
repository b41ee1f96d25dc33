"""X11 connection setup (TCP) and XDMCP (UDP), any port.

X11: the X Window System Protocol, "Connection Setup": the client sends a byte-order byte
('B' 0x42 or 'l' 0x6C), an unused byte, protocol major 11 and minor 0, the lengths of the
authorisation name and data, two unused bytes, then name and data each padded to 4 bytes.
The server answers with 0 (Failed), 1 (Success) or 2 (Authenticate), and for Failed and
Success the protocol version 11 at offset 2. (../shared/reference/tools.yaml, "x11".)

XDMCP (X Display Manager Control Protocol, UDP): every message starts with u16 version 1,
u16 opcode and u16 length of the rest; nDPI's rule is a Query (opcode 2) whose length equals
the payload length minus 6. netwatch checks the same header on both directions, with the
opcodes the protocol defines (1 BroadcastQuery .. 14 Alive).
"""

from __future__ import annotations

import struct

from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

_u16 = {0x42: struct.Struct(">H").unpack_from, 0x6C: struct.Struct("<H").unpack_from}
_be16 = struct.Struct(">H").unpack_from
X11_MAJOR = 11
SETUP_HEAD = 12
XDMCP_OPCODES = {1: "BroadcastQuery", 2: "Query", 3: "IndirectQuery", 4: "ForwardQuery",
                 5: "Willing", 6: "Unwilling", 7: "Request", 8: "Accept", 9: "Decline",
                 10: "Manage", 11: "Refuse", 12: "Failed", 13: "KeepAlive", 14: "Alive"}
CLIENT_OPCODES = {1, 2, 3, 4, 7, 10, 13}
SERVER_OPCODES = {5, 6, 8, 9, 11, 12, 14}


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def x11_setup(p: bytes | bytearray) -> str | None | bool:
    """Byte order of a valid setup request, None while too short, False when not one."""
    if not p:
        return None
    u16 = _u16.get(p[0])
    if u16 is None:
        return False
    if len(p) < SETUP_HEAD:
        return None
    if p[1] != 0 or u16(p, 2)[0] != X11_MAJOR or u16(p, 4)[0] != 0:
        return False
    need = SETUP_HEAD + _pad4(u16(p, 6)[0]) + _pad4(u16(p, 8)[0])
    if len(p) < need:
        return None if need <= 1024 else False
    return "MSB first" if p[0] == 0x42 else "LSB first"


def x11_reply(p: bytes | bytearray, order: int) -> str | None | bool:
    if len(p) < 4:
        return None
    status = p[0]
    if status == 2:
        return "Authenticate"
    if status in (0, 1) and _u16[order](p, 2)[0] == X11_MAJOR:
        return "Success" if status == 1 else "Failed"
    return False


def xdmcp(p: bytes) -> int | None:
    if len(p) < 6 or _be16(p, 0)[0] != 1 or _be16(p, 4)[0] != len(p) - 6:
        return None
    op = _be16(p, 2)[0]
    return op if op in XDMCP_OPCODES else None


@register
class X11Recogniser(Recogniser):
    name = "x11"
    protos = (6, 17)


    def could_start(self, proto: int, first: int) -> bool:
        if proto == 17:
            return first == 0  # XDMCP version 1, big-endian
        return first in _u16

    def inspect(self, flow: FlowView) -> Result:
        if flow.proto == 17:
            return self._xdmcp(flow)
        cts, stc = flow.streams
        setup = x11_setup(cts)
        if setup is False:
            return GIVE_UP
        if setup is None:
            return None
        reply = x11_reply(stc, cts[0])
        if reply is False:
            return GIVE_UP
        if reply is None:
            if getattr(flow, "closing", False):
                return Detection("x11", "scan", "medium", [Evidence(
                    "handshake", "X11 connection setup", f"{setup}, no answer")])
            return None
        return Detection("x11", "session", "high", [Evidence(
            "handshake", "X11 connection setup", f"{setup}, server: {reply}")])

    @staticmethod
    def _xdmcp(flow: FlowView) -> Result:
        cseg, sseg = flow.segments
        if not cseg:
            return None if not sseg else GIVE_UP
        op = xdmcp(cseg[0])
        if op is None or op not in CLIENT_OPCODES:
            return GIVE_UP
        if not sseg:
            if getattr(flow, "closing", False):
                return Detection("xdmcp", "scan", "medium", [Evidence(
                    "handshake", f"XDMCP {XDMCP_OPCODES[op]}", "no answer")])
            return None
        answer = xdmcp(sseg[0])
        if answer is None or answer not in SERVER_OPCODES:
            return GIVE_UP
        return Detection("xdmcp", "session", "high", [Evidence(
            "handshake", f"XDMCP {XDMCP_OPCODES[op]} / {XDMCP_OPCODES[answer]}")])
