"""The router end of the nflog tests: run inside the test's router namespace.

    python tests/nflog_router.py GROUP FIRST_PACKETS EVENT_LOG

Starts the nflog source wired to a real Pipeline (as ``netwatch run`` wires it), feeds it
until SIGTERM (or 60 s), closes the source (which removes netwatch's capture chains) and
prints one JSON object: the source's stats, the packets it handed over per connection, and
every conntrack report the pipeline received.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from netwatch import decode as dec
from netwatch.eventlog import EventLog
from netwatch.pipeline import Pipeline, ip_text
from netwatch.recognisers import load_all
from netwatch.signatures import load_dir
from netwatch.sources.conntrack import Conn
from netwatch.sources.nflog import NflogSource

LIMIT_S = 60.0


def main() -> None:
    group, first, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    log = EventLog(log_path)
    pipe = Pipeline(load_dir(known_recognisers=load_all()), log)
    reports: list[dict[str, Any]] = []

    def counters(conns: list[Conn], now: float) -> list[tuple[int, bytes, bytes, int, int]]:
        for c in conns:
            reports.append({"proto": c.proto, "client": ip_text(c.client), "cport": c.cport,
                            "server": ip_text(c.server), "sport": c.sport,
                            "bytes": list(c.bytes), "pkts": list(c.pkts), "ended": c.ended,
                            "at": round(now, 2)})
            if c.ended:
                print(f"ended {c.proto} {c.sport}", flush=True)
        return pipe.flow_counters(conns, now)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    per_conn: Counter[str] = Counter()
    src = NflogSource(group=group, first_packets=first, refresh_s=0.5, on_counters=counters)
    src.start()
    print("ready", flush=True)
    end = time.time() + LIMIT_S
    try:
        while not stop and time.time() < end:
            batch = src.poll(0.2)
            for _ts, lt, frame, _wire in batch:
                p = dec.decode_frame(lt, frame)
                if type(p) is not int:
                    proto, s, d, sp, dp = p[:5]  # type: ignore[index]
                    a, b = sorted([(ip_text(s), sp), (ip_text(d), dp)])
                    per_conn[f"{proto} {a[0]}:{a[1]} {b[0]}:{b[1]}"] += 1
            pipe.feed(batch)
    finally:
        src.close()
    log.flush()
    with open(log_path, encoding="utf-8") as fh:
        before_finish = sum(1 for _ in fh)  # events the live run wrote, before the end of input
    pipe.finish()
    log.close()
    print(json.dumps({"stats": src.stats(), "packets": per_conn, "conntrack": reports,
                      "events_before_finish": before_finish}), flush=True)


if __name__ == "__main__":
    main()
