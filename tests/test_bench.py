"""The benchmark's own logic (no timing is asserted: speed is compared in bench runs only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import RECORDED, SYNTHETIC
from netwatch import bench
from netwatch.cli import main
from netwatch.signatures import load_dir
from netwatch.sources.capture import open_capture

VNC = RECORDED / "vnc-x11vnc.pcap"
DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"


def _truth(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "truth.tsv"
    p.write_text("pcap\tproto\tclient_ip\tclient_port\tserver_ip\tserver_port\ttool\troles\t"
                 "note\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


def _event(tool: str, src: str, sport: int, dst: str, dport: int) -> str:
    return json.dumps({"event_type": "remote_access", "proto": "TCP", "src_ip": src,
                       "src_port": sport, "dest_ip": dst, "dest_port": dport,
                       "remote_access": {"tool": tool, "role": "session"}})


def test_sessions_found_counts_only_session_rows_with_the_right_tool(tmp_path: Path) -> None:
    truth = _truth(tmp_path, [
        "m.pcap\ttcp\t10.0.0.1\t5000\t10.0.0.2\t3389\trdp\tsession\tok",
        "m.pcap\ttcp\t10.0.0.1\t5001\t10.0.0.3\t5900\tvnc\tsession\twrong tool",
        "m.pcap\ttcp\t10.0.0.1\t5002\t10.0.0.4\t443\tanydesk\trelay|session\tmissed",
        "m.pcap\tudp\t10.0.0.1\t5003\t10.0.0.1\t53\tanydesk\tdns\tnot a session",
    ])
    log = tmp_path / "eve.json"
    log.write_text("\n".join([
        _event("rdp", "10.0.0.2", 3389, "10.0.0.1", 5000),  # either direction matches
        _event("rdp", "10.0.0.1", 5001, "10.0.0.3", 5900),
    ]) + "\n", encoding="utf-8")
    got = bench.sessions_found(log, truth)
    assert (got["embedded"], got["found"]) == (3, 1)
    assert len(got["missed"]) == 2 and any("anydesk" in m for m in got["missed"])


def test_nflog_subset_keeps_the_first_packets_of_each_connection(tmp_path: Path) -> None:
    out = tmp_path / "sub.pcap"
    kept, total = bench.nflog_subset(VNC, out, first=10)
    assert total == sum(1 for _ in open_capture(str(VNC)))
    assert kept == 10 < total  # one connection, no DNS
    frames = list(open_capture(str(out)))
    assert len(frames) == kept
    assert [f[2] for f in frames] == [f[2] for f in list(open_capture(str(VNC)))[:10]]


def test_nflog_subset_keeps_every_dns_packet(tmp_path: Path) -> None:
    kept, total = bench.nflog_subset(DEMO, tmp_path / "sub.pcap", first=1)
    dns = sum(1 for _ts, _lt, f, _w in open_capture(str(DEMO))
              if len(f) > 37 and f[23] == 17 and 53 in (int.from_bytes(f[34:36], "big"),
                                                        int.from_bytes(f[36:38], "big")))
    assert dns > 0 and kept >= dns and kept < total


def test_guard_fails_only_below_half_the_recorded_ratio(tmp_path: Path) -> None:
    rec = tmp_path / "ratio.json"
    rec.write_text(json.dumps({"speed_ratio": 0.8, "packets": 100000}), encoding="utf-8")
    r = bench.Report("x")
    r.ratios = [0.41, 0.45, 0.39]
    assert bench.guard(r, rec)[0]
    r.ratios = [0.39, 0.2, 0.35]
    ok, msg = bench.guard(r, rec)
    assert not ok and "FAILED" in msg
    r.ratios = []
    assert bench.guard(r, rec)[0]  # no peer installed: nothing to compare


def test_a_decided_flow_costs_less_than_an_inspected_one() -> None:
    decided, inspected = bench.flow_memory(load_dir(), n=500)
    assert 0 < decided < inspected


def test_bench_command_end_to_end_without_peer(tmp_path: Path) -> None:
    truth = _truth(tmp_path, ["x\ttcp\t10.99.0.1\t*\t10.99.0.2\t5900\tvnc\tsession\t-"])
    # the recorded x11vnc session, client port left open
    res = CliRunner().invoke(main, ["bench", "--pcap", str(VNC), "--truth", str(truth),
                                    "--runs", "1", "--no-peer", "--json",
                                    str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert "sessions found: 1/1" in res.output
    data = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert data["packets"] == sum(1 for _ in open_capture(str(VNC)))
    assert data["ratios"] == [] and data["nflog"]["of"] == data["packets"]
    # The same capture as pcapng, and start-up, are measured and found the session too.
    assert data["pcapng"]["sessions"] == {"embedded": 1, "found": 1, "missed": []}
    assert len(data["startup"]["netwatch_s"]) == bench.STARTUP_RUNS
    assert "where the time goes" in res.output


def test_pcapng_rewrite_reads_back_as_the_same_frames(tmp_path: Path) -> None:
    ng = tmp_path / "vnc.pcapng"
    n = bench.write_pcapng(VNC, ng)
    classic = list(open_capture(str(VNC)))
    back = list(open_capture(str(ng)))
    assert n == len(classic) == len(back) > 0
    assert [(f[1], f[2], f[3]) for f in back] == [(f[1], f[2], f[3]) for f in classic]
    assert all(abs(a[0] - b[0]) < 1e-6 for a, b in zip(back, classic, strict=True))


def test_guard_covers_the_pcapng_ratio_when_recorded(tmp_path: Path) -> None:
    rec = tmp_path / "ratio.json"
    rec.write_text(json.dumps({"speed_ratio": 0.8, "pcapng_speed_ratio": 0.6}),
                   encoding="utf-8")
    r = bench.Report("x")
    r.ratios = [0.7, 0.8]
    r.pcapng = {"ratios": [0.35, 0.4]}
    assert bench.guard(r, rec)[0]
    r.pcapng = {"ratios": [0.2, 0.25, 0.28]}
    ok, msg = bench.guard(r, rec)
    assert not ok and "pcapng speed ratio 0.25" in msg


def test_start_up_is_timed_with_the_bytecode_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    # A user's second run reads netwatch's cached bytecode; with PYTHONDONTWRITEBYTECODE
    # (exported by some test set-ups) an editable install would compile it on every run.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("NETWATCH_CACHE_DIR", "/somewhere")
    env = bench.user_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["NETWATCH_CACHE_DIR"] == "/somewhere"
