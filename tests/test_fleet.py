"""Many homes, one view, end to end on loopback (deploy/fleet).

Two ``netwatch run --source pcap`` daemons play the demo capture (the laptop's AnyDesk
session) as two homes: in "maria" no help window is open, in "jan" one is. Each box has a
Prometheus agent (deploy/fleet/agent.yml) remote-writing to a central Prometheus
(deploy/fleet/central.yml, netwatch's rules), which hands its alerts to one Alertmanager
(deploy/fleet/alertmanager.yml) routing by home to a webhook here. Maria's carer must get
NetwatchRemoteSessionOutsideWindow with home=maria, tool and device; Jan's carer nothing.
Every address is swapped for a loopback port; every process runs under ``timeout``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import household_yaml

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "deploy" / "fleet"
RULES = ROOT / "deploy" / "prometheus" / "netwatch-rules.yml"
DEMO = ROOT / "tests" / "pcaps" / "synthetic" / "demo-anydesk-scam.pcap"
PROCESS_LIMIT_S = 150  # every process ends by itself after this
WAIT_S = 100.0  # the alert must reach the webhook within this
SPEED = 20  # the demo's 10 minutes in 30 s; its session is active from about 10 s
ALERT = "NetwatchRemoteSessionOutsideWindow"

HOUSEHOLD = household_yaml("laptop", "192.168.1.23", country="be")
# Jan's household: the same laptop, with a help window open all day.
WINDOW = """\
help_windows:
  - name: open all day
    days: [mon, tue, wed, thu, fri, sat, sun]
    start: "00:00"
    end: "23:59"
    people: [Maria]
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


class Webhook:
    """Alertmanager's webhook receiver: each POST's path, alerts and arrival time."""

    def __init__(self) -> None:
        got = self.got = []  # type: list[tuple[float, str, dict[str, Any]]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got.append((time.monotonic(), self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, name: str) -> list[tuple[float, str, dict[str, Any]]]:
        return [(t, path, a) for t, path, body in self.got for a in body["alerts"]
                if a["labels"].get("alertname") == name]


class Fleet:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *cmd: str) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(["timeout", str(PROCESS_LIMIT_S), *cmd],
                                           stdout=log, stderr=subprocess.STDOUT,
                                           cwd=self.tmp))

    def stop(self) -> None:
        # The boxes first (the agents flush to a centre still up), the centre last.
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_fleet_delivers_a_session_outside_a_window_to_the_right_carer(
        tmp_path: Path) -> None:
    prometheus, alertmanager = shutil.which("prometheus"), shutil.which(
        "prometheus-alertmanager") or shutil.which("alertmanager")
    if prometheus is None or alertmanager is None:
        pytest.skip("Debian's prometheus and prometheus-alertmanager are not installed")
    if datetime.now(UTC).strftime("%H:%M") >= "23:58":
        pytest.skip("jan's all-day help window closes at 23:59 UTC; run again after 00:00")
    hook = Webhook()
    fleet = Fleet(tmp_path)
    central_port, am_port = _port(), _port()
    try:
        # Alertmanager: the fleet's routes, each carer's webhook here (by path).
        am = yaml.safe_load((FLEET / "alertmanager.yml").read_text())
        for r in am["receivers"]:
            who = r["webhook_configs"][0]["url"].rsplit("/", 1)[1]
            r["webhook_configs"][0]["url"] = f"{hook.url}/{who}"
        am["route"]["group_wait"] = "1s"
        fleet.start("alertmanager", alertmanager,
                    f"--config.file={_write(tmp_path / 'am.yml', am)}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=")
        # The central Prometheus: netwatch's rules over every home, every second.
        central = yaml.safe_load((FLEET / "central.yml").read_text())
        central["global"]["evaluation_interval"] = "1s"
        central["rule_files"] = [str(RULES)]
        central["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
            f"127.0.0.1:{am_port}"]
        fleet.start("central", prometheus,
                    f"--config.file={_write(tmp_path / 'central.yml', central)}",
                    f"--storage.tsdb.path={tmp_path / 'central-data'}",
                    f"--web.listen-address=127.0.0.1:{central_port}",
                    "--web.enable-remote-write-receiver")
        t0 = time.monotonic()
        metrics = {}
        for home, household in (("maria", HOUSEHOLD), ("jan", HOUSEHOLD + WINDOW)):
            box = tmp_path / home
            box.mkdir()
            (box / "household.yaml").write_text(household, encoding="utf-8")
            metrics[home] = _port()
            fleet.start(f"netwatch-{home}", sys.executable, "-m", "netwatch", "run",
                        "--source", "pcap", "--pcap", str(DEMO), "--speed", str(SPEED),
                        "--household", str(box / "household.yaml"),
                        "--state-dir", str(box / "state"), "--control-listen", "off",
                        "--metrics-listen", f"127.0.0.1:{metrics[home]}")
            agent = yaml.safe_load((FLEET / "agent.yml").read_text())
            agent["global"]["scrape_interval"] = "1s"
            agent["global"]["external_labels"]["home"] = home
            agent["scrape_configs"][0]["static_configs"][0]["targets"] = [
                f"127.0.0.1:{metrics[home]}"]
            write = agent["remote_write"][0]
            write["url"] = f"http://127.0.0.1:{central_port}/api/v1/write"
            del write["basic_auth"]  # loopback here; TLS and a password between houses
            write["queue_config"]["batch_send_deadline"] = "1s"
            fleet.start(f"agent-{home}", prometheus, "--enable-feature=agent",
                        f"--config.file={_write(box / 'agent.yml', agent)}",
                        f"--storage.agent.path={box / 'agent-data'}",
                        f"--web.listen-address=127.0.0.1:{_port()}")
        times: dict[str, float] = {}
        query = f"http://127.0.0.1:{central_port}/api/v1/query?query=" + urllib.parse.quote(
            "netwatch_sessions_outside_window")
        deadline = t0 + WAIT_S
        while time.monotonic() < deadline and "webhook" not in times:
            now = time.monotonic()
            if "netwatch" not in times:
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{metrics['maria']}/metrics", timeout=2) as r:
                        if b"\nnetwatch_sessions_outside_window{" in r.read():
                            times["netwatch"] = now
                except OSError:
                    pass
            if "central" not in times:
                try:
                    if _get(query)["data"]["result"]:
                        times["central"] = now
                except OSError:
                    pass
            if "firing" not in times:
                try:
                    rules = _get(f"http://127.0.0.1:{central_port}/api/v1/alerts")
                    if any(a["labels"]["alertname"] == ALERT and a["state"] == "firing"
                           for a in rules["data"]["alerts"]):
                        times["firing"] = now
                except OSError:
                    pass
            if hook.alerts(ALERT):
                times["webhook"] = hook.alerts(ALERT)[0][0]
            time.sleep(0.2)
        assert "webhook" in times, _logs(tmp_path, times)
        # Jan's box really reports: its sessions are at the centre, inside a window.
        jan = _get(f"http://127.0.0.1:{central_port}/api/v1/query?query=" +
                   urllib.parse.quote('netwatch_sessions_open{home="jan"}'))
        outside = _get(query)["data"]["result"]
    finally:
        t_stop = time.monotonic()
        fleet.stop()
        print(f"fleet stopped in {time.monotonic() - t_stop:.1f} s")
        hook.server.shutdown()
    [(_t, path, alert)] = hook.alerts(ALERT)[:1]
    assert path == "/maria"
    labels = alert["labels"]
    assert (labels["home"], labels["tool"], labels["device"], labels["severity"]) == (
        "maria", "anydesk", "laptop", "critical")
    assert alert["annotations"]["summary"] == \
        "anydesk session on laptop outside every help window"
    assert all(a["labels"]["home"] == "maria" and p == "/maria"
               for _t, p, a in hook.alerts(ALERT))
    assert jan["data"]["result"], "jan's box sent nothing to the centre"
    assert {r["metric"]["home"] for r in outside} == {"maria"}
    steps = " -> ".join(f"{k} +{v - t0:.1f} s" for k, v in times.items())
    print(f"fleet alert path from the daemons' start: {steps}")


def _logs(tmp: Path, times: dict[str, float]) -> str:
    out = [f"reached: {sorted(times)}"]
    for p in sorted(tmp.glob("*.log")):
        out.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:])
    return "\n".join(out)

