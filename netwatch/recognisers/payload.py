"""Byte patterns from the signature files: a prefix at an offset in a flow's first packets.

For vendor framings that have no public specification (TeamViewer), the signature says which
bytes to expect and how many of the first packets must carry them; a hinted port may lower
that count, never to nothing: the bytes are always needed.
"""

from __future__ import annotations

from ..signatures import PayloadRule
from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register


def _hits(rule: PayloadRule, segments: list[bytes]) -> int:
    off, end = rule.offset, rule.offset + len(rule.prefixes[0])
    n = 0
    for seg in segments:
        if seg[off:end] in rule.prefixes:
            n += 1
    return n


@register
class PayloadRecogniser(Recogniser):
    name = "payload"
    protos = (6, 17)


    def could_start(self, proto: int, first: int) -> bool:
        for rule in self.signatures.payloads:
            if (rule.proto == "tcp") != (proto == 6):
                continue
            if rule.offset > 0 or any(p[0] == first for p in rule.prefixes):
                return True
        return False

    def inspect(self, flow: FlowView) -> Result:
        cseg, sseg = flow.segments
        alive = False
        best: Detection | None = None
        for rule in self.signatures.payloads:
            if (rule.proto == "tcp") != (flow.proto == 6):
                continue
            firsts = [s[0] for s in (cseg, sseg) if s]
            if firsts and not any(_hits(rule, [f]) for f in firsts):
                continue  # the first packet each way did not match: this rule is out
            alive = True
            n = _hits(rule, cseg) + _hits(rule, sseg)
            hinted = self.signatures.port_hinted(rule.tool, flow.proto, flow.server_port)
            need = rule.min_packets_on_hinted_port if hinted else rule.min_packets
            if n >= need and best is None:
                detail = f"{n} of the first packets"
                ev = [Evidence("payload", rule.description, detail)]
                conf = "high" if n >= rule.min_packets else "medium"
                if hinted:
                    ev.append(Evidence("port", f"{flow.proto == 6 and 'tcp' or 'udp'}/"
                                               f"{flow.server_port}", "vendor port"))
                best = Detection(rule.tool, rule.role, conf, ev)
        if best is not None:
            return best
        return None if alive else GIVE_UP
