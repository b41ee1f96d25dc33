"""The fuzz command on a short budget, and the capture reader's answers to the records it
found breaking it (a pcapng time past the year 9999; a pcapng ending in a packet block too
short for its fields)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from click.testing import CliRunner

from conftest import CORPUS, needs_corpus, replay
from netwatch.cli import main
from netwatch.fuzz import _block, mutate, pcap_bytes, pcapng_bytes
from netwatch.sources.capture import ReadStats, open_capture

ETH_TCP = (b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
           + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, b"\x0a\x00\x00\x01",
                         b"\x0a\x00\x00\x02")
           + struct.pack("!HHIIBBHHH", 40000, 5900, 1, 0, 0x50, 0x02, 1024, 0, 0))


@needs_corpus
def test_fuzz_command_short_budget_finds_no_crash(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["fuzz", "--packets", "15000", "--seed", "3", "--corpus",
                                    str(CORPUS), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "crashes: 0" in res.output
    assert "slowest case: #" in res.output and list(tmp_path.glob("slowest-3.pcap*"))


def test_a_crash_is_reported_with_a_reproducer(tmp_path: Path, monkeypatch) -> None:
    # A pipeline that raises on a packet stands for a bug: the command must say so, keep
    # the case as a file and exit 1.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "one.pcap").write_bytes(pcap_bytes(1, [(1.0, ETH_TCP)] * 4))

    def boom(*_a: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("netwatch.pipeline.Pipeline._packet", boom)
    res = CliRunner().invoke(main, ["fuzz", "--packets", "20", "--corpus", str(corpus),
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "RuntimeError: a bug" in res.output
    repro = sorted((tmp_path / "out").glob("crash-1-*"))
    assert repro and list(open_capture(str(repro[0]), ReadStats())) is not None


def test_mutations_are_deterministic_for_a_seed() -> None:
    frames = [(float(i), ETH_TCP) for i in range(10)]
    a = mutate(random.Random(5), frames)
    b = mutate(random.Random(5), frames)
    assert a == b and a != frames


def test_pcapng_time_past_year_9999_is_a_malformed_record(tmp_path: Path) -> None:
    p = tmp_path / "far.pcapng"
    # Timestamps in whole seconds (if_tsresol 0): the largest is 1.8e19 s, past what the
    # platform's time_t can spell, let alone a year of four digits.
    good = pcapng_bytes(1, [(1700000000.0, ETH_TCP)], tsresol=0)
    far = struct.pack("<IIIII", 0, 0xFFFFFFFF, 0xFFFFFFFF, len(ETH_TCP), len(ETH_TCP)) + ETH_TCP
    p.write_bytes(good + _block(6, far))
    result, events = replay(p)
    assert result.counters.packets == 1 and result.counters.malformed == 1
    assert all(e["timestamp"][:4] <= "9999" and e["timestamp"][4] == "-" for e in events)


def test_pcapng_ending_in_a_short_packet_block_keeps_what_came_before(tmp_path: Path) -> None:
    good = pcapng_bytes(1, [(1700000000.0, ETH_TCP)] * 3)
    for cut in (0, 4, 8, 12, 16):
        p = tmp_path / f"short{cut}.pcapng"
        p.write_bytes(good + _block(6, b"\x00" * cut))  # EPB fields are 20 bytes
        result, _events = replay(p)
        assert result.counters.packets == 3, cut
