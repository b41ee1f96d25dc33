"""Radmin: the first messages of a Radmin session, any port.

Facts (../shared/reference/tools.yaml, "radmin", from nDPI's radmin.c): the client opens with
a 10-byte message 01 00 00 00 01 .. .. .. 08 08 and the server answers with 46 bytes
starting 01 00 00 00 25, carrying 02 12 08 02 at offset 7 and 0A at offset 13. A second
connection of the same session exchanges 14-byte messages 01 00 00 00 05 .. .. .. 27 27 in
both directions. netwatch asks for both directions, so one matching packet never suffices.
"""

from __future__ import annotations

from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

MAGIC = b"\x01\x00\x00\x00"


def _client_hello(p: bytes) -> bool:
    return len(p) == 10 and p[:5] == MAGIC + b"\x01" and p[8:10] == b"\x08\x08"


def _server_hello(p: bytes) -> bool:
    return (len(p) == 46 and p[:5] == MAGIC + b"\x25" and p[7:11] == b"\x02\x12\x08\x02"
            and p[13] == 0x0A)


def _channel(p: bytes) -> bool:
    return len(p) == 14 and p[:5] == MAGIC + b"\x05" and p[8:10] == b"\x27\x27"


@register
class RadminRecogniser(Recogniser):
    name = "radmin"
    protos = (6,)


    def could_start(self, proto: int, first: int) -> bool:
        return first == MAGIC[0]

    def inspect(self, flow: FlowView) -> Result:
        cseg, sseg = flow.segments
        c = cseg[0] if cseg else None
        s = sseg[0] if sseg else None
        if c is not None and not (_client_hello(c) or _channel(c)):
            return GIVE_UP
        if s is not None and not (_server_hello(s) or _channel(s)):
            return GIVE_UP
        if c is None or s is None:
            return None
        if _client_hello(c) and _server_hello(s):
            what = "Radmin hello (10 bytes) and server answer (46 bytes)"
        elif _channel(c) and _channel(s):
            what = "Radmin channel messages (14 bytes) both ways"
        else:
            return GIVE_UP
        return Detection("radmin", "session", "high", [Evidence("handshake", what)])
