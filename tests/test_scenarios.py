"""Household scenarios: real corpus sessions, moved to chosen times, with generated context.

Each test writes a household file and a capture built from a corpus capture (tests/scenarios.py)
into its temporary folder, replays it with ``--household`` as a user would, and checks the
alerts in the event log: their severity and their reasons.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from scenarios import Piece, build, dns_answer, http_get, is_tcp, tls_client_hello, udp_ports

from conftest import CORPUS, needs_corpus
from netwatch.cli import main
from netwatch.household import load_household
from netwatch.policy import decide

pytestmark = needs_corpus

BRUSSELS = ZoneInfo("Europe/Brussels")
RDP = CORPUS / "zeek_rdp-proprietary-encryption.pcap"  # a real RDP logon and desktop
RDP_DEVICE = "172.21.128.16"
VNC = CORPUS / "ndpi_vnc.pcap"  # a real VNC session, 16 s of screen updates
VNC_DEVICE = "192.168.2.110"
ANYDESK = CORPUS / "nfstream_anydesk.pcap"  # a real AnyDesk relay connection
AD_DEVICE = "192.168.149.129"
TEAMVIEWER = CORPUS / "ndpi_teamviewer.pcap"  # a TeamViewer client and its ID server
TV_DEVICE = "10.0.2.15"
RESOLVER = "192.168.2.1"


SUNDAY_WINDOW = """
help_windows:
  - name: Pieter helps on Sunday mornings
    days: [sun]
    start: "10:00"
    end: "12:00"
"""


def household(tmp_path: Path, device_ip: str, extra: str = "", windows: str | None = None
              ) -> Path:
    if windows is None:
        windows = SUNDAY_WINDOW
    text = f"""
timezone: Europe/Brussels
people:
  Maria: {{language: nl, country: be}}
carers:
  - name: Pieter
    language: nl
    notify: [ntfy://ntfy.example.org/maria-test]
devices:
  - name: pc
    person: Maria
    ips: [{device_ip}]
    policy: alert
{windows}
banking:
  countries: [be]
{extra}
"""
    p = tmp_path / "household.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def replay(tmp_path: Path, captures: list[Path], house: Path) -> list[dict[str, Any]]:
    log = tmp_path / "eve.json"
    res = CliRunner().invoke(main, ["replay", *map(str, captures), "--household", str(house),
                                    "--eve-log", str(log)])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["alert"] for e in events if e["event_type"] == "alert"]


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BRUSSELS)  # type: ignore[misc]


def test_an_idle_client_raises_no_alert(tmp_path: Path) -> None:
    # Only the TeamViewer client's connection to its ID server (TCP), kept 400 s: idle.
    cap = build(tmp_path / "idle.pcap", [Piece(TEAMVIEWER, local(2026, 5, 12, 14, 0),
                                               keep=is_tcp)])
    events = replay(tmp_path, [cap], household(tmp_path, TV_DEVICE))
    states = [e["session"]["state"] for e in events if e["event_type"] == "session"]
    assert states[0] == "idle" and "active" not in states and "connecting" not in states
    assert alerts(events) == []


def test_a_session_inside_the_help_window_is_info(tmp_path: Path) -> None:
    cap = build(tmp_path / "sunday.pcap", [Piece(RDP, local(2026, 5, 10, 10, 30))])
    found = alerts(replay(tmp_path, [cap], household(tmp_path, RDP_DEVICE)))
    assert found, "an active RDP session on a known device must be reported"
    assert {a["level"] for a in found} == {"info"}
    assert any("inside the expected help window" in r for a in found for r in a["reasons"])


def test_the_same_session_outside_the_window_is_critical(tmp_path: Path) -> None:
    cap = build(tmp_path / "tuesday.pcap", [Piece(RDP, local(2026, 5, 12, 14, 0))])
    found = alerts(replay(tmp_path, [cap], household(tmp_path, RDP_DEVICE)))
    active = [a for a in found if a["state"] == "active"]
    assert active and active[-1]["level"] == "critical"
    assert any("outside the expected help windows" in r and "Sun 10:00" in r
               for r in active[-1]["reasons"])
    assert active[-1]["device"] == "pc" and active[-1]["notify"] is True


def test_banking_during_a_session_is_critical_with_the_reason(tmp_path: Path) -> None:
    # Inside the help window, so only the bank makes it critical.
    start = local(2026, 5, 10, 10, 30)
    bank = dns_answer(start.replace(second=8), VNC_DEVICE, RESOLVER, "www.kbc.be",
                      "203.0.113.120")
    cap = build(tmp_path / "bank.pcap", [Piece(VNC, start)], [bank])
    events = replay(tmp_path, [cap], household(tmp_path, VNC_DEVICE))
    ctx = [e for e in events if e["event_type"] == "dns"]
    assert ctx and ctx[0]["dns"]["bank"] == "kbc.be" and ctx[0]["device"]["name"] == "pc"
    found = alerts(events)
    assert found[-1]["level"] == "critical"
    assert any("Online banking (kbc.be) was opened during the session" in r
               for r in found[-1]["reasons"])


def test_banking_with_no_session_is_not_an_alert(tmp_path: Path) -> None:
    bank = dns_answer(local(2026, 5, 12, 14, 0), VNC_DEVICE, RESOLVER, "www.kbc.be",
                      "203.0.113.120")
    # the VNC capture's DNS-free frames are not needed: only the bank lookup, alone
    cap = build(tmp_path / "only-bank.pcap", [], [bank])
    events = replay(tmp_path, [cap], household(tmp_path, VNC_DEVICE))
    assert [e for e in events if e["event_type"] == "dns"] and alerts(events) == []


def test_a_return_visit_is_flagged(tmp_path: Path) -> None:
    first = build(tmp_path / "monday.pcap", [Piece(RDP, local(2026, 5, 11, 15, 0))])
    again = build(tmp_path / "thursday.pcap", [Piece(RDP, local(2026, 5, 14, 15, 0))])
    events = replay(tmp_path, [first, again], household(tmp_path, RDP_DEVICE))
    sessions = [e["session"] for e in events if e["event_type"] == "session"]
    second = [s for s in sessions if s["id"] != sessions[0]["id"]]
    assert second and second[0]["returning"]["same_device"] is True
    assert second[0]["returning"]["ago_s"] > 2 * 86400
    later = [a for a in alerts(events) if a["session_id"] == second[0]["id"]]
    assert any("scammers often come back" in r for a in later for r in a["reasons"])


def test_a_trusted_peer_is_ignored(tmp_path: Path) -> None:
    events0 = replay(tmp_path, [build(tmp_path / "x.pcap", [Piece(RDP,
                     local(2026, 5, 12, 14, 0))])], household(tmp_path, RDP_DEVICE))
    peer = next(e["dest_ip"] for e in events0 if e["event_type"] == "remote_access")
    trust = f"""
trusted:
  - tool: rdp
    device: pc
    peer: {peer}
    note: the office computer
"""
    events = replay(tmp_path, [tmp_path / "x.pcap"],
                    household(tmp_path, RDP_DEVICE, extra=trust))
    assert [e for e in events if e["event_type"] == "session"], "sessions are still logged"
    assert alerts(events) == []
    # another peer is not covered by the rule
    other = trust.replace(peer, "198.51.100.99")
    assert alerts(replay(tmp_path, [tmp_path / "x.pcap"],
                         household(tmp_path, RDP_DEVICE, extra=other)))


@pytest.mark.parametrize(("utc", "inside"), [
    # 2026-03-29 is the spring change in Brussels (02:00 CET -> 03:00 CEST).
    (datetime(2026, 3, 29, 8, 30, tzinfo=UTC), True),    # 10:30 CEST: inside 10:00-12:00
    (datetime(2026, 3, 22, 8, 30, tzinfo=UTC), False),   # same UTC a week before: 09:30 CET
    (datetime(2026, 3, 29, 7, 30, tzinfo=UTC), False),   # 09:30 CEST: before the window
    (datetime(2026, 10, 25, 9, 30, tzinfo=UTC), True),   # autumn change: 10:30 CET
    (datetime(2026, 10, 25, 8, 30, tzinfo=UTC), False),  # 09:30 CET
])
def test_help_windows_follow_the_clock_change(tmp_path: Path, utc: datetime,
                                              inside: bool) -> None:
    cap = build(tmp_path / "dst.pcap", [Piece(RDP, utc)])
    found = alerts(replay(tmp_path, [cap], household(tmp_path, RDP_DEVICE)))
    severities = {a["level"] for a in found if a["state"] == "active"}
    assert severities == ({"info"} if inside else {"critical"})


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//netwatch tests//EN
BEGIN:VEVENT
UID:help-tuesday@netwatch.test
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Brussels:20260505T140000
DTEND;TZID=Europe/Brussels:20260505T153000
RRULE:FREQ=WEEKLY;BYDAY=TU
EXDATE;TZID=Europe/Brussels:20260512T140000
SUMMARY:Computer help from Pieter
END:VEVENT
BEGIN:VEVENT
UID:help-tuesday@netwatch.test
RECURRENCE-ID;TZID=Europe/Brussels:20260519T140000
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Brussels:20260520T100000
DTEND;TZID=Europe/Brussels:20260520T113000
SUMMARY:Computer help from Pieter (moved to Wednesday)
END:VEVENT
END:VCALENDAR
"""


@pytest.mark.parametrize(("start", "inside"), [
    (local(2026, 5, 5, 14, 30), True),    # a normal Tuesday occurrence
    (local(2026, 5, 12, 14, 30), False),  # the Tuesday taken out with EXDATE
    (local(2026, 5, 19, 14, 30), False),  # the Tuesday moved away...
    (local(2026, 5, 20, 10, 30), True),   # ...to this Wednesday (RECURRENCE-ID)
])
def test_calendar_windows_with_exceptions(tmp_path: Path, start: datetime,
                                          inside: bool) -> None:
    (tmp_path / "help.ics").write_text(ICS, encoding="utf-8")
    windows = """
help_windows:
  - name: Pieter's calendar
    ics: help.ics
"""
    cap = build(tmp_path / "ics.pcap", [Piece(RDP, start)])
    found = alerts(replay(tmp_path, [cap], household(tmp_path, RDP_DEVICE, windows=windows)))
    severities = {a["level"] for a in found if a["state"] == "active"}
    assert severities == ({"info"} if inside else {"critical"})


def test_decide_is_a_pure_function_of_events_household_and_time(tmp_path: Path) -> None:
    start = local(2026, 5, 12, 14, 0)
    bank = dns_answer(start.replace(second=8), VNC_DEVICE, RESOLVER, "www.kbc.be",
                      "203.0.113.120")
    cap = build(tmp_path / "p.pcap", [Piece(VNC, start)], [bank])
    house = household(tmp_path, VNC_DEVICE)
    events = replay(tmp_path, [cap], house)
    inputs = [e for e in events if e["event_type"] != "alert"]
    logged = alerts(events)
    h = load_household(str(house))
    end = datetime.fromisoformat(events[-1]["timestamp"])
    first = [e["alert"] for e in decide(inputs, h, end)]
    assert first == logged == [e["alert"] for e in decide(inputs, h, end)]
    # with time stopped before the bank was opened, that reason is not there yet
    before = [e["alert"] for e in decide(inputs, h, start.replace(second=7))]
    assert before and not any("banking" in r for a in before for r in a["reasons"])


def test_observe_mode_writes_alerts_without_notifying(tmp_path: Path) -> None:
    cap = build(tmp_path / "o.pcap", [Piece(RDP, local(2026, 5, 12, 14, 0))])
    house = household(tmp_path, RDP_DEVICE)
    house.write_text(house.read_text(encoding="utf-8").replace("policy: alert",
                                                               "policy: observe"),
                     encoding="utf-8")
    found = alerts(replay(tmp_path, [cap], house))
    assert found and all(a["notify"] is False and a["actions"] == [] for a in found)


def test_a_udp_only_lookup_frame_is_built_right() -> None:
    ts, fr = dns_answer(local(2026, 1, 1, 0, 0), "192.168.1.2", "192.168.1.1", "a.b", "1.2.3.4")
    assert udp_ports(fr) == (53, 53000 + 0x4242 % 1000) and ts > 0


def test_a_tool_the_help_window_does_not_expect_is_critical(tmp_path: Path) -> None:
    windows = SUNDAY_WINDOW + "    tools: [anydesk]\n"
    cap = build(tmp_path / "rdp-sunday.pcap", [Piece(RDP, local(2026, 5, 10, 10, 30))])
    found = alerts(replay(tmp_path, [cap], household(tmp_path, RDP_DEVICE, windows=windows)))
    active = [a for a in found if a["state"] == "active"]
    assert active and active[-1]["level"] == "critical"
    assert any("that window is for AnyDesk, not Remote Desktop Protocol" in r
               for r in active[-1]["reasons"])


def test_session_thresholds_come_from_the_household_file(tmp_path: Path) -> None:
    cap = build(tmp_path / "t.pcap", [Piece(RDP, local(2026, 5, 12, 14, 0))])
    # so high that the real RDP desktop never counts as active
    strict = "sessions:\n  active_bytes_per_s: 10000000\n"
    events = replay(tmp_path, [cap], household(tmp_path, RDP_DEVICE, extra=strict))
    states = {e["session"]["state"] for e in events if e["event_type"] == "session"}
    assert "active" not in states and "connecting" in states
    assert {a["level"] for a in alerts(events)} == {"warning"}
    bad = household(tmp_path, RDP_DEVICE, extra="sessions:\n  active_bytes_per_s: fast\n")
    res = CliRunner().invoke(main, ["replay", str(cap), "--household", str(bad)])
    assert res.exit_code == 1 and "sessions.active_bytes_per_s" in res.output


def test_a_download_just_before_a_first_session_raises_the_severity(tmp_path: Path) -> None:
    start = local(2026, 5, 10, 10, 30)  # inside the Sunday help window
    plain = build(tmp_path / "plain.pcap", [Piece(ANYDESK, start)])
    base = alerts(replay(tmp_path, [plain], household(tmp_path, AD_DEVICE)))
    assert base and base[0]["level"] == "info"
    get = http_get(start.replace(minute=25), AD_DEVICE, "198.51.100.30",
                   "download.anydesk.com", "/AnyDesk.exe")
    cap = build(tmp_path / "dl.pcap", [Piece(ANYDESK, start)], [get])
    events = replay(tmp_path, [cap], household(tmp_path, AD_DEVICE))
    dl = [e for e in events if e["event_type"] == "remote_access"
          and e["remote_access"]["role"] == "download"]
    assert dl and dl[0]["remote_access"]["tool"] == "anydesk"
    found = alerts(events)
    assert found[0]["level"] == "warning"
    assert any("AnyDesk was downloaded 5 min before this session started" in r
               for r in found[0]["reasons"])


def test_banking_seen_only_in_tls_still_counts(tmp_path: Path) -> None:
    # The device had the bank's address cached: no DNS answer, only the TLS server name.
    start = local(2026, 5, 10, 10, 30)
    hello = tls_client_hello(start.replace(second=8), VNC_DEVICE, "203.0.113.120",
                             "www.belfius.be")
    cap = build(tmp_path / "sni.pcap", [Piece(VNC, start)], [hello])
    events = replay(tmp_path, [cap], household(tmp_path, VNC_DEVICE))
    ctx = [e["dns"] for e in events if e["event_type"] == "dns"]
    assert ctx == [{"type": "sni", "rrname": "www.belfius.be", "category": "banking",
                    "bank": "belfius.be", "country": "be"}]
    found = alerts(events)
    assert found[-1]["level"] == "critical"
    assert any("belfius.be" in r for r in found[-1]["reasons"])
