"""Citrix ICA and CGP: the fixed preambles at the start of a connection, any port.

Facts (../shared/reference/tools.yaml, "citrix", from nDPI's citrix.c): an ICA connection
opens with the 6-byte payload 7F 7F 49 43 41 00 ("\\x7f\\x7fICA\\0"), which both ends send;
a CGP (Common Gateway Protocol, session reliability) connection opens with 1A 43 47 50 2F 30
31 ("\\x1aCGP/01") in a payload longer than 22 bytes.
"""

from __future__ import annotations

from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

ICA_PREAMBLE = b"\x7f\x7fICA\x00"
CGP_MAGIC = b"\x1aCGP/01"
CGP_MIN_LEN = 23


def _first(segments: list[bytes]) -> bytes | None:
    return segments[0] if segments else None


@register
class CitrixRecogniser(Recogniser):
    name = "citrix"
    protos = (6,)


    def could_start(self, proto: int, first: int) -> bool:
        return first in (ICA_PREAMBLE[0], CGP_MAGIC[0])

    def inspect(self, flow: FlowView) -> Result:
        firsts = [_first(s) for s in flow.segments]
        seen = [f for f in firsts if f is not None]
        if not seen:
            return None
        ica = [f == ICA_PREAMBLE for f in firsts]
        if any(ica):
            both = all(ica)
            return Detection("citrix", "session", "high" if both else "medium", [
                Evidence("handshake", "ICA preamble 7F 7F 'ICA' 00",
                         "sent by both ends" if both else "sent by one end so far")])
        for f in seen:
            if len(f) >= CGP_MIN_LEN and f.startswith(CGP_MAGIC):
                return Detection("citrix", "session", "high", [
                    Evidence("handshake", "CGP/01 preamble", "Citrix session reliability")])
        # Both first packets are known and neither is a preamble: not Citrix.
        if all(f is not None for f in firsts):
            return GIVE_UP
        f = seen[0]
        if ICA_PREAMBLE.startswith(f) or CGP_MAGIC.startswith(f[:len(CGP_MAGIC)]):
            return None
        return GIVE_UP
