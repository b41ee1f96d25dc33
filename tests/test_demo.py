"""The README's first command: the demo capture with the example household (no corpus)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conftest import SYNTHETIC
from netwatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"
HOUSEHOLD = ROOT / "deploy" / "household.example.yaml"


def test_the_demo_shows_a_household_alert_with_its_reasons(tmp_path: Path) -> None:
    log = tmp_path / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(DEMO), "--household", str(HOUSEHOLD),
                                    "--eve-log", str(log)])
    assert res.exit_code == 0, res.output
    events = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    states = [e["session"]["state"] for e in events if e["event_type"] == "session"]
    # The relay counts by its volume: idle client, then someone in control, then idle again
    # when the remote side has gone.
    assert states == ["idle", "active", "idle", "ended"]
    session = next(e["session"] for e in events if e["event_type"] == "session"
                   and e["session"]["state"] == "active")
    assert session["relayed"] is True and session["after_download"]["ago_s"] < 3600
    alerts = [e["alert"] for e in events if e["event_type"] == "alert"]
    assert alerts and {a["level"] for a in alerts} == {"critical"}
    last = alerts[-1]
    assert last["device"] == "laptop" and last["state"] == "active"
    reasons = " ".join(last["reasons"])
    for words in ("outside the expected help windows", "Online banking (kbc.be)",
                  "relay servers", "downloaded"):
        assert words in reasons
    # the printed summary starts with the alerts, in the household's time zone
    assert res.output.startswith("Alerts for the household")
    assert "CET" in res.output.splitlines()[1]


def test_without_a_household_there_are_sessions_but_no_alerts(tmp_path: Path) -> None:
    log = tmp_path / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(DEMO), "--eve-log", str(log)])
    assert res.exit_code == 0, res.output
    kinds = {json.loads(x)["event_type"] for x in log.read_text(encoding="utf-8").splitlines()}
    assert "session" in kinds and "alert" not in kinds and "dns" not in kinds


def test_a_household_file_with_mistakes_stops_the_replay(tmp_path: Path) -> None:
    bad = tmp_path / "h.yaml"
    bad.write_text(HOUSEHOLD.read_text(encoding="utf-8").replace("policy: alert",
                                                                 "policy: blok"),
                   encoding="utf-8")
    res = CliRunner().invoke(main, ["replay", str(DEMO), "--household", str(bad)])
    assert res.exit_code == 1
    assert "policy" in res.output and "blok" in res.output
