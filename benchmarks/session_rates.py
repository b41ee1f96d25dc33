#!/usr/bin/env python3
"""Byte and packet rates of every remote-access flow netwatch recognises in some captures.

The session thresholds (netwatch/sessions.py, docs/sessions.md) come from this table over
the labelled corpus: idle keepalives against live sessions.

    python3 benchmarks/session_rates.py ../shared/pcaps/*.pcap* tests/pcaps/recorded/*.pcap
"""

from __future__ import annotations

import os
import sys

from netwatch.eventlog import EventLog
from netwatch.flows import Flow
from netwatch.pipeline import Pipeline
from netwatch.recognisers import load_all
from netwatch.signatures import load_dir
from netwatch.sources.capture import CaptureError, ReadStats


class RatePipeline(Pipeline):
    """The replay pipeline, noting each recognised flow's counters when it ends."""

    rows: list[tuple[object, ...]] = []

    def _finish(self, f: Flow) -> None:
        super()._finish(f)
        det = f.verdict
        if det is None or det.role in ("dns", "scan"):
            return
        dur = max(f.last_ts - f.first_ts, 1e-3)
        self.rows.append((os.path.basename(self.pcap_name or "-"), det.tool, det.role,
                          f"{dur:.1f}", f.bytes[0], f.bytes[1], round(f.bytes[0] / dur),
                          round(f.bytes[1] / dur), round((f.bytes[0] + f.bytes[1]) / dur)))


def main(paths: list[str]) -> int:
    sigs = load_dir(known_recognisers=load_all())
    for path in paths:
        pipe = RatePipeline(sigs, EventLog(os.devnull))
        try:
            pipe.feed_file(path, ReadStats())
        except CaptureError as e:
            print(f"{path}: {e}", file=sys.stderr)
        pipe.finish()
    head = ("capture", "tool", "role", "seconds", "bytes_out", "bytes_in", "B/s_out",
            "B/s_in", "B/s_both")
    print("\t".join(head))
    for row in RatePipeline.rows:
        print("\t".join(str(x) for x in row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
