"""The session tracker on hand-fed flows: states, thresholds, returns, downloads, reports."""

from __future__ import annotations

from typing import Any

from netwatch.flows import Flow
from netwatch.recognisers import Detection
from netwatch.sessions import SessionTracker, Thresholds

LAN = bytes([192, 168, 1, 23])
RELAY = bytes([198, 51, 100, 77])


def tracker(**kw: Any) -> tuple[SessionTracker, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    return SessionTracker(lambda ev, _s: out.append(ev), Thresholds(**kw)), out


def flow(fid: int, role: str, t: SessionTracker, ts: float, tool: str = "anydesk") -> Flow:
    f = Flow(fid, 6, LAN, 50000 + fid, RELAY, 443, ts)
    f.verdict = Detection(tool, role, "high")
    t.on_detection(f, f.verdict, ts)
    return f


def states(out: list[dict[str, Any]]) -> list[str]:
    return [e["session"]["state"] for e in out]


def test_idle_then_connecting_then_active_then_back() -> None:
    t, out = tracker()
    flow(1, "rendezvous", t, 0.0)
    relay = flow(2, "relay", t, 10.0)
    for now in range(15, 50, 5):  # 5 KB/s up (the screen), 100 B/s down (input)
        relay.bytes[0] += 25_000
        relay.bytes[1] += 500
        t.tick(float(now))
    for now in range(50, 120, 5):  # quiet
        t.tick(float(now))
    # The relay carries more than keepalives from the first tick (connecting), sustained
    # two-way traffic makes it active, and a quiet relay is an idle client again.
    assert states(out) == ["idle", "connecting", "active", "idle"]
    active = next(e for e in out if e["session"]["state"] == "active")
    assert active["session"]["relayed"] is True and active["session"]["bytes_toserver"] > 0


def test_a_one_way_transfer_is_not_a_session() -> None:
    t, out = tracker()
    relay = flow(1, "relay", t, 0.0)
    for now in range(5, 60, 5):
        relay.bytes[0] += 500_000  # lots up, nothing back: no one at the controls
        t.tick(float(now))
    assert "active" not in states(out)


def test_keepalive_rates_stay_idle_and_short_bursts_do_not_count() -> None:
    t, out = tracker(active_after_s=10.0)
    relay = flow(1, "relay", t, 0.0)
    relay.bytes[0] += 60_000  # one 5-second burst, then keepalives
    relay.bytes[1] += 1_000
    t.tick(5.0)
    for now in range(10, 400, 5):
        relay.bytes[0] += 900  # 180 B/s each way: TeamViewer's idle rate
        relay.bytes[1] += 900
        t.tick(float(now))
    assert states(out) == ["idle", "connecting", "idle"]


def test_a_relay_link_with_keepalives_only_stays_idle_for_hours() -> None:
    t, out = tracker()
    relay = flow(1, "relay", t, 0.0)
    for now in range(5, 4 * 3600, 5):
        relay.bytes[0] += 900  # 180 B/s each way, TeamViewer's idle rate
        relay.bytes[1] += 900
        t.tick(float(now))
    assert states(out) == ["idle"]


def test_a_direct_session_flow_is_connecting_at_once() -> None:
    t, out = tracker()
    flow(1, "session", t, 0.0, tool="rdp")
    assert states(out) == ["connecting"]


def test_when_both_ends_are_lan_addresses_the_household_device_is_the_device() -> None:
    """A viewer on another private network (a VPN, carrier-grade NAT) connecting in to the
    household PC's VNC server: the session is the PC's, not the viewer's."""
    viewer = bytes([10, 8, 0, 5])
    for known, device in (({"192.168.1.23"}, "192.168.1.23"), (set(), "10.8.0.5"),
                          ({"192.168.1.23", "10.8.0.5"}, "10.8.0.5")):
        t, out = tracker()
        t.is_device = known.__contains__
        f = Flow(1, 6, viewer, 50000, LAN, 5900, 0.0)
        f.verdict = Detection("vnc", "session", "high")
        t.on_detection(f, f.verdict, 0.0)
        assert out[0]["src_ip"] == device and out[0]["session"]["peers"] == sorted(
            {"10.8.0.5", "192.168.1.23"} - {device})


def test_the_handshake_before_a_flow_joined_does_not_make_it_active() -> None:
    t, out = tracker()
    f = Flow(1, 6, LAN, 50001, RELAY, 443, 0.0)
    f.bytes[0], f.bytes[1] = 30_000, 8_000  # the TLS handshake and certificates
    f.verdict = Detection("anydesk", "relay", "high")
    t.on_detection(f, f.verdict, 0.2)
    for now in range(5, 120, 5):
        f.bytes[0] += 300  # then keepalives
        f.bytes[1] += 300
        t.tick(float(now))
    assert states(out) == ["idle"]
    assert out[-1]["session"]["bytes_toserver"] >= 30_000  # still counted in the totals


def test_a_session_ends_at_its_last_packet_not_when_the_end_is_noticed() -> None:
    t, out = tracker()
    f = flow(1, "session", t, 100.0, tool="rdp")
    f.last_ts = 160.0
    t.tick(105.0)
    t.on_flow_end(f, f.last_ts)  # noticed days later, by a sweep
    ended = out[-1]
    assert ended["session"]["state"] == "ended"
    assert ended["timestamp"].startswith("1970-01-01T00:02:40")
    assert ended["session"]["duration_s"] == 60.0


def test_an_active_session_is_reported_again_every_report_interval() -> None:
    t, out = tracker(report_every_s=60.0)
    relay = flow(1, "relay", t, 0.0)
    for now in range(5, 200, 5):
        relay.bytes[0] += 25_000
        relay.bytes[1] += 500
        t.tick(float(now))
    actives = [e for e in out if e["session"]["state"] == "active"]
    assert len(actives) == 4  # at 5 s, then every 60 s while it lasts


def test_returns_and_downloads_are_attached_when_a_session_starts() -> None:
    t, out = tracker()
    dl = Flow(9, 6, LAN, 49999, bytes([198, 51, 100, 30]), 443, 0.0)
    t.on_detection(dl, Detection("anydesk", "download", "medium"), 0.0)
    first = flow(1, "relay", t, 120.0)
    first.last_ts = 300.0
    t.on_flow_end(first, first.last_ts)
    flow(2, "relay", t, 3 * 86400.0)
    sessions = [e["session"] for e in out]
    assert sessions[0]["after_download"] == {"ago_s": 120.0}
    assert sessions[-1]["returning"]["same_peer"] is True
    assert sessions[-1]["returning"]["ago_s"] == 3 * 86400.0 - 300.0
