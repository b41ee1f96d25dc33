"""The EVE-style event log: one JSON object per line, written in batches and at exit.

Field names follow Suricata's EVE where a counterpart exists (timestamp, event_type, flow_id,
src_ip, src_port, dest_ip, dest_port, proto, pcap_filename); the contract is in
../shared/design/architecture.md and the JSON Schema in netwatch/schema/eve.schema.json.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Events are kept in memory and written this many at a time (and always at close), so the
# log costs one write call per batch rather than per event.
BATCH_EVENTS = 256


def iso_timestamp(ts: float) -> str:
    """Packet time as ISO 8601 with microseconds and offset:
    2024-03-05T14:02:11.123456+00:00."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


class EventLog:
    """Writes events to a file path, to standard output ("-"), or nowhere (None). A replay
    starts the file anew; the daemon appends (``append``), never losing what was there."""

    def __init__(self, target: str | None, append: bool = False):
        self.target = target
        self._fh: IO[str] | None = None
        self._buf: list[str] = []
        self.written = 0
        if target == "-":
            self._fh = sys.stdout
        elif target:
            self._fh = open(target, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, event: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._buf.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
        if len(self._buf) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self._fh is None or not self._buf:
            return
        self._fh.write("\n".join(self._buf) + "\n")
        self.written += len(self._buf)
        self._buf.clear()
        self._fh.flush()

    def close(self) -> None:
        self.flush()
        if self._fh is not None and self._fh is not sys.stdout:
            self._fh.close()
        self._fh = None
