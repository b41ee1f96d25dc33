"""Every recogniser on arbitrary bytes: an answer, never an exception.

A recogniser sees whatever the network sends; one that raised would stop the pipeline.
Hypothesis feeds each one random first segments (both directions, both transports), and
also mutated copies of the openings they are built to recognise.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_recognisers import View

from conftest import signatures
from netwatch.recognisers import GIVE_UP, Detection, load_all

OPENINGS = [
    b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00",
    b"RFB 003.008\n", b"\x7f\x7fICA\x00", b"\x1aCGP/01" + bytes(20), b"NXSH-8.10.1\n",
    bytes.fromhex("01000000010000000808"), b"l\x00\x0b\x00\x00\x00\x12\x00\x10\x00\x00\x00",
    b"\x00\x01\x00\x02\x00\x01\x00", b"GET /AnyDesk.exe HTTP/1.1\r\nHost: a.b\r\n\r\n",
    b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03", b"\x17\x24\x0a\x00",
]

RECOGNISERS = None


def _all():
    global RECOGNISERS
    if RECOGNISERS is None:
        sigs = signatures()
        RECOGNISERS = [cls(sigs) for cls in load_all().values()]
    return RECOGNISERS


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


segments = st.lists(st.binary(max_size=120), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from((6, 17)), segments, segments, st.booleans())
def test_random_bytes_never_raise(proto: int, client: list[bytes], server: list[bytes],
                                  closing: bool) -> None:
    for r in _all():
        if proto not in r.protos:
            continue
        v = View(proto=proto, closing=closing)
        for c in client:
            v.send(0, c)
        for s in server:
            v.send(1, s)
        res = r.inspect(v)
        assert res is None or res is GIVE_UP or isinstance(res, Detection)
        for first in range(256):
            assert isinstance(r.could_start(proto, first), bool)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OPENINGS), st.sampled_from(OPENINGS),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
       st.integers(0, 60), st.sampled_from((6, 17)))
def test_mutated_openings_never_raise(a: bytes, b: bytes, edits: list[tuple[int, int]],
                                      cut: int, proto: int) -> None:
    client = _mutate(a, edits)[:max(1, len(a) - cut % max(1, len(a)))]
    server = _mutate(b, edits[::-1])
    for r in _all():
        if proto not in r.protos:
            continue
        v = View(proto=proto).send(0, client).send(1, server)
        res = r.inspect(v)
        assert res is None or res is GIVE_UP or isinstance(res, Detection)


# ---------------------------------------------------------------- the whole pipeline

import os  # noqa: E402
import struct  # noqa: E402
from pathlib import Path  # noqa: E402

from netwatch.eventlog import EventLog  # noqa: E402
from netwatch.household import load_household  # noqa: E402
from netwatch.pipeline import Pipeline  # noqa: E402

PORTS = (53, 80, 177, 443, 1494, 3389, 4000, 4899, 5900, 5938, 6000, 21116, 21117, 50000)
HOUSEHOLD = Path(__file__).resolve().parents[1] / "deploy" / "household.example.yaml"


def _frame(proto: int, a: int, b: int, sport: int, dport: int, flags: int,
           payload: bytes) -> bytes:
    src, dst = bytes([192, 168, 1, 23 + a % 3]), bytes([198, 51, 100, 7 + b % 3])
    if a % 2:
        src, dst, sport, dport = dst, src, dport, sport
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000 + a, 2000 + b, 0x50, flags, 1024,
                         0, 0) + payload
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4


packets = st.lists(st.tuples(st.sampled_from((6, 17)), st.integers(0, 5), st.integers(0, 5),
                             st.sampled_from(PORTS), st.sampled_from(PORTS),
                             st.sampled_from((0x02, 0x12, 0x10, 0x18, 0x11, 0x04)),
                             st.binary(max_size=200), st.floats(0, 30)),
                   max_size=40)


@settings(max_examples=150, deadline=None)
@given(packets)
def test_the_pipeline_with_a_household_survives_random_traffic(pkts: list) -> None:
    pipe = Pipeline(signatures(), EventLog(os.devnull), household=load_household(
        str(HOUSEHOLD)))
    t = 1709647000.0
    frames = []
    for proto, a, b, sport, dport, flags, payload, gap in pkts:
        t += gap
        fr = _frame(proto, a, b, sport, dport, flags, payload)
        frames.append((t, 1, fr, len(fr)))
    pipe.feed(frames)
    result = pipe.finish()
    assert result.counters.packets == len(frames)
