"""The ``pcap`` live source: a capture played back on the wall clock gives what replay gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SYNTHETIC, remote_access, replay, signatures
from netwatch.eventlog import EventLog
from netwatch.pipeline import Pipeline
from netwatch.sources.capture import CaptureError, open_capture
from netwatch.sources.pcap import MAX_BATCH, PcapSource

DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"


def comparable(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """remote_access events without their times and flow numbers."""
    return sorted((e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"], e["proto"],
                   json.dumps(e["remote_access"], sort_keys=True))
                  for e in remote_access(events))


def test_demo_played_fast_gives_the_same_detections_as_replay(tmp_path: Path) -> None:
    _result, expected = replay(DEMO)
    eve = tmp_path / "eve.json"
    pipe = Pipeline(signatures(), EventLog(str(eve)))
    src = PcapSource(str(DEMO), speed=1000)  # ten minutes of capture in under a second
    stamps: list[float] = []
    for _ in range(100000):  # bounded; the file ends long before
        batch = src.poll(0.2)
        stamps += [ts for ts, *_rest in batch]
        pipe.feed(batch)
        if src.finished:
            break
    assert src.finished
    pipe.finish()
    pipe.log.close()
    got = [json.loads(ln) for ln in eve.read_text().splitlines()]
    assert comparable(got) == comparable(expected)
    assert len(comparable(got)) > 0
    assert src.stats()["packets"] == len(list(open_capture(str(DEMO))))
    assert stamps == sorted(stamps)  # the pipeline's clock never goes back


class FakeClock:
    """A wall clock that moves only when the source sleeps."""

    def __init__(self, start: float):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_frames_come_out_when_due_at_the_chosen_speed() -> None:
    frames = list(open_capture(str(DEMO)))
    first, second = frames[0][0], frames[1][0]
    gap = second - first
    assert gap > 0
    clock = FakeClock(5000.0)
    src = PcapSource(str(DEMO), speed=4, clock=clock, sleep=clock.sleep)
    out = src.poll(0)
    # Everything recorded at the first frame's instant comes at once, on the wall clock...
    same = sum(1 for f in frames if f[0] == first)
    assert [ts for ts, *_ in out] == [5000.0] * same
    assert [(lt, fr, wire) for _ts, lt, fr, wire in out] == [f[1:] for f in frames[:same]]
    # ...and the next one a quarter of its recorded gap later, not before.
    assert src.poll(0) == []
    nxt = src.poll(60)
    assert nxt[0][0] == pytest.approx(5000.0 + (frames[same][0] - first) / 4)
    assert clock.now == pytest.approx(nxt[0][0])


def test_speed_zero_keeps_the_capture_spacing_and_never_waits() -> None:
    frames = list(open_capture(str(DEMO)))
    clock = FakeClock(100.0)
    src = PcapSource(str(DEMO), speed=0, clock=clock, sleep=clock.sleep)
    out = src.poll(0)
    assert len(out) == min(MAX_BATCH, len(frames))
    assert [ts for ts, *_ in out] == pytest.approx([100.0 + f[0] - frames[0][0]
                                                    for f in frames[:len(out)]])
    assert clock.slept == []


def test_a_file_that_is_no_capture_is_refused_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    with pytest.raises(CaptureError):
        PcapSource(str(bad))
    with pytest.raises(ValueError):
        PcapSource(str(DEMO), speed=-1)
