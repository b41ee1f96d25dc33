"""netwatch run: the settings file, check-config, live time and the daemon's loop.

The loop is driven here with a fake source and an injected clock; the real AF_PACKET source
and ``netwatch run`` as a process are tested in test_afpacket.py.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from scenarios import Piece
from test_eventlog_schema import _check as check_schema

from conftest import RECORDED, household_yaml, signatures
from netwatch.cli import main
from netwatch.config import ConfigError, Settings, load_settings, looks_like_settings
from netwatch.daemon import HISTORY_FILE, Daemon
from netwatch.eventlog import EventLog
from netwatch.household import load_household
from netwatch.pipeline import Pipeline
from netwatch.service import Notify, OneLine

# A Monday; the recorded VNC session (client 10.99.0.1) is moved to start 10 s before the
# help window below opens.
T0 = datetime(2026, 3, 2, 9, 59, 50, tzinfo=UTC)

HOUSEHOLD = household_yaml("laptop", "10.99.0.1", country="be", extra="""\
help_windows:
  - name: Pieter helps on Monday mornings
    days: [mon]
    start: "10:00"
    end: "11:00"
    people: [Maria]
""")


def _household(tmp_path: Path) -> Path:
    p = tmp_path / "household.yaml"
    p.write_text(HOUSEHOLD, encoding="utf-8")
    return p


def _vnc_frames() -> list[tuple[float, int, bytes, int]]:
    return [(ts, 1, fr, len(fr)) for ts, fr in
            Piece(RECORDED / "vnc-x11vnc.pcap", T0).frames()]


# ------------------------------------------------------------------ the settings file


def test_settings_file_is_read_with_paths_from_its_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("source: af_packet\ninterface: eth0\nhousehold: household.yaml\n"
                   "state_dir: state\neve_log: /var/log/netwatch/eve.json\n"
                   "metrics_listen: 0.0.0.0:9731\npromiscuous: false\n", encoding="utf-8")
    s = load_settings(str(cfg))
    assert s.interface == "eth0"
    assert s.household == str(tmp_path / "household.yaml")
    assert s.state_dir == str(tmp_path / "state")
    assert s.eve_log == "/var/log/netwatch/eve.json"
    assert s.metrics_listen == "0.0.0.0:9731"
    assert s.promiscuous is False
    assert s.control_listen == "127.0.0.1:8787"  # left to its default


def test_example_settings_file_reads_as_documented() -> None:
    from conftest import ROOT

    s = load_settings(str(ROOT / "deploy" / "netwatch.example.yaml"))
    assert (s.source, s.interface, s.household, s.state_dir) == (
        "af_packet", "eth0", "/etc/netwatch/household.yaml", "/var/lib/netwatch")
    assert (s.metrics_listen, s.control_listen, s.user) == (
        "127.0.0.1:9731", "127.0.0.1:8787", None)
    assert s.block_backend == "auto"


def test_settings_problems_name_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("source: af_packet\ninterfce: eth0\nsource: nflog\n"
                   "eve_max_mib: lots\nmetrics_listen: 9731\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(str(cfg))
    assert e.value.problems == [
        f"{cfg}:2: interfce: unknown setting (did you mean 'interface'?)",
        f"{cfg}:3: source: given twice",
        f"{cfg}:4: eve_max_mib: 'lots' is not a size in MiB, like 16 (0: no cap)",
    ]


def test_af_packet_without_interface_is_a_problem_on_the_source_line(tmp_path: Path) -> None:
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("state_dir: /var/lib/netwatch\nmetrics_listen: nowhere\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(str(cfg))
    assert e.value.problems == [
        f"{cfg}:1: interface: the af_packet source needs an interface (like eth0)",
        f"{cfg}:2: metrics_listen: 'nowhere' is not HOST:PORT (like 127.0.0.1:9731) or 'off'",
    ]


def test_settings_and_household_files_are_told_apart(tmp_path: Path) -> None:
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("interface: eth0\n", encoding="utf-8")
    assert looks_like_settings(str(cfg))
    assert not looks_like_settings(str(_household(tmp_path)))


def test_check_config_on_settings_checks_the_household_it_names(tmp_path: Path) -> None:
    _household(tmp_path)
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("interface: eth0\nhousehold: household.yaml\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["check-config", str(cfg), "--now", "2026-03-02T08:00Z"])
    assert r.exit_code == 0, r.output
    assert f"{cfg}: daemon settings OK" in r.output
    assert "source: af_packet on eth0" in r.output
    assert "Pieter helps on Monday mornings" in r.output  # the household's next window


def test_check_config_reports_a_bad_household_named_by_settings(tmp_path: Path) -> None:
    (tmp_path / "household.yaml").write_text("people:\n  Maria: {language: xx}\n",
                                             encoding="utf-8")
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("interface: eth0\nhousehold: household.yaml\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["check-config", str(cfg)])
    assert r.exit_code == 1
    assert f"{tmp_path / 'household.yaml'}:2: people.Maria.language:" in r.output


def test_check_config_kind_daemon_on_a_household_file_fails(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["check-config", "--kind", "daemon",
                                  str(_household(tmp_path))])
    assert r.exit_code == 1
    assert "people: unknown setting" in r.output


def test_run_without_interface_exits_1() -> None:
    r = CliRunner().invoke(main, ["run", "--household", "/nonexistent.yaml"])
    assert r.exit_code == 1
    assert "needs an interface" in r.output


# ------------------------------------------------------------------ live time


def test_wall_clock_opens_help_window_and_ends_session_without_packets(tmp_path: Path
                                                                        ) -> None:
    h = load_household(str(_household(tmp_path)))
    log = tmp_path / "eve.json"
    pipe = Pipeline(signatures(), EventLog(str(log)), household=h)
    frames = _vnc_frames()
    pipe.feed(frames)
    last_packet = frames[-1][0]
    assert last_packet < (T0 + timedelta(seconds=10)).timestamp()  # all before 10:00
    assert [a["alert"]["level"] for a in pipe.alerts] == ["warning", "critical"]
    # No more packets: only the clock moves, in the daemon's steps.
    def run_clock(t: float, until: datetime) -> float:
        while t < until.timestamp():
            t += 0.25 if t < T0.timestamp() + 20 else 5.0
            pipe.advance(t)
        return t

    t = run_clock(last_packet, T0 + timedelta(seconds=20))
    assert not [s for s in pipe.sessions.open.values() if s.state == "ended"]
    assert len(pipe.sessions.open) == 1  # still open: its flow has not timed out yet
    run_clock(t, T0 + timedelta(minutes=30))
    assert not pipe.sessions.open  # ended by the clock alone
    pipe.log.close()
    events = [json.loads(x) for x in log.read_text().splitlines()]
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert [a["alert"]["level"] for a in alerts] == ["warning", "critical", "info"]
    opened = datetime.fromisoformat(alerts[2]["timestamp"])
    assert T0 + timedelta(seconds=10) <= opened <= T0 + timedelta(seconds=16)
    assert alerts[2]["alert"]["reason_codes"][0]["code"] == "inside"
    ended = [e for e in events if e["event_type"] == "session"
             and e["session"]["state"] == "ended"]
    # Ended by the clock alone (no packet came); since main's session change the event is
    # stamped with the session's last traffic, not with the timeout that ended it.
    assert len(ended) == 1
    # (or with its last change of state, a moment later): long before the flow's idle timeout
    assert datetime.fromisoformat(ended[0]["timestamp"]).timestamp() <= last_packet + 60


def test_reminder_goes_out_on_the_clock_while_counters_grow_without_packets(
        tmp_path: Path) -> None:
    """As on a router, where conntrack's counters (not packets) say a session goes on: the
    flow's volume grows, no packet comes, and the 10-minute reminder still goes out."""
    h = load_household(str(_household(tmp_path)))
    pipe = Pipeline(signatures(), EventLog(None), household=h)
    start = T0 + timedelta(days=1)  # a Tuesday: outside every help window
    frames = [(ts + 86400, lt, fr, w) for ts, lt, fr, w in _vnc_frames()]
    pipe.feed(frames)
    assert [a["alert"]["level"] for a in pipe.alerts] == ["warning", "critical"]
    (flow,) = [f for f in pipe.live.values() if f.verdict is not None]
    t = frames[-1][0]
    while t < (start + timedelta(minutes=12)).timestamp():
        t += 5.0
        flow.bytes[0] += 5 * 3000  # the screen, 3 kB/s
        flow.bytes[1] += 5 * 200   # keyboard and mouse
        flow.last_ts = t
        pipe.advance(t)
    reminders = [a for a in pipe.alerts if a["alert"]["title_code"]["code"] == "still_active"]
    assert len(reminders) == 1
    first = datetime.fromisoformat(pipe.alerts[1]["timestamp"])
    assert datetime.fromisoformat(reminders[0]["timestamp"]) - first >= timedelta(minutes=10)
    assert reminders[0]["alert"]["level"] == "critical"


def test_advance_never_moves_time_back(tmp_path: Path) -> None:
    pipe = Pipeline(signatures(), EventLog(None))
    pipe.advance(1000.0)
    pipe.advance(900.0)
    assert pipe.now == 1000.0


# ------------------------------------------------------------------ the daemon's loop


class FakeSource:
    """Hands over prepared batches, one per poll, then nothing."""

    name = "fake"
    iface = "test0"

    def __init__(self, batches: list[list[Any]]):
        self.batches = batches
        self.closed = False

    def poll(self, timeout_s: float) -> list[Any]:
        return self.batches.pop(0) if self.batches else []

    def stats(self) -> dict[str, Any]:
        return {"packets": 0, "dropped": 0}

    def close(self) -> None:
        self.closed = True


class RecordingSenders:
    """Stands in for netwatch.senders.Senders: keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.got = threading.Event()

    def send(self, url: str, message: Any, delivery: Any) -> None:
        self.sent.append((url, message))
        self.got.set()


def _daemon(tmp_path: Path, clock: list[float], batches: list[list[Any]],
            senders: Any = None, **settings: Any) -> Daemon:
    s = Settings(source="pcap", household=str(_household(tmp_path)),
                 state_dir=str(tmp_path / "state"), eve_log=str(tmp_path / "eve.json"),
                 metrics_listen="off", control_listen="127.0.0.1:0")
    for name, value in settings.items():
        setattr(s, name, value)
    d = Daemon(s, clock=lambda: clock[0], source=FakeSource(batches), senders=senders)
    d.start()
    return d


def test_daemon_hands_alert_to_delivery_at_once_and_writes_final_stats(tmp_path: Path
                                                                       ) -> None:
    frames = _vnc_frames()
    clock = [frames[-1][0]]
    senders = RecordingSenders()
    d = _daemon(tmp_path, clock, [frames], senders)
    assert d.ready_line().startswith("ready: capturing on test0 (fake)")
    d.step()
    assert d.alerts == 2  # connecting (warning), then in control (critical)
    for _ in range(100):  # the delivery thread sends without being asked again
        if any(m.severity == "critical" for _u, m in senders.sent):
            break
        time.sleep(0.1)
    assert [u for u, _m in senders.sent][-1] == "ntfy://127.0.0.1:9/maria"
    assert senders.sent[-1][1].severity == "critical"
    clock[0] += 3600
    d.step()
    d.shutdown()
    events = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    assert events[-1]["event_type"] == "stats"
    assert events[-1]["stats"]["source_dropped"] == 0
    check_schema(events)  # the live log holds to the same schema as replay's
    assert any(e["event_type"] == "session" and e["session"]["state"] == "ended"
               for e in events)
    assert d.source is not None and d.source.closed  # type: ignore[attr-defined]


def test_state_survives_a_restart(tmp_path: Path) -> None:
    frames = _vnc_frames()
    clock = [frames[-1][0] + 3600]
    d = _daemon(tmp_path, clock, [frames])
    d.step()
    d.shutdown()
    saved = json.loads((tmp_path / "state" / HISTORY_FILE).read_text())
    assert [e["tool"] for e in saved["sessions"]["ended"]] == ["vnc"]
    # The same session an hour later, after a restart: a return, and a new session id.
    later = [(ts + 3600, lt, fr, w) for ts, lt, fr, w in frames]
    clock[0] = later[-1][0]
    d2 = _daemon(tmp_path, clock, [later])
    d2.step()
    d2.shutdown()
    assert d2.pipe is not None
    opened = [a for a in d2.pipe.alerts]
    assert opened and opened[0]["alert"]["session_id"] == 2
    assert any(c["code"] in ("return_peer", "return_device")
               for c in opened[0]["alert"]["reason_codes"])


def test_reload_keeps_the_household_in_force_when_the_file_is_bad(tmp_path: Path,
                                                                  caplog: Any) -> None:
    frames = _vnc_frames()
    clock = [frames[-1][0]]
    d = _daemon(tmp_path, clock, [frames])
    d.step()
    before = d.household
    (tmp_path / "household.yaml").write_text("people: [", encoding="utf-8")
    d.request_reload()
    d.step()
    assert d.household is before
    assert "keeping the household in force" in caplog.text
    assert d.pipe is not None and len(d.pipe.sessions.open) == 1  # the session goes on
    (tmp_path / "household.yaml").write_text(HOUSEHOLD.replace("laptop", "pc"),
                                             encoding="utf-8")
    d.request_reload()
    d.step()
    assert d.household is not before and d.household.devices[0].name == "pc"
    assert len(d.pipe.sessions.open) == 1
    d.shutdown()


# ------------------------------------------------------------------ blocking


def test_the_daemon_blocks_through_one_layer_counts_expires_and_reloads(tmp_path: Path
                                                                        ) -> None:
    """A pcap source: auto blocking is the dry run (a capture played back never changes the
    network); the policy's block, "Block now" and the metrics share one layer."""
    import urllib.request

    (tmp_path / "household.yaml").write_text(
        HOUSEHOLD.replace("    ips: [10.99.0.1]", "    ips: [10.99.0.1]\n"
                          "    policy: block-outside-windows"), encoding="utf-8")
    frames = _vnc_frames()
    clock = [frames[-1][0]]
    d = Daemon(Settings(source="pcap", household=str(tmp_path / "household.yaml"),
                        state_dir=str(tmp_path / "state"), eve_log=str(tmp_path / "eve.json"),
                        metrics_listen="127.0.0.1:0", control_listen="127.0.0.1:0"),
               clock=lambda: clock[0], source=FakeSource([frames]))
    d.start()
    try:
        assert d.blocker is not None and d.blocker.backend.name == "dry-run"
        assert d.pipe is not None and d.pipe.blocker is d.blocker
        assert d.control.service.blocker is d.blocker  # "Block now" really goes through it
        assert "blocking dry-run" in d.ready_line()
        d.step()
        first = d.pipe.alerts[0]["alert"]  # 10 s before the help window opens
        assert first["block"]["outcome"] == "dry-run" and first["action"] == "allowed"
        assert [b.session_id for b in d.blocker.list_blocks()] == [first["session_id"]]
        with urllib.request.urlopen(d.metrics.url + "/metrics", timeout=10) as r:
            scraped = r.read().decode()
        assert "\nnetwatch_blocks_active 1.0\n" in scraped, scraped
        (tmp_path / "household.yaml").write_text(HOUSEHOLD.replace("laptop", "pc"),
                                                 encoding="utf-8")
        d.request_reload()
        d.step()
        assert d.blocker.household is d.household and d.household.devices[0].name == "pc"
        clock[0] += 2 * 3600 + 60  # past the block's time: it leaves the state
        d.step()
        assert d.blocker.list_blocks() == []
    finally:
        d.shutdown()
    events = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    assert [e["block"]["action"] for e in events if e["event_type"] == "block"] == [
        "add", "expire"]
    check_schema(events)


def test_blocking_off_keeps_block_now_a_dry_run_and_the_pipeline_without_blocker(
        tmp_path: Path) -> None:
    from netwatch.control import DryRunBlocker

    frames = _vnc_frames()
    d = _daemon(tmp_path, [frames[-1][0]], [frames], block_backend="off")
    try:
        assert d.blocker is None and d.pipe is not None and d.pipe.blocker is None
        assert isinstance(d.control.service.blocker, DryRunBlocker)
        assert "blocking off" in d.ready_line()
    finally:
        d.shutdown()


def test_auto_blocking_is_a_dry_run_on_a_box_that_does_not_route(tmp_path: Path,
                                                                   monkeypatch: Any) -> None:
    """A Pi on a mirror port sees the sessions but is not in their path: nftables there
    would cut nothing while the alert said "blocked"."""
    from netwatch import daemon

    off = tmp_path / "forwarding"
    off.write_text("0\n")
    monkeypatch.setattr(daemon, "FORWARDING", (str(off),))
    s = Settings(source="af_packet", interface="eth0", state_dir=str(tmp_path / "state"))
    assert daemon.open_blocker(s, None, time.time).backend.name == "dry-run"
    s.block_backend = "dry-run"
    off.write_text("1\n")
    assert daemon.routes() and daemon.open_blocker(s, None, time.time).dry_run


def test_check_config_checks_and_describes_the_block_backend(tmp_path: Path) -> None:
    _household(tmp_path)
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("interface: eth0\nhousehold: household.yaml\nblock_backend: nft\n",
                   encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(str(cfg))
    assert e.value.problems == [f"{cfg}:3: block_backend: 'nft' is not one of auto, "
                                "nftables, dry-run, off"]
    cfg.write_text("source: pcap\npcap: x.pcap\nhousehold: household.yaml\n",
                   encoding="utf-8")
    r = CliRunner().invoke(main, ["check-config", str(cfg), "--now", "2026-03-02T08:00Z"])
    assert r.exit_code == 0, r.output
    assert "blocking: auto: a dry run (the pcap source does not sit on the live traffic)" \
        in r.output


# ------------------------------------------------------------------ service manager


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    n = Notify({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert n.watchdog_s == 2.0
    n.send("READY=1", "STATUS=capturing")
    assert server.recv(1024) == b"READY=1\nSTATUS=capturing"
    n.close()
    server.close()
    assert not Notify({}).enabled


def test_journal_lines_carry_priority_and_stay_one_line() -> None:
    import logging

    rec = logging.LogRecord("netwatch", logging.WARNING, __file__, 1, "two\nlines", None,
                            None)
    assert OneLine(journal=True).format(rec) == "<4>two | lines"
    assert OneLine(journal=False).format(rec).endswith("netwatch WARNING: two | lines")


def test_a_failed_start_closes_what_it_opened_and_writes_no_stats(tmp_path: Path) -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    s = Settings(source="pcap", household=str(_household(tmp_path)),
                 state_dir=str(tmp_path / "state"), eve_log=str(tmp_path / "eve.json"),
                 metrics_listen="off", control_listen=f"127.0.0.1:{port}")
    src = FakeSource([])
    d = Daemon(s, source=src)
    from netwatch.daemon import StartError

    with pytest.raises(StartError, match=f"cannot listen on 127.0.0.1:{port}"):
        d.start()
    d.shutdown()
    busy.close()
    assert src.closed
    assert (tmp_path / "eve.json").read_text() == ""


def test_a_source_error_is_said_once_and_the_loop_goes_on(tmp_path: Path,
                                                          caplog: Any) -> None:
    class Failing(FakeSource):
        def poll(self, timeout_s: float) -> list[Any]:
            raise OSError(100, "Network is down")

    clock = [T0.timestamp()]
    s = Settings(source="pcap", household=str(_household(tmp_path)),
                 state_dir=str(tmp_path / "state"), eve_log=None, metrics_listen="off",
                 control_listen="off")
    d = Daemon(s, clock=lambda: clock[0], source=Failing([]))
    d.start()
    for _ in range(3):
        assert d.step() == 0
        clock[0] += 1
    d.shutdown()
    assert caplog.text.count("Network is down") == 1


def test_run_flags_win_over_the_settings_file(tmp_path: Path) -> None:
    _household(tmp_path)
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("interface: nwd-from-file\nhousehold: household.yaml\nstate_dir: state\n"
                   "metrics_listen: 'off'\ncontrol_listen: 'off'\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["run", "--config", str(cfg), "--interface", "nwd-flag"])
    assert r.exit_code == 2
    assert "no network interface named 'nwd-flag'" in r.output


def test_the_pcap_source_through_the_daemon_finds_what_replay_finds(tmp_path: Path) -> None:
    """The live code path (source, loop, clock, outbox) on the demo capture played at once."""
    from conftest import SYNTHETIC, replay

    demo = SYNTHETIC / "demo-anydesk-scam.pcap"
    household = tmp_path / "household.yaml"
    household.write_text("timezone: Europe/Brussels\npeople:\n  Maria: {language: en}\n"
                         "devices:\n  - {name: laptop, person: Maria, ips: [192.168.1.23]}\n",
                         encoding="utf-8")
    s = Settings(source="pcap", pcap=str(demo), pcap_speed=0, household=str(household),
                 state_dir=str(tmp_path / "state"), eve_log=str(tmp_path / "eve.json"),
                 metrics_listen="off", control_listen="off")
    d = Daemon(s)
    d.start()
    src = d.source
    assert src is not None
    for _ in range(1000):
        d.step(0.01)
        if getattr(src, "finished", False):
            break
    d.shutdown()
    live = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    _result, replayed = replay(demo)

    def found(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((e["remote_access"]["tool"], e["remote_access"]["role"])
                      for e in events if e["event_type"] == "remote_access")

    assert found(live) == found(replayed) != []
    assert all(e.get("in_iface") == str(demo) for e in live if e["event_type"] != "stats")


def test_the_dnslog_source_through_the_daemon_turns_lookups_into_evidence(tmp_path: Path
                                                                         ) -> None:
    from test_dnslog import lines_at

    log = tmp_path / "dnsmasq.log"
    log.write_text("", encoding="utf-8")
    s = Settings(source="dnslog", dnslog=str(log), resolver="10.73.0.53",
                 household=str(_household(tmp_path)), state_dir=str(tmp_path / "state"),
                 eve_log=str(tmp_path / "eve.json"), metrics_listen="off",
                 control_listen="off")
    d = Daemon(s)
    d.start()
    d.step(0)  # following the log from its end now
    with log.open("a", encoding="utf-8") as fh:  # the resolver writes after netwatch starts
        fh.write(lines_at(datetime.now(UTC), "query[A] boot.net.anydesk.com from 10.99.0.1",
                          "reply boot.net.anydesk.com is 10.73.9.9"))
    fed = 0
    for _ in range(50):
        fed += d.step(0.1)
        if fed:
            break
    d.step(1.0)  # the lookup's answer closes it
    d.shutdown()
    events = [json.loads(x) for x in (tmp_path / "eve.json").read_text().splitlines()]
    found = [(e["remote_access"]["tool"], e["src_ip"]) for e in events
             if e["event_type"] == "remote_access"]
    assert fed == 1 and ("anydesk", "10.99.0.1") in found
    assert d.pipe is not None and d.pipe.last_packet_ts > 0  # the health check's news
