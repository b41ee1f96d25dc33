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


    def could_start(self, proto: int, first: int) -> bool:
        return first == 0x52  # "RFB ", from whichever side speaks first

    def inspect(self, flow: FlowView) -> Result:
        cts, stc = flow.streams
        srv = parse_version(stc) if stc else None
        cli = parse_version(cts) if cts else None
        if srv is False or cli is False:
            return GIVE_UP
        if isinstance(srv, str) and isinstance(cli, str):
            ev = [Evidence("handshake", "RFB ProtocolVersion",
                           f"server {srv}, client {cli}")]
            types = self._security(stc, cli if cli == "3.3" else srv)
            if not types and len(stc) == VERSION_LEN and not getattr(flow, "closing", False):
                # The server's security types come next and may name the product: report the
                # session now, and again with the product once they arrive.
                return Detection("vnc", "session", "medium", ev)
            variant = ""
            if types:
                ev.append(Evidence("handshake", "RFB security types",
                                   ", ".join(SECURITY_TYPES.get(t, str(t)) for t in types)))
                variant = self._variant(types)
            return Detection("vnc", "session", "high", ev, variant)
        if getattr(flow, "closing", False) and (isinstance(srv, str) or isinstance(cli, str)):
            side = "server" if isinstance(srv, str) else "client"
            return Detection("vnc", "scan", "medium",
                             [Evidence("handshake", "RFB ProtocolVersion",
                                       f"{side} {srv if side == 'server' else cli} only, "
                                       "no answer")])
        return None

    @staticmethod
    def _security(stc: bytearray, version: str) -> list[int]:
        """The security types a 3.7+ server offers (RFC 6143 §7.1.2), [] if not seen."""
        rest = bytes(stc[VERSION_LEN:])
        if not rest:
            return []
        if version == "3.3":  # the server chooses: one u32 type (§7.1.2, version 3.3)
            return [int.from_bytes(rest[:4], "big")] if len(rest) >= 4 else []
        count = rest[0]
        types = rest[1:1 + count]
        if count == 0 or len(types) < count:
            return []
        return list(types)

    def _variant(self, types: list[int]) -> str:
        """The signature whose own RFB security type the server offers (Apple's 30, Tight's
        16, Ultra's 17), or "" when none or more than one do."""
        hits = [s.tool for s in self.signatures.by_tool.values()
                if s.reported_as == "vnc" and set(s.rfb_security_types) & set(types)]
        return hits[0] if len(hits) == 1 else ""
