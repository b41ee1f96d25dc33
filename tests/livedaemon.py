"""``netwatch run`` in a Lab's router, with what watches it: the carers' ntfy-compatible
receiver and a real Prometheus server, both inside the router's namespace."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import LAN_IF, PC_IP, PC_MORE_IPS, Lab, LabError, Proc, free_port, inside
from test_senders import FakeNtfy

TOPIC = "maria-live"
# The household of the live tests: the PC is Maria's, her son Pieter is told; the only help
# window is at a time that is never now (03:00-03:01 on the day after tomorrow, UTC), so
# every session is outside it. Sessions count as active after 2 s of use instead of 5, to
# keep the tests short (a documented household setting).
HOUSEHOLD = """\
timezone: UTC
people:
  Maria: en
carers:
  - name: Pieter
    language: en
    notify: [{notify}]
devices:
  - name: {device}
    person: Maria
    ips: [{pc_ips}]
    policy: alert
help_windows:
  - name: Pieter helps on {day}s
    days: [{day}]
    start: "03:00"
    end: "03:01"
sessions:
  active_after_s: 2
"""
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def household_text(notify: str, device: str = "computer") -> str:
    day = DAYS[(time.gmtime().tm_wday + 2) % 7]
    return HOUSEHOLD.format(notify=notify, device=device,
                            pc_ips=", ".join([PC_IP, *PC_MORE_IPS]), day=day)


def receiver(lab: Lab) -> FakeNtfy:
    """The test's ntfy-compatible server, listening on the router's own loopback."""
    with inside(lab.router):
        return FakeNtfy().start()


@dataclass
class NetwatchRun:
    """``netwatch run`` on the router's LAN side."""

    lab: Lab
    household: Path
    source: str = "af_packet"
    lifetime: float = 600
    extra: list[str] = field(default_factory=list)
    name: str = ""  # the run's name in its files (the source's by default)
    proc: Proc | None = None
    metrics_port: int = 0
    eve: Path = field(init=False)
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.name or self.source
        self.eve = self.lab.workdir / f"eve-{self.name}.json"
        self.state = self.lab.workdir / f"state-{self.name}"

    def start(self) -> NetwatchRun:
        self.state.mkdir(exist_ok=True)
        self.metrics_port = free_port(self.lab.router)
        control_port = free_port(self.lab.router)
        self.proc = self.lab.start(self.lab.router, f"netwatch-{self.name}", [
            sys.executable, "-m", "netwatch", "run", "--source", self.source,
            "--interface", LAN_IF, "--household", str(self.household),
            "--state-dir", str(self.state), "--eve-log", str(self.eve),
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--control-listen", f"127.0.0.1:{control_port}", *self.extra], self.lifetime)
        self.lab.wait_for("netwatch run's ready line", lambda: "ready" in self.stderr(),
                          30, self.proc)
        return self

    def stop(self) -> int | None:
        """SIGTERM, and the exit code (None when it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.alive():
            self.proc.signal(signal.SIGTERM)
            try:
                self.proc.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.stop()
                return None
        return self.proc.popen.returncode

    def stderr(self) -> str:
        return self.proc.output() if self.proc else ""

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.eve.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines:
            if not ln.strip():
                continue
            try:
                ev = json.loads(ln)
            except json.JSONDecodeError:  # a line being written
                continue
            if event_type is None or ev.get("event_type") == event_type:
                out.append(ev)
        return out

    def wait_event(self, what: str, match: Any, within: float = 20) -> dict[str, Any]:
        """The first event for which ``match(event)`` is true, waiting for it."""
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found[:] = [e for e in self.events() if match(e)]
            return bool(found)

        self.lab.wait_for(what, look, within, self.proc)
        return found[0]

    def metrics(self) -> str:
        with inside(self.lab.router):
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return str(r.read().decode())


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``, from the text form."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        if sample != name:
            continue
        got = dict(kv.split("=", 1) for kv in _split_labels(rest.rstrip("}")))
        if all(got.get(k) == json.dumps(v) for k, v in labels.items()):
            total += float(value)
    return total


def _split_labels(text: str) -> list[str]:
    return [p for p in text.split(",") if "=" in p]


@dataclass
class Prometheus:
    """Debian's prometheus server in the router's namespace, scraping netwatch every
    second, with a configuration and storage of its own."""

    lab: Lab
    target_port: int
    lifetime: float = 600
    port: int = 0
    proc: Proc | None = None

    def start(self) -> Prometheus:
        if shutil.which("prometheus") is None:
            raise LabError("the prometheus server is not installed")
        work = self.lab.workdir / "prometheus"
        (work / "data").mkdir(parents=True, exist_ok=True)
        (work / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: netwatch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.target_port}']\n")
        self.port = free_port(self.lab.router)
        self.proc = self.lab.start(self.lab.router, "prometheus", [
            "prometheus", f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            self.lifetime)
        self.lab.wait_for("prometheus ready", self._ready, 30, self.proc)
        return self

    def _ready(self) -> bool:
        try:
            return "Ready" in self._get("/-/ready")
        except OSError:
            return False

    def _get(self, path: str) -> str:
        with inside(self.lab.router):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as r:
                return str(r.read().decode())

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` gives now (``/api/v1/query``)."""
        answer = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql})))
        if answer.get("status") != "success":
            raise LabError(f"prometheus query {promql!r}: {answer}")
        return list(answer["data"]["result"])

    def wait_value(self, promql: str, within: float = 20) -> float:
        """The first positive value ``promql`` gives, waiting for scrapes."""
        got: list[float] = []

        def look() -> bool:
            got[:] = [float(s["value"][1]) for s in self.query(promql)]
            return bool(got) and max(got) > 0

        self.lab.wait_for(f"prometheus: {promql}", look, within, self.proc)
        return max(got)


def wait_message(lab: Lab, ntfy: FakeNtfy, match: Any, within: float = 20) -> Any:
    """The first message the receiver accepted for which ``match(json)`` is true."""
    found: list[Any] = []

    def look() -> bool:
        found[:] = [r for r in ntfy.accepted if match(r.json)]
        return bool(found)

    lab.wait_for("a message at the ntfy receiver", look, within)
    return found[0]


def wall_clock(at_monotonic: float) -> float:
    """A receiver's arrival time (monotonic) as wall-clock time, to compare with packet
    timestamps."""
    return time.time() - (time.monotonic() - at_monotonic)
