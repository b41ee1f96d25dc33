"""VNC / RFB: the 12-byte ProtocolVersion exchange, either side first, any port.

RFC 6143 §7.1.1: the server sends "RFB xxx.yyy\\n" (12 bytes), the client answers with the
version it will use, in the same form. Known versions include 003.003, 003.007, 003.008,
Apple's 003.889 and RealVNC's 004.000/004.001 (../shared/reference/tools.yaml, "vnc").
"""

from __future__ import annotations

import re

from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

VERSION_LEN = 12
VERSION_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
# RFC 6143 §7.1.2: security types after the version (3.7 and later) as a count and a list.
SECURITY_TYPES = {1: "None", 2: "VNC Authentication", 16: "Tight", 17: "Ultra", 18: "TLS",
                  19: "VeNCrypt", 30: "Apple Remote Desktop"}


def parse_version(data: bytes | bytearray) -> str | None | bool:
    """The version string, None while fewer than 12 bytes, False when not RFB."""
    if len(data) < VERSION_LEN:
        return None if b"RFB "[:len(data)] == bytes(data[:4]) else False
    m = VERSION_RE.fullmatch(bytes(data[:VERSION_LEN]))
    if m is None:
        return False
    return f"{int(m.group(1))}.{int(m.group(2))}"


@register
class RfbRecogniser(Recogniser):
    name = "rfb"
    protos = (6,)

    def inspect(self, flow: FlowView) -> Result:
        cts, stc = flow.streams
        srv = parse_version(stc) if stc else None
        cli = parse_version(cts) if cts else None
        if srv is False or cli is False:
            return GIVE_UP
        if isinstance(srv, str) and isinstance(cli, str):
            ev = [Evidence("handshake", "RFB ProtocolVersion",
                           f"server {srv}, client {cli}")]
            sec = self._security(stc, srv)
            if sec:
                ev.append(Evidence("handshake", "RFB security types", sec))
            return Detection("vnc", "session", "high", ev)
        if getattr(flow, "closing", False) and (isinstance(srv, str) or isinstance(cli, str)):
            side = "server" if isinstance(srv, str) else "client"
            return Detection("vnc", "scan", "medium",
                             [Evidence("handshake", "RFB ProtocolVersion",
                                       f"{side} {srv if side == 'server' else cli} only, "
                                       "no answer")])
        return None

    @staticmethod
    def _security(stc: bytearray, version: str) -> str:
        rest = bytes(stc[VERSION_LEN:])
        if not rest or version in ("3.3",):
            return ""
        count = rest[0]
        types = rest[1:1 + count]
        if count == 0 or len(types) < count:
            return ""
        return ", ".join(SECURITY_TYPES.get(t, str(t)) for t in types)
