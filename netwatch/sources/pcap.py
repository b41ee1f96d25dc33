"""The ``pcap`` live source: a capture file played back as if it were happening now.

``netwatch run --source pcap --pcap FILE`` runs the live code path (the daemon's loop, its
clock, the outbox, the metrics) on a known capture, for demos and tests. Frames come out of
``poll()`` when they are due: the first one at once, each next one after the gap the capture
recorded, divided by ``speed``. Their time is that moment on the wall clock, so the pipeline
sees a live network; ``speed=0`` plays as fast as the pipeline takes it and keeps the
capture's own spacing, shifted to start now.

The frames are read with netwatch.sources.capture (classic pcap and pcapng), with their
original length on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from .capture import Frame, ReadStats, open_capture

# Frames handed over per poll at most, so the daemon's loop keeps turning (its clock,
# signals, deliveries) even when a fast replay has thousands due at once.
MAX_BATCH = 1024
# A capture's gaps are slept through in steps no longer than this; a poll returns at its
# timeout anyway.
MAX_SLEEP_S = 0.5


class PcapSource:
    """Plays a capture file back in (scaled) real time; see the module's docstring."""

    name = "pcap"
    kind = "frames"

    def __init__(self, path: str, speed: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        if speed < 0:
            raise ValueError("speed must be 0 (as fast as possible) or more")
        self.iface = path
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.read_stats = ReadStats()
        self._frames: Iterator[Frame] = open_capture(path, self.read_stats)  # CaptureError
        self._next: Frame | None = next(self._frames, None)
        self._start: float | None = None  # wall clock of the first frame
        self._first = self._next[0] if self._next is not None else 0.0
        self._last_due = 0.0
        self.packets = 0
        self.bytes = 0
        self.late_s = 0.0  # the most a frame came out after it was due

    @property
    def finished(self) -> bool:
        """Every frame of the file has been handed over."""
        return self._next is None

    def poll(self, timeout_s: float) -> list[Frame]:
        """The frames due by now (waiting up to ``timeout_s`` for the next one); empty on
        timeout and, for good, once the file is played."""
        now = self.clock()
        if self._start is None:
            self._start = now
        out: list[Frame] = []
        deadline = now + max(timeout_s, 0.0)
        while self._next is not None and len(out) < MAX_BATCH:
            ts, linktype, frame, wire = self._next
            due = self._due(ts)
            if self.speed and due > now:
                if out or now >= deadline:
                    break
                self.sleep(min(due - now, deadline - now, MAX_SLEEP_S))
                now = self.clock()
                continue
            self.late_s = max(self.late_s, now - due) if self.speed else 0.0
            out.append((due, linktype, frame, wire))
            self.packets += 1
            self.bytes += wire
            self._next = next(self._frames, None)
        return out

    def _due(self, ts: float) -> float:
        """When a frame recorded at ``ts`` is played: never before the frame before it (a
        capture's clock can step back)."""
        assert self._start is not None
        gap = ts - self._first
        due = self._start + (gap / self.speed if self.speed else gap)
        if due < self._last_due:
            due = self._last_due
        self._last_due = due
        return due

    def stats(self) -> dict[str, int]:
        """Counters as plain numbers: frames and wire bytes handed over, whether the file
        ended inside a record (0 or 1), whether it is all played (0 or 1), and the most a
        frame came out after it was due, in milliseconds (a pipeline slower than the
        chosen speed)."""
        return {"packets": self.packets, "bytes": self.bytes,
                "truncated": int(self.read_stats.truncated), "finished": int(self.finished),
                "late_ms": round(self.late_s * 1000)}

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()
        self._next = None
