"""From a capture to the carer's phone and back: the whole alert path on loopback.

The demo capture is replayed with a household whose carer reads Dutch; its alerts go into
the outbox, the delivery worker sends them to an ntfy-compatible server written for the
test, and the "Block now" button of what arrived is pressed on the control endpoint.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from test_senders import FakeNtfy

from conftest import SYNTHETIC
from netwatch.actions import load_or_create_secret
from netwatch.cli import main
from netwatch.control import ControlService, ControlStore, DryRunBlocker, make_server
from netwatch.messages import event_time

ROOT = Path(__file__).resolve().parents[1]
DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"
REPLAY_END = 1709647670.0  # 2024-03-05T14:07:50Z, the demo's last packet




def household(tmp_path: Path, url: str) -> Path:
    text = (ROOT / "deploy" / "household.example.yaml").read_text(encoding="utf-8")
    text = text.replace("ntfy://ntfy.sh/maria-helpdesk-change-me", url)
    p = tmp_path / "household.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _open(url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_alert_reaches_the_phone_in_dutch_and_its_block_button_works(
        tmp_path: Path, ntfy: FakeNtfy) -> None:
    state = tmp_path / "state"
    state.mkdir()
    store = ControlStore(state)
    service = ControlService(load_or_create_secret(state), store, DryRunBlocker(),
                             eve_log=str(tmp_path / "control.eve.json"))
    # The endpoint's clock is the replay's: the links expire 24 h after the alert.
    server = make_server(service, port=0, clock=lambda: REPLAY_END + 60)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        control = f"http://127.0.0.1:{server.server_address[1]}"
        house = household(tmp_path, ntfy.url(topic="maria"))
        res = CliRunner().invoke(main, ["replay", str(DEMO), "--household", str(house),
                                        "--notify", str(state), "--control-url", control,
                                        "--eve-log", str(tmp_path / "eve.json")])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["alert", "deliver", "--state-dir", str(state),
                                        "--once"])
        assert res.exit_code == 0, res.output
        got = ntfy.accepted
        # Three alerts for one session, queued before any was sent: the carer gets the
        # latest state once, not three messages.
        assert len(got) == 1
        msg = got[0].json
        assert msg["topic"] == "maria" and msg["priority"] == 5
        assert msg["title"] == "AnyDesk bestuurt de laptop van Maria"
        assert "internetbankieren (kbc.be)" in msg["message"]
        assert "Card Stop" in msg["message"] and "15:04" in msg["message"]
        labels = [a["label"] for a in msg["actions"]]
        assert labels == ["Nu blokkeren", "In orde: 2 u toelaten"]
        block = msg["actions"][0]["url"]
        assert block.startswith(control + "/a/")
        # Opening the link only asks; the button acts, once.
        status, page = _open(block)
        assert status == 200 and store.records() == []
        status, page = _open(block, data=b"")
        assert status == 200
        done = store.records()
        assert len(done) == 1 and done[0].carer == "Pieter" and done[0].action == "block"
        status, _page = _open(block, data=b"")
        assert status == 410
        # No secret of the notification address leaked into the event log.
        assert "maria-helpdesk" not in (tmp_path / "eve.json").read_text(encoding="utf-8")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_event_time_is_epoch_seconds() -> None:
    assert event_time({"timestamp": "2024-03-05T14:07:50+00:00"}) == REPLAY_END


def test_quiet_hours_hold_back_info_but_never_warnings(tmp_path: Path) -> None:
    from netwatch.household import load_household
    from netwatch.notify import Notifier

    h = load_household(str(household(tmp_path, "ntfy://127.0.0.1:9/maria")))
    n = Notifier(h, tmp_path / "state")

    def alert(ts: str, severity: str) -> dict:
        return {"timestamp": ts, "event_type": "alert", "src_ip": "192.168.1.23",
                "alert": {"id": f"1-{severity}", "level": severity, "session_id": 1,
                          "notify": True, "actions": [], "state": "active",
                          "title_code": {"code": severity, "params": {
                              "tool": "AnyDesk", "who": {"person": "Maria",
                                                         "device": "laptop"}}},
                          "reason_codes": [{"code": "relayed",
                                            "params": {"tool": "AnyDesk"}}]}}

    # 23:30 in Brussels (22:30 UTC in March) is inside the 22:00-07:00 quiet hours
    assert n.handle(alert("2024-03-05T22:30:00+00:00", "info")) == []
    assert n.held_quiet == 1
    assert n.handle(alert("2024-03-05T22:31:00+00:00", "critical"))
    assert n.handle(alert("2024-03-06T10:00:00+00:00", "info"))  # daytime
