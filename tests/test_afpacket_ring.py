"""The af_packet ring walked in place (netwatch.sources.afpacket.Ring, Pipeline.feed_walk),
without a socket: captures laid out in memory as the kernel lays out a TPACKET_V3 ring
(tests/tpacket.py), VLAN tags taken out of the frames as the kernel takes them out.

What ``netwatch run`` counts from the ring must be what ``netwatch replay`` counts from the
same packets in a file, and what the list of frames (``poll``, ``Pipeline.feed``) counts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from tpacket import FakeRing, RingFrame, blocks

from conftest import RECORDED, SYNTHETIC, signatures
from netwatch.config import Settings
from netwatch.daemon import Daemon
from netwatch.eventlog import EventLog
from netwatch.pipeline import Pipeline
from netwatch.sources.afpacket import MAX_BATCH, TP_STATUS_KERNEL
from netwatch.sources.capture import ReadStats, open_capture

# Small blocks: a capture of a few hundred packets spans many, and frames meet block ends.
BLOCK_SIZE = 4096
BLOCK_NR = 4


def ring_frames(path: Path) -> list[RingFrame]:
    """A capture's frames as the kernel hands them over: an 802.1Q/802.1ad tag right after
    the MAC addresses is taken out into the frame's metadata (and off its wire length)."""
    out = []
    for ts, _lt, frame, wire in open_capture(str(path), ReadStats()):
        tpid = struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 18 else 0
        if tpid in (0x8100, 0x88A8):
            tci = struct.unpack_from("!H", frame, 14)[0]
            out.append(RingFrame(ts, frame[:12] + frame[16:], wire - 4,
                                 (tci, None if tpid == 0x8100 else tpid)))
        else:
            out.append(RingFrame(ts, frame, wire))
    return out


def events_of(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    for e in events:
        e.pop("pcap_filename", None)  # replay names the file; live has none
    return events


def outcome(pipe: Pipeline, eve: Path) -> tuple[Any, ...]:
    result = pipe.finish()
    pipe.log.write(pipe.stats_event())
    pipe.log.close()
    flows = [(f.flow_id, f.client, f.client_port, f.server, f.server_port,
              f.bytes_toserver, f.bytes_toclient, f.detection.tool, f.detection.role)
             for f in result.findings]
    return result.counters, flows, events_of(eve)


def replayed(capture: Path, tmp: Path) -> tuple[Any, ...]:
    eve = tmp / "replay.json"
    pipe = Pipeline(signatures(), EventLog(str(eve)))
    pipe.feed_file(str(capture), ReadStats())
    pipe.c.files = 0  # a live source reads no file
    return outcome(pipe, eve)


def walked(frames: list[RingFrame], tmp: Path) -> tuple[tuple[Any, ...], list[tuple[int, ...]]]:
    """The frames through a ring walked in place; the outcome and what each walk returned."""
    eve = tmp / "walk.json"
    pipe = Pipeline(signatures(), EventLog(str(eve)))
    ring = FakeRing(BLOCK_SIZE, BLOCK_NR)
    pending = blocks(frames, BLOCK_SIZE)
    walks: list[tuple[int, ...]] = []
    more = True
    while more:
        more = ring.load(pending)
        while ring.ring.ready():
            before = pipe.c.packets
            pipe.feed_walk(lambda *how: walks.append(
                ring.ring.walk(*how)) or walks[-1])  # type: ignore[func-returns-value]
            assert pipe.c.packets == before + walks[-1][0]
    return outcome(pipe, eve), walks


def polled(frames: list[RingFrame], tmp: Path) -> tuple[Any, ...]:
    """The frames through the same ring, as lists of tuples (``Ring.frames``, ``feed``)."""
    eve = tmp / "poll.json"
    pipe = Pipeline(signatures(), EventLog(str(eve)))
    ring = FakeRing(BLOCK_SIZE, BLOCK_NR)
    pending = blocks(frames, BLOCK_SIZE)
    more = True
    while more:
        more = ring.load(pending)
        batch: list[Any] = []
        ring.ring.frames(batch)
        pipe.feed(batch)
    return outcome(pipe, eve)


@pytest.mark.parametrize("capture", [
    RECORDED / "vnc-x11vnc.pcap",
    RECORDED / "rdp-xrdp.pcap",
    SYNTHETIC / "vnc-ipv6-vlan.pcap",  # every frame tagged: the tags go back in
    SYNTHETIC / "session-snaplen-anydesk.pcap",  # frames cut by a snap length
    SYNTHETIC / "demo-anydesk-scam.pcap",
], ids=lambda p: p.stem)
def test_the_ring_walked_in_place_counts_what_a_replay_of_the_same_packets_counts(
        capture: Path, tmp_path: Path) -> None:
    frames = ring_frames(capture)
    expected = replayed(capture, tmp_path)
    got, walks = walked(frames, tmp_path)
    assert got[0] == expected[0]  # packets, wire and captured bytes, flows, every counter
    assert got[1] == expected[1]  # each flow's volumes and verdict
    assert got[2] == expected[2]  # the event log, event for event
    assert expected[1], "the capture's session is found"
    assert polled(frames, tmp_path) == expected
    packets = sum(w[0] for w in walks)
    assert packets == len(frames)
    assert sum(w[1] for w in walks) == expected[0].bytes


def test_untagged_ipv6_frames_are_counted_in_place_as_a_replay_counts_them(
        tmp_path: Path) -> None:
    """The IPv6 capture with its VLAN tags left out (as a port without VLANs delivers it):
    its frames take the ring walk's IPv6 branch (pipeline.fast_ipv6)."""
    cap = tmp_path / "ipv6.pcap"
    with open(cap, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, _lt, frame, wire in open_capture(str(SYNTHETIC / "vnc-ipv6-vlan.pcap"),
                                                 ReadStats()):
            while frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
                frame, wire = frame[:12] + frame[16:], wire - 4
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), wire)
                     + frame)
    frames = ring_frames(cap)
    assert all(f.frame[12:14] == b"\x86\xdd" for f in frames)
    expected = replayed(cap, tmp_path)
    got, _walks = walked(frames, tmp_path)
    assert got == expected and expected[1]


@pytest.mark.parametrize("capture", [RECORDED / "rdp-xrdp.pcap",
                                     SYNTHETIC / "demo-anydesk-scam.pcap"],
                         ids=lambda p: p.stem)
def test_decided_flows_are_counted_in_place_and_only_the_rest_is_copied(
        capture: Path, tmp_path: Path) -> None:
    """Once a flow is decided, its packets are counted by the fast path on the block itself;
    the full path gets only the others."""
    frames = ring_frames(capture)
    _got, walks = walked(frames, tmp_path)
    in_place = sum(w[3] for w in walks)
    assert in_place > len(frames) // 3
    assert in_place < len(frames)  # the handshakes took the full path


def _stub_walk(frames: list[RingFrame], until: float, stop_at: float | None = None
               ) -> tuple[tuple[int, ...], list[Any], list[Any], FakeRing]:
    """One walk with stand-ins for the pipeline: ``fast`` counts everything it is given;
    ``full`` keeps what it is given and returns ``stop_at`` (or ``until``)."""
    to_fast: list[Any] = []
    to_full: list[Any] = []

    def fast(buf: bytes, o: int, n: int, wire: int, ts: float) -> bool:
        to_fast.append((ts, buf[o:o + n], wire))
        return True

    def full(ts: float, lt: int, frame: bytes, wire: int) -> float:
        to_full.append((ts, lt, frame, wire))
        return until if stop_at is None else stop_at

    ring = FakeRing(BLOCK_SIZE, BLOCK_NR)
    ring.load(blocks(frames, BLOCK_SIZE))
    return ring.ring.walk(fast, full, until), to_fast, to_full, ring


ETH = bytes.fromhex("020000000002020000000001")


def test_a_frame_whose_tag_the_kernel_took_out_gets_it_back_on_the_full_path() -> None:
    ip = bytes.fromhex("0800") + bytes(46)
    frames = [RingFrame(1.0, ETH + ip, 60),
              RingFrame(2.0, ETH + ip, 60, (0x2A, None)),        # 802.1Q, TPID not given
              RingFrame(3.0, ETH + ip, 60, (0x3005, 0x88A8))]    # 802.1ad
    res, to_fast, to_full, _ring = _stub_walk(frames, until=10.0)
    assert [t for t, _f, _w in to_fast] == [1.0]
    assert [(f, w) for _t, _lt, f, w in to_full] == [
        (ETH + bytes.fromhex("8100002a") + ip, 64),
        (ETH + bytes.fromhex("88a83005") + ip, 64)]
    assert res[:4] == (3, 60 + 64 + 64, 60 + 64 + 64, 1)


def test_frames_from_the_next_timed_work_on_take_the_full_path_until_it_has_run() -> None:
    """The fast path is used only before ``until`` (the pipeline's next sweep or tick); the
    full path runs the timed work and says when the next is due."""
    frame = ETH + bytes.fromhex("0800") + bytes(46)
    frames = [RingFrame(float(t), frame, 60) for t in range(1, 7)]
    res, to_fast, to_full, _ring = _stub_walk(frames, until=3.0, stop_at=5.5)
    assert [t for t, _f, _w in to_fast] == [1.0, 2.0, 4.0, 5.0]
    assert [t for t, _lt, _f, _w in to_full] == [3.0, 6.0]
    assert res == (6, 360, 360, 4, 6.0)


def test_each_block_goes_back_to_the_kernel_and_a_walk_stops_near_max_batch() -> None:
    frame = ETH + bytes.fromhex("0800") + bytes(46)
    size, nr = 1 << 16, 16
    per_block = (size - 48) // 144  # after the block's header, 82 + 60 bytes 8-aligned each
    frames = [RingFrame(1.0, frame, 60)] * (per_block * nr)
    ring = FakeRing(size, nr)
    ring.load(blocks(frames, size))
    first = ring.ring.walk(lambda *a: True, lambda *a: 9.0, 9.0)
    taken = -(-MAX_BATCH // per_block)  # whole blocks, until MAX_BATCH frames are reached
    assert taken < nr
    assert first[0] == taken * per_block and ring.ring.block == taken
    status = [struct.unpack_from("=I", ring.mm, b * size + 8)[0] for b in range(nr)]
    assert status[:taken] == [TP_STATUS_KERNEL] * taken
    assert TP_STATUS_KERNEL not in status[taken:]  # still netwatch's, for the next walk
    second = ring.ring.walk(lambda *a: True, lambda *a: 9.0, 9.0)
    assert first[0] + second[0] == len(frames) and ring.ring.block == 0
    assert ring.ring.packets == len(frames)


def test_frames_are_read_in_place_while_their_block_is_netwatchs() -> None:
    """The walk reads the ring itself: the kernel writes a block only once it is given
    back, so a block is given back only after its last frame, and even when the pipeline
    fails on one of its frames."""
    frame = ETH + bytes.fromhex("0800") + bytes(46)
    size, nr = 1 << 16, 4
    per_block = (size - 48) // 144
    ring = FakeRing(size, nr)
    ring.load(blocks([RingFrame(1.0, frame, 60)] * (per_block * nr), size))

    def status(b: int) -> int:
        return int(struct.unpack_from("=I", ring.mm, b * size + 8)[0])

    seen: list[tuple[int, int]] = []

    def fast(*_a: Any) -> bool:
        seen.append((ring.ring.block, status(ring.ring.block)))
        if len(seen) == per_block + 3:  # the second block's third frame
            raise RuntimeError("a fault in the pipeline")
        return True

    with pytest.raises(RuntimeError):
        ring.ring.walk(fast, lambda *a: 9.0, 9.0)
    assert all(st != TP_STATUS_KERNEL for _b, st in seen)  # every frame read while held
    assert [b for b, _st in seen[:per_block]] == [0] * per_block
    assert status(0) == TP_STATUS_KERNEL and status(1) == TP_STATUS_KERNEL  # both given back
    assert status(2) != TP_STATUS_KERNEL and ring.ring.block == 2  # the next walk's


# ------------------------------------------------------------------ the daemon's loop


class RingSource:
    """A live source with a ring to walk (as AfPacketSource has), filled from a capture."""

    name = "af_packet"
    iface = "test0"
    in_place = True

    def __init__(self, frames: list[RingFrame]):
        self.fake = FakeRing(BLOCK_SIZE, BLOCK_NR)
        self.pending = blocks(frames, BLOCK_SIZE)
        self.walks = 0

    def wait(self, timeout_s: float) -> bool:
        self.fake.load(self.pending)
        return self.fake.ring.ready()

    def walk(self, *how: Any) -> tuple[int, int, int, int, float]:
        self.walks += 1
        return self.fake.ring.walk(*how)

    def poll(self, timeout_s: float) -> list[Any]:
        raise AssertionError("a source with a ring is walked, not polled")

    def stats(self) -> dict[str, Any]:
        return {"packets": self.fake.ring.packets, "dropped": 0}

    def close(self) -> None:
        pass


def test_the_daemon_walks_a_ring_source_in_place_and_alerts(tmp_path: Path) -> None:
    from conftest import household_yaml

    (tmp_path / "household.yaml").write_text(household_yaml("laptop", "10.99.0.1"),
                                             encoding="utf-8")
    frames = ring_frames(RECORDED / "vnc-x11vnc.pcap")
    src = RingSource(frames)
    clock = [frames[-1].ts]
    d = Daemon(Settings(source="af_packet", interface="test0",
                        household=str(tmp_path / "household.yaml"),
                        state_dir=str(tmp_path / "state"), eve_log=str(tmp_path / "eve.json"),
                        metrics_listen="off", control_listen="off", block_backend="off"),
               clock=lambda: clock[0], source=src)
    d.start()
    try:
        fed = 0
        for _ in range(20):
            fed += d.step()
        assert fed == len(frames) and src.walks >= 1
        assert d.pipe is not None and d.pipe.c.packets == len(frames)
        assert d.alerts >= 1
    finally:
        d.shutdown()
    events = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    assert any(e["event_type"] == "remote_access" and e["remote_access"]["tool"] == "vnc"
               for e in events)
    assert events[-1]["stats"]["source_packets"] == len(frames)
