"""The hot loops against the full path, capture by capture.

``Pipeline.feed_pcap`` and ``feed_pcapng`` take most packets without decoding them: the
shared counting rules (``fast_ipv4``), lookups over UDP (``_lookup4``), and, for a plain
IPv4 frame that needs more, the full path from the fields already read (``_full4``).
Whatever they skip, the result must be what decoding every frame (``_frame``) gives: the
same counters (malformed and cut packets included), each flow's volumes and verdict, and
the event log, event for event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS, PCAPS, household_yaml, needs_corpus, signatures
from netwatch.eventlog import EventLog
from netwatch.household import load_household
from netwatch.pipeline import Pipeline
from netwatch.sources.capture import ReadStats, open_capture

OWN = sorted(p for p in PCAPS.glob("*/*.pcap*"))
SHARED = sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []


def outcome(pipe: Pipeline, eve: Path) -> tuple[Any, list[Any], list[Any]]:
    result = pipe.finish()
    pipe.log.write(pipe.stats_event())
    pipe.log.close()
    found = [(f.flow_id, f.client, f.client_port, f.server, f.server_port, f.bytes_toserver,
              f.bytes_toclient, f.detection.tool, f.detection.role) for f in result.findings]
    return result.counters, found, [json.loads(x) for x in eve.read_text().splitlines()]


def pipeline(eve: Path, tmp: Path) -> Pipeline:
    # A household on the address the project's captures give their PC, so sessions and
    # the banking context run too.
    house = tmp / "household.yaml"
    house.write_text(household_yaml("laptop", "192.168.1.23", country="be"), encoding="utf-8")
    return Pipeline(signatures(), EventLog(str(eve)), household=load_household(str(house)))


def compare(capture: Path, tmp: Path) -> None:
    hot = pipeline(tmp / "hot.json", tmp)
    hot.feed_file(str(capture), ReadStats())
    got = outcome(hot, tmp / "hot.json")

    full = pipeline(tmp / "full.json", tmp)
    full.pcap_name = str(capture)
    full.c.files += 1
    st = ReadStats()
    for ts, lt, frame, wire in open_capture(str(capture), st):
        full.c.packets += 1
        full.c.bytes += wire
        full.c.captured_bytes += len(frame)
        full._frame(ts, lt, frame, wire)
        full.last_packet_ts = ts
        full.now = max(full.now, ts)  # the clock is the last packet's (Pipeline._counted)
    # What the reader counts of the file itself is the same either way.
    for name in ("files_truncated",):
        setattr(full.c, name, getattr(hot.c, name))
    full.c.malformed += st.bad_timestamps
    expected = outcome(full, tmp / "full.json")
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2] == expected[2]


@pytest.mark.parametrize("capture", OWN, ids=lambda p: p.name)
def test_the_project_captures_come_out_of_the_hot_loops_as_out_of_the_full_path(
        capture: Path, tmp_path: Path) -> None:
    compare(capture, tmp_path)


@needs_corpus
@pytest.mark.parametrize("capture", SHARED, ids=lambda p: p.name)
def test_the_corpus_comes_out_of_the_hot_loops_as_out_of_the_full_path(
        capture: Path, tmp_path: Path) -> None:
    compare(capture, tmp_path)


@pytest.mark.parametrize("unit", [1e-6, 1e-9, 1.0, 2 ** -20, 1e-3])
def test_the_pcapng_loop_reads_a_64_bit_time_as_the_reader_does(unit: float) -> None:
    """``feed_pcapng`` makes a block's 64-bit time a float without a big integer; the
    reader (``PcapngFile.walk``) shifts and ors. Both must give the same float."""
    import random
    rng = random.Random(7)
    values = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53 + 1, 2 ** 64 - 1,
              1_700_000_000_123_456, 1_700_000_000_123_456_789]
    values += [rng.getrandbits(rng.choice((32, 52, 53, 54, 63, 64))) for _ in range(5000)]
    for v in values:
        hi, lo = v >> 32, v & 0xFFFFFFFF
        assert (hi * 4294967296.0 + lo) * unit == ((hi << 32) | lo) * unit, v
