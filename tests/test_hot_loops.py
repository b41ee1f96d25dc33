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
from netwatch.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW
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
    full_path(full, open_capture(str(capture), st))
    # What the reader counts of the file itself is the same either way.
    for name in ("files_truncated",):
        setattr(full.c, name, getattr(hot.c, name))
    full.c.malformed += st.bad_timestamps
    expected = outcome(full, tmp / "full.json")
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2] == expected[2]


def full_path(full: Pipeline, frames: Any) -> None:
    """Every frame through ``_frame`` (decoded in full), the counters as a hot loop keeps
    them."""
    for ts, lt, frame, wire in frames:
        full.c.packets += 1
        full.c.bytes += wire
        full.c.captured_bytes += len(frame)
        full._frame(ts, lt, frame, wire)
        full.last_packet_ts = ts
    if full.c.packets and full.last_packet_ts > full.now:
        full.now = full.last_packet_ts  # a hot loop's clock at its end (Pipeline._counted)


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


def consistent(frame: bytes) -> bytes:
    """``frame`` with the two fields the counting rules take on trust made to fit, when it is
    an Ethernet frame with a plain IPv4 header: the IP total length (not less than its
    headers need, when the frame holds more) and the TCP data offset (within the
    datagram). The hot loops count a decided flow's packet without checking them: doing
    so cost 10 % more instructions per packet of the 100k mix, for packets that a network
    or a capture tool does not deliver with their lengths broken (``decode_frame``, on the
    full path, counts such a packet as malformed instead of to its flow)."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[14] != 0x45:
        return frame
    out = bytearray(frame)
    total = out[16] << 8 | out[17]
    if frame[23] == 6 and len(frame) >= 54:
        if not 20 <= (out[46] >> 4) * 4 <= min(total, len(frame) - 14) - 20:
            out[46] = 0x50 | out[46] & 0x0F
        need = 40
    else:
        need = 28
    if total < need:
        out[16:18] = (len(frame) - 14).to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_mutated_captures_come_out_of_the_hot_loops_as_out_of_the_full_path(
        container: str, tmp_path: Path) -> None:
    """The fuzzer's mutations (bits flipped, frames cut, length fields that lie, bytes
    inserted, segments repeated and reordered) of the project's captures, written as plain
    files: whatever a frame has become, the hot loops and the full path agree on it, but
    for what the hot loops trust (``consistent``)."""
    import random

    from netwatch.fuzz import load_seeds, mutate, pcap_bytes, pcapng_bytes
    seeds = [s for d in sorted({p.parent for p in OWN}) for s in load_seeds(d, 200)]
    rng = random.Random(20 if container == "pcap" else 21)
    write = pcap_bytes if container == "pcap" else pcapng_bytes
    for case in range(60):
        linktype, frames = seeds[rng.randrange(len(seeds))]
        start = rng.randrange(len(frames))
        cut = mutate(rng, frames[start:start + 48])
        # The frames' contents as mutated, their times in order: a clock that goes back is
        # not what this compares (the stats event's time is the last packet's, or the last
        # one the full path saw).
        cut = list(zip(sorted(ts for ts, _fr in cut), (consistent(fr) for _ts, fr in cut)))
        capture = tmp_path / f"case{case}.{container}"
        capture.write_bytes(write(linktype, cut))
        work = tmp_path / f"case{case}"
        work.mkdir()
        compare(capture, work)


def raw_ip(capture: Path) -> list[tuple[float, bytes]]:
    """The capture's Ethernet frames that carry IPv4 or IPv6, without their link header:
    the packets as the nflog source or a tun device hands them over. Their times are put
    in order (a few corpus captures have packets out of order): a live batch's clock never
    goes back (``feed``), and a clock that does is not what this compares."""
    frames = [(ts, frame[14:]) for ts, lt, frame, _w in open_capture(str(capture), ReadStats())
              if lt == LINKTYPE_ETHERNET and frame[12:14] in (b"\x08\x00", b"\x86\xdd")]
    return list(zip(sorted(ts for ts, _p in frames), (p for _ts, p in frames)))


class FullPathCalls:
    """Counts the frames a pipeline sends to its full path (``_frame``)."""

    def __init__(self, pipe: Pipeline) -> None:
        self.calls = 0
        frame = pipe._frame

        def counted(*args: Any) -> None:
            self.calls += 1
            frame(*args)

        pipe._frame = counted  # type: ignore[method-assign]


def raw_ip_both_ways(captures: list[Path], tmp_path: Path) -> tuple[int, int]:
    """Each capture's IP packets as raw IP, fed as a live source's batch and replayed as a
    raw-IP file, against the full path; the packets, and those the fast path took."""
    from netwatch.fuzz import pcap_bytes

    skipped = packets = 0
    for i, capture in enumerate(captures):
        packets_ = raw_ip(capture)
        if not packets_:
            continue
        work = tmp_path / f"c{i}"
        work.mkdir()
        frames = [(ts, LINKTYPE_RAW, p, len(p)) for ts, p in packets_]

        hot = pipeline(work / "hot.json", work)
        calls = FullPathCalls(hot)
        hot.feed(frames)
        got = outcome(hot, work / "hot.json")
        full = pipeline(work / "full.json", work)
        full_path(full, frames)
        assert got == outcome(full, work / "full.json"), capture.name
        skipped += len(frames) - calls.calls
        packets += len(frames)

        raw = work / "raw.pcap"
        raw.write_bytes(pcap_bytes(LINKTYPE_RAW, packets_))
        compare(raw, work)
    return packets, skipped


def test_raw_ip_packets_take_the_fast_path_and_come_out_as_out_of_the_full_path(
        tmp_path: Path) -> None:
    """Raw IP packets (LINKTYPE_RAW: what the nflog source reads from the router, and
    captures of tun devices) are framed as Ethernet for the fast path
    (``Pipeline._fast_raw``), in a live source's batch (``feed``) and in a raw-IP capture
    file (the hot loops). Both must give what decoding each packet gives, and the fast path
    must take most of them."""
    packets, skipped = raw_ip_both_ways(OWN, tmp_path)
    assert packets > 5_000
    # Counted or read as lookups without a decode: most of the packets of the project's
    # captures, as for their Ethernet frames.
    assert skipped > packets // 2, (skipped, packets)


@needs_corpus
def test_the_corpus_as_raw_ip_comes_out_of_the_fast_path_as_out_of_the_full_path(
        tmp_path: Path) -> None:
    packets, skipped = raw_ip_both_ways(SHARED, tmp_path)
    assert skipped > packets // 2, (skipped, packets)
