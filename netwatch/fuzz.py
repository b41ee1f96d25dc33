"""Fuzzing: mutated captures from the corpus through the whole pipeline.

Each case takes a run of consecutive frames from one capture of the corpus, mutates them
(bit flips, truncation, a length field that lies in the Ethernet, IP or transport header or
in the payload's first bytes, segments duplicated or reordered) and writes them as a classic
pcap or a pcapng, sometimes with a header that lies (snap length, record lengths, version,
link type, block lengths, timestamp resolution and values, a file cut short). The case is
replayed as ``netwatch replay`` does: the capture reader, the pipeline with a household, the
event log (to /dev/null), the summary. A file the reader refuses (CaptureError) is a handled
outcome; any other exception is a crash, and the case is written to the output folder as a
reproducer (``crash-<seed>-<case>.pcap[ng]``, replayable with ``netwatch replay``).

Deterministic: the same corpus, seed and packet budget give the same cases.
"""

from __future__ import annotations

import os
import random
import struct
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .eventlog import EventLog
from .pipeline import Pipeline
from .report import summary_text
from .signatures import SignatureSet
from .sources.capture import CaptureError, ReadStats, open_capture

# Frames per case: enough for handshakes and a few reorderings, few enough that one slow
# case stands out.
CASE_FRAMES = 48
# Frames read from each corpus capture: the corpus' openings are what recognisers read.
SEED_FRAMES = 2000
# Offsets (in an Ethernet frame with a 20-byte IPv4 header) of fields that say a length or
# where the next header starts: EtherType, IHL, total length, fragment, protocol, TCP data
# offset, UDP length, and the first payload bytes (TLS record and handshake lengths, RFB
# and RDP TPKT lengths, DNS counts).
LENGTH_FIELDS = (12, 14, 16, 17, 20, 23, 38, 46, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63)
LIES = (0, 1, 0x7F, 0x80, 0xFF)
# Cases replayed by one pipeline before it is finished and a new one made.
CASES_PER_PIPELINE = 50

Case = tuple[int, list[tuple[float, bytes]]]  # (link type, frames with times)


@dataclass
class Crash:
    case: int
    error: str
    reproducer: str


@dataclass
class FuzzResult:
    cases: int = 0
    written: int = 0  # mutated frames written into the cases
    packets: int = 0  # of them, those the reader handed to the pipeline
    refused: int = 0  # files the reader refused with CaptureError (handled)
    seconds: float = 0.0
    slowest_s: float = 0.0
    slowest_case: int = -1
    slowest_packets: int = 0
    slowest_file: str = ""  # the slowest case, written out to time it again
    crashes: list[Crash] = field(default_factory=list)

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.seconds if self.seconds else 0.0


def load_seeds(corpus: Path, limit: int = SEED_FRAMES) -> list[Case]:
    """Frames of each capture of the corpus (one link type per capture: its first)."""
    seeds: list[Case] = []
    for p in sorted(corpus.iterdir()):
        if p.suffix not in (".pcap", ".pcapng"):
            continue
        frames: list[tuple[float, bytes]] = []
        lt0 = None
        try:
            for ts, lt, fr, _w in open_capture(str(p), ReadStats()):
                if lt0 is None:
                    lt0 = lt
                if lt == lt0:
                    frames.append((ts, fr))
                if len(frames) >= limit:
                    break
        except CaptureError:
            continue
        if frames and lt0 is not None:
            seeds.append((lt0, frames))
    return seeds


# ------------------------------------------------------------------ mutations


def _flip(rng: random.Random, fr: bytes) -> bytes:
    if not fr:
        return fr
    b = bytearray(fr)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(rng: random.Random, fr: bytes) -> bytes:
    return fr[:rng.randrange(len(fr) + 1)]


def _length_lie(rng: random.Random, fr: bytes) -> bytes:
    off = rng.choice(LENGTH_FIELDS)
    if off >= len(fr):
        return fr
    b = bytearray(fr)
    b[off] = rng.choice(LIES) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(b)


def _insert(rng: random.Random, fr: bytes) -> bytes:
    i = rng.randrange(len(fr) + 1)
    return fr[:i] + rng.randbytes(rng.randint(1, 16)) + fr[i:]


FRAME_MUTATIONS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _flip, _truncate, _length_lie, _length_lie, _insert)


def mutate(rng: random.Random, frames: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    out = list(frames)
    for _ in range(rng.randint(1, max(1, len(out) // 4))):
        i = rng.randrange(len(out))
        ts, fr = out[i]
        out[i] = (ts, rng.choice(FRAME_MUTATIONS)(rng, fr))
    r = rng.random()
    if r < 0.2 and len(out) > 1:  # duplicated segments
        i = rng.randrange(len(out))
        out.insert(i, out[i])
    elif r < 0.4 and len(out) > 1:  # reordered segments
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    elif r < 0.45:  # time going backwards, or a jump of days
        i = rng.randrange(len(out))
        out[i] = (out[i][0] + rng.choice((-86400.0, 3 * 86400.0, -1.0)), out[i][1])
    return out


# ------------------------------------------------------------------ containers


def pcap_bytes(linktype: int, frames: list[tuple[float, bytes]], rng: random.Random | None = None
               ) -> bytes:
    """A classic microsecond pcap; with ``rng``, header and record lengths may lie."""
    snap, version, lt = 262144, (2, 4), linktype
    if rng is not None and rng.random() < 0.3:
        lie = rng.randrange(4)
        if lie == 0:
            snap = rng.choice((0, 1, 0xFFFFFFFF))
        elif lie == 1:
            version = (rng.randrange(65536), rng.randrange(65536))
        elif lie == 2:
            lt = rng.choice((0, 1, 101, 113, 239, 276, 0xFFFF, linktype))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, version[0], version[1], 0, 0, snap, lt)]
    for ts, fr in frames:
        sec = max(0, min(int(ts), 0xFFFFFFFF))
        incl = orig = len(fr)
        if rng is not None and rng.random() < 0.02:
            incl = rng.choice((incl + 1, incl + 1000, 0xFFFFFFFF, 0))
        if rng is not None and rng.random() < 0.02:
            orig = rng.choice((0, incl - 1 if incl else 0, 0xFFFFFFFF))
        out.append(struct.pack("<IIII", sec, int((ts - int(ts)) * 1e6) % 1000000, incl, orig))
        out.append(fr)
    return b"".join(out)


def _block(btype: int, body: bytes, blen: int | None = None) -> bytes:
    body += bytes(-len(body) % 4)
    n = 12 + len(body) if blen is None else blen
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def pcapng_bytes(linktype: int, frames: list[tuple[float, bytes]],
                 rng: random.Random | None = None, tsresol: int = 6) -> bytes:
    """A pcapng (SHB, one IDB, EPBs); with ``rng``, block lengths, the timestamp
    resolution and the timestamps themselves may lie, and a short block may end it."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    if rng is not None and rng.random() < 0.1:
        tsresol = rng.choice((0, 0x80, 0x80 | 63, 9, 127, 255))
    idb = _block(1, struct.pack("<HHI", linktype, 0, 262144)
                 + struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0))
    out = [shb, idb]
    unit = 2.0 ** -(tsresol & 0x7F) if tsresol & 0x80 else 10.0 ** -tsresol
    for ts, fr in frames:
        units = int(max(ts, 0) / unit) if unit > 0 else 0
        if rng is not None and rng.random() < 0.02:
            units = rng.choice((0xFFFFFFFFFFFFFFFF, 1 << 60, 0))
        units &= 0xFFFFFFFFFFFFFFFF
        body = struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(fr), len(fr)) + fr
        blen = None
        if rng is not None and rng.random() < 0.01:
            blen = rng.choice((12, 16, 31, 0xFFFFFFF0))
        out.append(_block(6, body, blen))
    if rng is not None and rng.random() < 0.1:
        out.append(_block(6, b"\x00" * rng.choice((0, 4, 8, 12))))  # a packet block cut short
    return b"".join(out)


def container(rng: random.Random, linktype: int, frames: list[tuple[float, bytes]]
              ) -> tuple[str, bytes]:
    if rng.random() < 0.5:
        suffix, data = ".pcap", pcap_bytes(linktype, frames, rng)
    else:
        suffix, data = ".pcapng", pcapng_bytes(linktype, frames, rng)
    if rng.random() < 0.05:
        data = data[:rng.randrange(len(data) + 1)]  # the file cut short
    return suffix, data


# ------------------------------------------------------------------ running


class Runner:
    """Replays case files as ``netwatch replay`` does with several files: one pipeline for
    CASES_PER_PIPELINE cases (as a long replay or the daemon keeps its state), then its
    end: sessions finished, the stats event, the summary."""

    def __init__(self, sigs: SignatureSet, household: Any):
        self.sigs, self.household = sigs, household
        self.pipe: Pipeline | None = None
        self.cases = 0

    def run(self, path: str) -> int:
        """One file; returns the packets read. Raises CaptureError for a file the reader
        refuses, anything else for a crash."""
        if self.pipe is None:
            self.pipe = Pipeline(self.sigs, EventLog(os.devnull), household=self.household)
        pipe = self.pipe
        before = pipe.c.packets
        try:
            pipe.feed_file(path, ReadStats())
            self.cases += 1
        except BaseException:
            self.pipe = None  # a crash or a refusal: the next case starts afresh
            raise
        return pipe.c.packets - before

    def due(self) -> bool:
        return self.pipe is not None and self.cases % CASES_PER_PIPELINE == 0

    def close(self) -> None:
        """The pipeline's end (as after the last file of a replay)."""
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            result = pipe.finish()
            pipe.log.write(pipe.stats_event())
            pipe.log.close()
            summary_text(result, ("fuzz",))


def _crash(e: Exception, case: int, seed: int, data: bytes, suffix: str, out_dir: Path
           ) -> Crash:
    out_dir.mkdir(parents=True, exist_ok=True)
    repro = out_dir / f"crash-{seed}-{case}{suffix}"
    repro.write_bytes(data)
    return Crash(case, "".join(traceback.format_exception_only(type(e), e)).strip() + "\n"
                 + "".join(traceback.format_tb(e.__traceback__)[-3:]), str(repro))


def fuzz(corpus: Path, packets: int, seed: int, sigs: SignatureSet, household: Any,
         out_dir: Path, progress: Callable[[FuzzResult], None] | None = None) -> FuzzResult:
    """Cases until ``packets`` mutated packets have been written into them."""
    seeds = load_seeds(corpus)
    if not seeds:
        raise FileNotFoundError(f"no captures in {corpus}")
    rng = random.Random(seed)
    res = FuzzResult()
    slowest = (b"", "")
    written = 0
    runner = Runner(sigs, household)
    with tempfile.TemporaryDirectory(prefix="netwatch-fuzz-") as tmp:
        while written < packets:
            lt, frames = rng.choice(seeds)
            start = rng.randrange(len(frames))
            case_frames = mutate(rng, frames[start:start + CASE_FRAMES])
            suffix, data = container(rng, lt, case_frames)
            written += len(case_frames)
            res.written = written
            path = os.path.join(tmp, "case" + suffix)
            with open(path, "wb") as fh:
                fh.write(data)
            t0 = time.perf_counter()
            n = 0
            try:
                n = runner.run(path)
            except CaptureError:
                res.refused += 1
            except Exception as e:  # noqa: BLE001 - any other exception is what we look for
                res.crashes.append(_crash(e, res.cases, seed, data, suffix, out_dir))
            dt = time.perf_counter() - t0
            if runner.due() or written >= packets:
                try:
                    runner.close()  # a crash here is put on the pipeline's last case
                except Exception as e:  # noqa: BLE001
                    res.crashes.append(_crash(e, res.cases, seed, data, suffix, out_dir))
            res.seconds += dt
            res.packets += n
            res.cases += 1
            if dt > res.slowest_s:
                res.slowest_s, res.slowest_case, res.slowest_packets = dt, res.cases - 1, n
                slowest = (data, suffix)
            if progress is not None and res.cases % 1000 == 0:
                progress(res)
    if slowest[0]:
        out_dir.mkdir(parents=True, exist_ok=True)
        slow = out_dir / f"slowest-{seed}{slowest[1]}"
        slow.write_bytes(slowest[0])
        res.slowest_file = str(slow)
    return res
