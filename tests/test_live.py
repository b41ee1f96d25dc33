"""``netwatch run`` on a router watching real remote-desktop programs.

A household PC, a router and an "internet" host in network namespaces made by the test
(tests/netns.py). The router runs ``netwatch run`` on its LAN side, the carers'
ntfy-compatible receiver and a real Prometheus server scraping netwatch's ``/metrics``.
Across the router, the PC's real viewers (TigerVNC's vncviewer, FreeRDP's xfreerdp) take
control of real servers (x11vnc on Xvfb, xrdp with xorgxrdp), and real look-alikes (OpenSSH
on port 3389, Python's http.server on port 5900) must stay unreported.

The tests of one source share one network and one daemon and run in this file's order;
the last one stops the daemon. ``pytest -m 'not live'`` leaves them out.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import realprograms as rp
from livedaemon import (
    TOPIC,
    NetwatchRun,
    Prometheus,
    household_text,
    receiver,
    wait_message,
)
from netns import INET_IF, INET_IP, PC_IP, PC_MORE_IPS, Lab, LabError, unavailable
from test_senders import FakeNtfy

pytestmark = pytest.mark.live

# The look-alikes' server: a second address of the internet host, so nothing sent to it
# can be confused with the real sessions to INET_IP.
LOOKALIKE_IP = "10.76.2.3"
# The PC's address for the reload's session, and the topic the reloaded household names.
RELOAD_IP = PC_MORE_IPS[0]
RELOAD_TOPIC = "maria-live-reloaded"
# SIGTERM: the daemon flushes and exits within this (the service manager's stop budget in
# the daemon's requirements).
STOP_WITHIN_S = 5
# Mouse movement in a session: enough for the household's 2 s to "active".
SESSION_S = 5

SOURCES = ["af_packet"]
if importlib.util.find_spec("netwatch.sources.nflog") is not None:
    SOURCES.append("nflog")


def _nflog_unavailable() -> str | None:
    """Why the kernel refuses what the nflog source needs, or None."""
    from netwatch.sources.nflog import nfnetlink_log_available

    if shutil.which("nft") is None:
        return "nft is not installed (bash run.sh test installs nftables)"
    return nfnetlink_log_available()


@dataclass
class Live:
    lab: Lab
    ntfy: FakeNtfy
    daemon: NetwatchRun
    prometheus: Prometheus
    vnc: rp.VncViewer
    household: Path

    def remote_access(self) -> list[dict[str, Any]]:
        return self.daemon.events("remote_access")


@pytest.fixture(scope="module", params=SOURCES)
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    why = unavailable()
    if why:
        pytest.skip(why)
    lacking = rp.missing("vnc") + rp.missing("rdp") + rp.missing("ssh")
    if lacking:
        pytest.fail(f"programs missing (bash run.sh test installs them): {lacking}")
    # A folder of its own, not pytest's numbered ones: those are pruned by any other pytest
    # run on the machine, and the RDP user's home is in here. Kept when NETWATCH_KEEP_LIVE
    # is set, for reading the programs' logs.
    lab = Lab(Path(tempfile.mkdtemp(prefix=f"nwt-live-{request.param}-")))
    ntfy: FakeNtfy | None = None
    try:
        lab.up()
        lab.sh(lab.inet, f"ip addr add {LOOKALIKE_IP}/24 dev {INET_IF}")
        if request.param == "nflog":
            why = _nflog_unavailable()
            if why:
                pytest.skip(why)
        ntfy = receiver(lab)
        household = lab.workdir / "household.yaml"
        household.write_text(household_text(ntfy.url(topic=TOPIC)))
        daemon = NetwatchRun(lab, household, request.param).start()
        prometheus = Prometheus(lab, daemon.metrics_port).start()
        rp.VncServer(lab, lab.inet, INET_IP).start()
        viewer = rp.VncViewer(lab, lab.pc).start()
        yield Live(lab, ntfy, daemon, prometheus, viewer, household)
    finally:
        lab.close()
        if ntfy is not None:
            ntfy.stop()
        if not os.environ.get("NETWATCH_KEEP_LIVE"):
            shutil.rmtree(lab.workdir, ignore_errors=True)


def _is(tool: str, role: str = "session", port: int | None = None,
        confidence: str | None = None) -> Any:
    def match(e: dict[str, Any]) -> bool:
        ra = e.get("remote_access") or {}
        return (e.get("event_type") == "remote_access" and ra.get("tool") == tool
                and ra.get("role") == role and (port is None or e.get("dest_port") == port)
                and (confidence is None or ra.get("confidence") == confidence))
    return match


def _session(tool: str, state: str) -> Any:
    def match(e: dict[str, Any]) -> bool:
        s = e.get("session") or {}
        return e.get("event_type") == "session" and s.get("tool") == tool \
            and s.get("state") == state
    return match


def test_a_vnc_session_is_detected_alerted_and_counted(live: Live) -> None:
    live.vnc.session(INET_IP, SESSION_S)
    # The version exchange makes a first detection; the security types confirm it.
    ra = live.daemon.wait_event("VNC's remote_access event",
                                _is("vnc", port=rp.VNC_PORT, confidence="high"))
    assert (ra["src_ip"], ra["dest_ip"]) == (PC_IP, INET_IP)
    assert [ev["value"] for ev in ra["remote_access"]["evidence"]] == [
        "RFB ProtocolVersion", "RFB security types"]
    active = live.daemon.wait_event("the VNC session turning active", _session("vnc", "active"))
    assert ra["flow_id"] in active["session"]["flows"]
    msg = wait_message(live.lab, live.ntfy, lambda m: "VNC" in m.get("title", ""))
    assert msg.json["topic"] == TOPIC
    assert "Maria" in msg.json["title"] + msg.json["message"]
    prom = live.prometheus
    assert prom.wait_value('sum(netwatch_detections_total{tool="vnc",role="session"})') >= 1
    # Prometheus scraped the session while it was active, under the device's name.
    assert prom.wait_value('max_over_time(netwatch_sessions_open'
                           '{tool="vnc",device="computer",state="active"}[10m])') == 1
    assert prom.wait_value('sum(netwatch_alerts_total{level="critical"})') >= 1


def test_an_rdp_login_is_detected_alerted_and_counted(live: Live) -> None:
    server = rp.RdpServer(live.lab, live.lab.inet, INET_IP)
    try:
        server.start()
        client = rp.RdpClient(live.lab, live.lab.pc).start()
        client.session(INET_IP, SESSION_S, ready=lambda: server.logins() > 0)
    finally:
        server.stop()
    ra = live.daemon.wait_event("RDP's remote_access event", _is("rdp", port=rp.RDP_PORT))
    assert (ra["src_ip"], ra["dest_ip"]) == (PC_IP, INET_IP)
    assert "X.224" in " ".join(ev["value"] for ev in ra["remote_access"]["evidence"])
    live.daemon.wait_event("the RDP session turning active", _session("rdp", "active"))
    wait_message(live.lab, live.ntfy, lambda m: "Remote Desktop" in m.get("title", ""))
    assert live.prometheus.wait_value(
        'sum(netwatch_detections_total{tool="rdp",role="session"})') >= 1


def test_the_pc_controlled_from_the_internet_is_detected_too(live: Live) -> None:
    # The scam's own direction: a VNC server on the PC, the viewer outside.
    rp.VncServer(live.lab, live.lab.pc, PC_IP).start()
    viewer = rp.VncViewer(live.lab, live.lab.inet).start()
    viewer.session(PC_IP, 1, name="vncviewer-from-outside")
    ra = live.daemon.wait_event("the inbound VNC session", lambda e: _is(
        "vnc", port=rp.VNC_PORT, confidence="high")(e) and e["dest_ip"] == PC_IP)
    assert ra["src_ip"] == INET_IP


def test_ssh_on_3389_and_http_on_5900_are_not_remote_access(live: Live) -> None:
    ssh = rp.ssh_login(live.lab, live.lab.inet, LOOKALIKE_IP, live.lab.pc, rp.RDP_PORT)
    assert ssh.returncode == 0, ssh.stderr
    http = rp.http_get(live.lab, live.lab.inet, LOOKALIKE_IP, live.lab.pc, rp.VNC_PORT)
    assert "not a remote desktop" in http.stdout, http.stderr
    # A short VNC session after them: the daemon reads the interface in order, so once it
    # has reported this one it has read the look-alikes too.
    seen = {e["src_port"] for e in live.remote_access()}
    live.vnc.session(INET_IP, 1, name="vncviewer-after-lookalikes")
    live.daemon.wait_event("the VNC session after the look-alikes", lambda e: _is("vnc")(e)
                           and e["src_port"] not in seen)
    assert [e for e in live.remote_access() if e["dest_ip"] == LOOKALIKE_IP] == []


def test_sighup_reloads_the_household_and_keeps_flows(live: Live) -> None:
    daemon, lab = live.daemon, live.lab
    assert daemon.proc is not None
    # A session of its own (another address of the PC), open across two reloads: the first
    # with a broken file (refused, the old one kept), the second renaming the device and
    # sending to another topic.
    lab.pc_source(RELOAD_IP)
    try:
        viewer = live.vnc.open(INET_IP, "vncviewer-across-reload")
        ra = daemon.wait_event("the VNC session before the reload",
                               lambda e: _is("vnc")(e) and e["src_ip"] == RELOAD_IP)
        connecting = daemon.wait_event("its session", lambda e: _session("vnc", "connecting")(e)
                                       and ra["flow_id"] in e["session"]["flows"])
        good = live.household.read_text()
        live.household.write_text(good.replace("policy: alert", "policy: sometimes"))
        before = len(daemon.stderr())
        daemon.proc.signal(signal.SIGHUP)
        lab.wait_for("the reload's complaint about the bad file",
                     lambda: "sometimes" in daemon.stderr()[before:], 10, daemon.proc)
        live.household.write_text(good.replace("name: computer", "name: desktop")
                                  .replace(TOPIC, RELOAD_TOPIC))
        daemon.proc.signal(signal.SIGHUP)
        time.sleep(0.5)
        rp.move_mouse(lab, lab.pc, live.vnc.display, SESSION_S)
        # The same session, with the flow seen before the reloads, turns active...
        active = daemon.wait_event("the session across the reloads turning active",
                                   lambda e: _session("vnc", "active")(e)
                                   and e["session"]["id"] == connecting["session"]["id"])
        assert ra["flow_id"] in active["session"]["flows"]
        # ...and is told under the new household: the device's new name, the new topic.
        msg = wait_message(lab, live.ntfy, lambda m: m.get("topic") == RELOAD_TOPIC)
        assert "desktop" in msg.json["title"] + msg.json["message"]
        viewer.stop()
    finally:
        lab.pc_source(PC_IP)
    assert daemon.proc.alive()


def test_sigterm_flushes_and_exits_0(live: Live) -> None:
    proc = live.daemon.proc
    assert proc is not None and proc.alive()
    proc.signal(signal.SIGTERM)
    try:
        code = proc.popen.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        raise LabError(f"netwatch run still running {STOP_WITHIN_S} s after SIGTERM"
                       ) from None
    assert code == 0, live.daemon.stderr()[-3000:]
    events = live.daemon.events()
    assert events[-1]["event_type"] == "stats", [e["event_type"] for e in events[-5:]]
    assert [e for e in events if e["event_type"] == "remote_access"
            and e["dest_ip"] == LOOKALIKE_IP] == []
