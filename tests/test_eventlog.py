"""The event log as EVE readers take it: Suricata's timestamp form, stable flow ids, the
Community ID, alerts with Suricata's fields, lines no reader can split, and the live mode
(append, alerts at once, reopen after logrotate, its own size cap)."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from conftest import SYNTHETIC, replay
from netwatch.cli import main
from netwatch.eventlog import (
    FLOW_ID_MASK,
    EventLog,
    community_id,
    eve_line,
    flow_id,
    iso_timestamp,
)
from netwatch.household import load_household
from netwatch.pipeline import Pipeline
from netwatch.signatures import load_dir
from netwatch.sources.capture import ReadStats

ROOT = Path(__file__).resolve().parents[1]
DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"
HOUSEHOLD = ROOT / "deploy" / "household.example.yaml"
TCP, UDP = 6, 17


def ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# ---------------------------------------------------------------------- fields


def test_timestamps_are_in_suricatas_form() -> None:
    assert iso_timestamp(1709650890.123456) == "2024-03-05T15:01:30.123456+0000"


@given(st.floats(min_value=0, max_value=4102444800, allow_nan=False))
def test_timestamps_name_the_same_instant_as_datetime_does(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
    assert iso_timestamp(ts) == expected


def test_a_timestamp_reads_back_with_fromisoformat() -> None:
    text = iso_timestamp(1709650890.5)
    assert datetime.fromisoformat(text).timestamp() == 1709650890.5


# The Community ID spec's own baseline (github.com/corelight/community-id-spec,
# baseline/baseline_deflt.json and baseline_seed1.json): its TCP and UDP rows.
COMMUNITY_BASELINE = [
    (TCP, "128.232.110.120", 34855, "66.35.250.204", 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (TCP, "66.35.250.204", 80, "128.232.110.120", 34855, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (UDP, "192.168.1.52", 54585, "8.8.8.8", 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (TCP, "2001:470:e5bf:dead:4957:2174:e82c:4887", 63943, "2607:f8b0:400c:c03::1a", 25, 0,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (TCP, "128.232.110.120", 34855, "66.35.250.204", 80, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (UDP, "8.8.8.8", 53, "192.168.1.52", 54585, 1, "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
]


@pytest.mark.parametrize("proto,a,ap,b,bp,seed,expected", COMMUNITY_BASELINE)
def test_community_id_matches_the_spec_baseline(proto: int, a: str, ap: int, b: str, bp: int,
                                                seed: int, expected: str) -> None:
    assert community_id(proto, ip(a), ap, ip(b), bp, seed) == expected


def test_flow_id_depends_on_the_first_packet_time() -> None:
    args = (TCP, ip("192.168.1.23"), 50211, ip("203.0.113.7"), 3389)
    assert flow_id(*args, 1709650890.123456) == flow_id(*args, 1709650890.123456)
    assert flow_id(*args, 1709650890.123456) != flow_id(*args, 1709650890.123457)


@given(st.binary(min_size=4, max_size=4), st.integers(0, 65535), st.binary(min_size=4,
       max_size=4), st.integers(0, 65535), st.floats(0, 4e9, allow_nan=False))
def test_flow_ids_fit_in_51_bits_and_are_never_zero(a: bytes, ap: int, b: bytes, bp: int,
                                                     ts: float) -> None:
    assert 1 <= flow_id(TCP, a, ap, b, bp, ts) <= FLOW_ID_MASK


def test_flow_ids_are_the_same_in_every_run() -> None:
    cap = SYNTHETIC / "teamviewer-tcp.pcap"
    first = [e["flow_id"] for e in replay(cap)[1] if "flow_id" in e]
    second = [e["flow_id"] for e in replay(cap)[1] if "flow_id" in e]
    assert first and first == second and max(first) > 1000


def test_session_events_list_the_flows_by_their_event_log_ids() -> None:
    _r, events = replay(SYNTHETIC / "teamviewer-tcp.pcap")
    detected = {e["flow_id"] for e in events if e["event_type"] == "remote_access"}
    listed = {fid for e in events if e["event_type"] == "session"
              for fid in e["session"]["flows"]}
    assert listed and listed <= detected


def test_a_detection_carries_the_community_id_of_its_flow() -> None:
    _r, events = replay(SYNTHETIC / "teamviewer-tcp.pcap")
    ev = next(e for e in events if e["event_type"] == "remote_access")
    proto = {"TCP": TCP, "UDP": UDP}[ev["proto"]]
    assert ev["community_id"] == community_id(proto, ip(ev["src_ip"]), ev["src_port"],
                                              ip(ev["dest_ip"]), ev["dest_port"])


# ---------------------------------------------------------------------- alerts


@pytest.fixture(scope="module")
def demo_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    log = tmp_path_factory.mktemp("demo") / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(DEMO), "--household", str(HOUSEHOLD),
                                    "--eve-log", str(log)])
    assert res.exit_code == 0, res.output
    return [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]


def test_alerts_carry_suricatas_alert_fields(demo_events: list[dict[str, Any]]) -> None:
    alerts = [e["alert"] for e in demo_events if e["event_type"] == "alert"]
    assert alerts
    for a in alerts:
        assert a["level"] == "critical" and a["severity"] == 1
        assert a["action"] == "allowed" and a["signature"].startswith("NETWATCH ")
        assert isinstance(a["signature_id"], int) and a["category"]


def test_alerts_of_one_kind_share_their_signature_id(demo_events: list[dict[str, Any]]
                                                     ) -> None:
    by_kind: dict[str, set[int]] = {}
    for e in demo_events:
        if e["event_type"] == "alert":
            a = e["alert"]
            by_kind.setdefault(a["title_code"]["code"], set()).add(a["signature_id"])
    assert by_kind and all(len(ids) == 1 for ids in by_kind.values())
    assert len({next(iter(ids)) for ids in by_kind.values()}) == len(by_kind)


def test_an_alert_names_its_sessions_flow(demo_events: list[dict[str, Any]]) -> None:
    flows = {e["flow_id"]: e for e in demo_events if e["event_type"] == "remote_access"}
    alert = next(e for e in demo_events if e["event_type"] == "alert")
    flow = flows[alert["flow_id"]]
    assert alert["community_id"] == flow["community_id"]
    assert alert["src_ip"] == alert["device"]["ip"] == flow["src_ip"]
    assert (alert["dest_ip"], alert["dest_port"], alert["proto"]) == \
        (flow["dest_ip"], flow["dest_port"], flow["proto"])


def test_live_source_interface_is_on_every_event(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    log = EventLog(str(path))
    pipe = Pipeline(load_dir(), log, household=load_household(str(HOUSEHOLD)))
    pipe.in_iface = "eth1"
    pipe.feed_file(str(DEMO), ReadStats())
    pipe.finish()
    log.close()
    events = [json.loads(x) for x in path.read_text().splitlines()]
    assert {e["event_type"] for e in events} >= {"remote_access", "session", "alert"}
    assert {e.get("in_iface") for e in events} == {"eth1"}


# ---------------------------------------------------------------------- lines


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085", "\u202e", "\u2066"])
def test_line_breaking_and_bidi_characters_are_escaped(char: str) -> None:
    event = {"dns": {"rrname": f"bank{char}example.org"}}
    line = eve_line(event)
    assert char not in line and len(line.splitlines()) == 1
    assert json.loads(line) == event


def test_other_text_stays_readable() -> None:
    assert eve_line({"device": "Oma's Laptop – Küche"}) == '{"device":"Oma\'s Laptop – Küche"}'


def test_host_is_added_to_every_event(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    log = EventLog(str(path), host="pi-living-room")
    log.write({"event_type": "stats"})
    log.close()
    assert json.loads(path.read_text())["host"] == "pi-living-room"


# ---------------------------------------------------------------------- live and replay


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_replay_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    path.write_text('{"event_type":"stats"}\n')
    EventLog(str(path)).close()
    assert path.read_text() == ""


def test_live_log_appends_to_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    path.write_text('{"event_type":"stats"}\n')
    log = EventLog(str(path), live=True)
    log.write({"event_type": "session"})
    log.close()
    assert [e["event_type"] for e in lines(path)] == ["stats", "session"]


def test_live_alert_reaches_the_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    log = EventLog(str(path), live=True)
    log.write({"event_type": "alert"})
    log.flush_now()
    assert [e["event_type"] for e in lines(path)] == ["alert"]
    log.close()


def test_replay_keeps_alerts_for_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    log = EventLog(str(path))
    log.write({"event_type": "alert"})
    log.flush_now()
    assert path.read_text() == ""
    log.close()


def test_reopen_goes_on_in_a_new_file_after_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    log = EventLog(str(path), live=True)
    log.write({"event_type": "session", "n": 1})
    log.flush()
    os.rename(path, tmp_path / "eve.json.2024-03-05")
    log.request_reopen()  # what a SIGHUP handler does
    log.write({"event_type": "session", "n": 2})
    log.close()
    assert [e["n"] for e in lines(tmp_path / "eve.json.2024-03-05")] == [1]
    assert [e["n"] for e in lines(path)] == [2]


def test_live_log_over_its_cap_moves_to_dot_one(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    log = EventLog(str(path), live=True, max_mib=1 / 1024)  # 1 KiB
    for n in range(30):
        log.write({"event_type": "session", "n": n, "pad": "x" * 60})
        log.flush()
    log.close()
    old, new = lines(Path(str(path) + ".1")), lines(path)
    assert log.rotations >= 1 and path.stat().st_size <= 1024
    assert [e["n"] for e in old + new] == list(range(old[0]["n"], 30))


def test_the_json_summary_names_flows_as_the_event_log_does(tmp_path: Path) -> None:
    log = tmp_path / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(SYNTHETIC / "teamviewer-tcp.pcap"),
                                    "--eve-log", str(log), "--format", "json"])
    assert res.exit_code == 0, res.output
    summary = {f["flow_id"] for f in json.loads(res.output)["findings"]}
    logged = {e["flow_id"] for e in lines(log) if e["event_type"] == "remote_access"}
    assert summary and summary == logged
