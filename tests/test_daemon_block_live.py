"""``netwatch run`` blocks a real session by itself: the household's ``block-outside-windows``
policy, end to end, in network namespaces the test makes (tests/blocklab.py's lab with its
own names and range: ``nww-…``, 10.81.0.0/16, X displays :41 and :42).

The daemon captures on the router's LAN side (af_packet) and runs as ``nobody`` with
CAP_NET_RAW and CAP_NET_ADMIN, blocking with nftables (``block_backend``'s default, auto, on
a box that routes). A real VNC session (TigerVNC's viewer
on the internet to x11vnc on the household PC) outside the PC's help window is detected, the
alert says it was blocked and the connection dies; the router and DNS stay reachable, and
the block outlives the daemon's stop (the kernel lifts it at its own time). Inside the help
window the same session goes on. How long the cut took after the alert is printed, never
asserted.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import blocklab
import pytest
from blocklab import Lab, netwatch_run, wait_for, wait_for_text

from conftest import household_yaml

WHY_NOT = blocklab.why_not("nww") or next(
    (f"{t} is not installed" for t in blocklab.VNC_TOOLS if shutil.which(t) is None), None)
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"daemon blocking: {WHY_NOT}")
VNC_PORT = 5900
PC_DISPLAY, VIEWER_DISPLAY = 41, 42
DAYS = "[mon, tue, wed, thu, fri, sat, sun]"


def _household(lab: Lab, start: datetime, end: datetime) -> str:
    """Maria's PC, blocked outside her help window from ``start`` to ``end`` (UTC, every
    day; a window may run past midnight)."""
    return household_yaml("pc", lab.pc_ip, extra=f"""\
    policy: block-outside-windows
help_windows:
  - name: Pieter helps
    days: {DAYS}
    start: "{start:%H:%M}"
    end: "{end:%H:%M}"
    people: [Maria]
""")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab("nww", "10.81").up()
    before = lab.fw4()
    try:
        blocklab.vnc_server(lab, PC_DISPLAY, VNC_PORT)
        blocklab.vnc_screen(lab, VIEWER_DISPLAY)
        yield lab
        assert lab.fw4() == before, "netwatch changed the stand-in fw4 table"
    finally:
        lab.down()


@pytest.fixture
def work(lab: Lab) -> Iterator[Path]:
    """A folder the user ``nobody`` can reach (not pytest's private one), and no table of
    netwatch's left in the router afterwards."""
    path = Path(tempfile.mkdtemp(prefix="nww-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        blocklab.ns(lab.router, "nft", "delete", "table", "inet", "netwatch", check=False)
        shutil.rmtree(path, ignore_errors=True)


def _run_args(lab: Lab, work: Path) -> list[str]:
    return ["--source", "af_packet", "--interface", lab.lan_if,
            "--household", str(work / "household.yaml"), "--state-dir", str(work / "state"),
            "--eve-log", str(work / "eve.json"), "--metrics-listen", "off",
            "--control-listen", "127.0.0.1:0", "--user", "nobody"]  # blocking: auto


def _events(work: Path) -> list[dict[str, Any]]:
    path = work / "eve.json"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def _vnc_alert(work: Path) -> dict[str, Any] | None:
    return next((e for e in _events(work) if e["event_type"] == "alert"
                 and e["alert"].get("tool") == "vnc"), None)


def _epoch(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _blocked_pairs(lab: Lab) -> str:
    return blocklab.ns(lab.router, "nft", "list", "set", "inet", "netwatch", "block_v4_pairs",
                       check=False).stdout


def test_outside_the_help_window_the_daemon_cuts_a_real_vnc_session(lab: Lab, work: Path,
                                                                    tmp_path: Path) -> None:
    pytest.importorskip("pwd").getpwnam("nobody")
    now = datetime.now(UTC)
    (work / "household.yaml").write_text(
        _household(lab, now + timedelta(hours=3), now + timedelta(hours=4)), encoding="utf-8")
    err = work / "stderr.txt"
    with netwatch_run(lab.router, _run_args(lab, work), err) as proc:
        wait_for_text(err, f"ready: capturing on {lab.lan_if}", proc, 20)
        started = err.read_text(encoding="utf-8")
        assert "running as nobody with CAP_NET_RAW and CAP_NET_ADMIN" in started, started
        # auto: nft may be used and the router forwards, so nftables.
        assert "blocks: nftables backend; nothing to put right" in started, started
        # The viewer's home (its settings) in pytest's folder: it outlives the work folder.
        viewer = blocklab.vnc_viewer(lab, VIEWER_DISPLAY, tmp_path, VNC_PORT)
        # Watch the connection from the start: up, then gone (either end).
        seen_up = gone_at = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and gone_at is None:
            up = lab.established(lab.net, VNC_PORT) + lab.established(lab.pc, VNC_PORT)
            if up and seen_up is None:
                seen_up = time.time()
            elif not up and seen_up is not None:
                gone_at = time.time()
            time.sleep(0.02)
        assert seen_up is not None, "the viewer never connected"
        assert gone_at is not None, "the VNC session survived the daemon's block:\n" + \
            err.read_text(encoding="utf-8") + "\n".join(map(json.dumps, _events(work)))
        alert = _vnc_alert(work)
        assert alert is not None, err.read_text(encoding="utf-8")
        assert alert["alert"]["block"]["outcome"] == "add", alert
        assert alert["alert"]["action"] == "blocked"
        assert alert["src_ip"] == lab.pc_ip and alert["alert"]["device"] == "pc"
        print(f"VNC connection gone at most {gone_at - _epoch(alert['timestamp']):.3f} s "
              f"after the alert's time ({gone_at - seen_up:.3f} s after it was seen up)")
        assert not lab.connects(lab.net, lab.pc_ip, VNC_PORT)  # and it cannot come back
        assert lab.dns_works() and lab.router_answers()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        blocklab.stop(viewer)
    said = err.read_text(encoding="utf-8")
    assert rc == 0, said
    assert "blocks: 1 left in force" in said, said
    blocks = [e["block"] for e in _events(work) if e["event_type"] == "block"]
    assert [(b["action"], b["peers"]) for b in blocks] == [("add", [lab.net_ip])]
    assert blocks[0]["session_id"] == alert["alert"]["session_id"]
    # Stopped, netwatch leaves the block to the kernel's timeout.
    assert f"{lab.pc_ip} . {lab.net_ip} timeout" in _blocked_pairs(lab)


def test_inside_the_help_window_the_session_goes_on(lab: Lab, work: Path, tmp_path: Path
                                                   ) -> None:
    pytest.importorskip("pwd").getpwnam("nobody")
    now = datetime.now(UTC)
    (work / "household.yaml").write_text(
        _household(lab, now - timedelta(hours=1), now + timedelta(hours=1)), encoding="utf-8")
    err = work / "stderr.txt"
    with netwatch_run(lab.router, _run_args(lab, work), err) as proc:
        wait_for_text(err, f"ready: capturing on {lab.lan_if}", proc, 20)
        viewer = blocklab.vnc_viewer(lab, VIEWER_DISPLAY, tmp_path, VNC_PORT)
        assert wait_for(lambda: _vnc_alert(work) is not None, 20), \
            err.read_text(encoding="utf-8")
        alert = _vnc_alert(work)
        assert alert is not None
        # A block is made before its alert is written: none was.
        assert "block" not in alert["alert"] and alert["alert"]["action"] == "allowed"
        assert alert["alert"]["level"] == "info", alert
        assert lab.established(lab.net, VNC_PORT) == 1 and viewer.poll() is None
        assert lab.pc_ip not in _blocked_pairs(lab)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        blocklab.stop(viewer)
    assert rc == 0, err.read_text(encoding="utf-8")
    assert not [e for e in _events(work) if e["event_type"] == "block"]
