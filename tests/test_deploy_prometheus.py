"""deploy/prometheus, deploy/grafana and deploy/fleet checked by the tools that read them
(promtool, amtool), the rules unit-tested on synthetic series, and every metric name the
rules and the dashboard use compared with what a running ``netwatch run`` exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import household_yaml

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
FLEET = ROOT / "deploy" / "fleet"
DASHBOARD = ROOT / "deploy" / "grafana" / "netwatch-dashboard.json"
DEMO = ROOT / "tests" / "pcaps" / "synthetic" / "demo-anydesk-scam.pcap"
RUN_LIMIT_S = 60
# Prometheus's own series the files may use beside netwatch's.
PROMETHEUS_OWN = {"up"}

HOUSEHOLD = household_yaml("laptop", "192.168.1.23")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian's prometheus / prometheus-alertmanager)")
    return path


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def _route(amtool: str, config: Path, *labels: str) -> str:
    r = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                        *labels], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_promtool_checks_the_rules_and_the_configs() -> None:
    promtool = _tool("promtool")
    assert "SUCCESS: 6 rules found" in _run(promtool, "check", "rules",
                                            str(PROM / "netwatch-rules.yml"))
    _run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    _run(promtool, "check", "config", str(FLEET / "central.yml"))
    _run(promtool, "check", "config", "--agent", str(FLEET / "agent.yml"))


def test_promtool_unit_tests_the_rules_on_synthetic_series() -> None:
    out = _run(_tool("promtool"), "test", "rules",
               str(PROM / "tests" / "netwatch-rules.test.yml"))
    assert "SUCCESS" in out


@pytest.mark.parametrize("config", [PROM / "alertmanager.yml", FLEET / "alertmanager.yml"],
                         ids=["carer", "fleet"])
def test_amtool_checks_the_alertmanager_configs(config: Path) -> None:
    _run(_tool("amtool"), "check-config", str(config))


def test_the_fleet_routes_each_home_to_its_carer() -> None:
    amtool = _tool("amtool")
    config = FLEET / "alertmanager.yml"
    for home in ("maria", "jan"):
        assert _route(amtool, config, "alertname=NetwatchRemoteSessionOutsideWindow",
                      f"home={home}") == f"carer-{home}"
    assert _route(amtool, config, "alertname=NetwatchDown", "home=elsewhere") == "installer"


def _names_used() -> dict[str, set[str]]:
    """Metric names in the rules' and the dashboard's expressions."""
    rules = yaml.safe_load((PROM / "netwatch-rules.yml").read_text())
    exprs = {"rules": [r["expr"] for g in rules["groups"] for r in g["rules"]],
             "dashboard": [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"]
                           for t in p["targets"]]}
    word = re.compile(r"\b(netwatch_[a-z_]+|up)\b")
    return {k: {m for e in v for m in word.findall(e)} for k, v in exprs.items()}


def test_the_dashboard_and_rules_use_only_what_a_running_netwatch_exports(
        tmp_path: Path) -> None:
    (tmp_path / "household.yaml").write_text(HOUSEHOLD, encoding="utf-8")
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["timeout", str(RUN_LIMIT_S), sys.executable, "-m", "netwatch", "run", "--source",
         "pcap", "--pcap", str(DEMO), "--speed", "0", "--household",
         str(tmp_path / "household.yaml"), "--state-dir", str(tmp_path / "state"),
         "--control-listen", "off", "--metrics-listen", f"127.0.0.1:{port}",
         "--metrics-textfile", str(tmp_path / "netwatch.prom")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    exported: set[str] = set()
    try:
        deadline = time.monotonic() + RUN_LIMIT_S - 5
        # Until the demo's alert is pending in the outbox: the outbox's file, and so its
        # message counts, can appear before the alert is queued; the oldest pending
        # message's time appears only with the alert (nobody answers the carer's target).
        while (time.monotonic() < deadline
               and "netwatch_outbox_oldest_pending_timestamp_seconds" not in exported):
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                continue
            exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert "netwatch_outbox_messages" in exported, out
    # The same text for a node exporter's text-file collector (written at least at exit).
    in_file = set(re.findall(r"^# TYPE (\S+) ", (tmp_path / "netwatch.prom").read_text(),
                             re.M))
    assert {"netwatch_packets_total", "netwatch_sessions_outside_window",
            "netwatch_outbox_messages", "netwatch_blocks_active"} <= in_file
    for where, names in _names_used().items():
        missing = names - exported - PROMETHEUS_OWN
        assert not missing, f"{where} uses {sorted(missing)}, which netwatch does not export"
    used = set().union(*_names_used().values())
    # What a carer and an installer look at is all there.
    assert {"netwatch_sessions_open", "netwatch_sessions_outside_window",
            "netwatch_alerts_total", "netwatch_blocks_active", "netwatch_packets_total",
            "netwatch_kernel_dropped_packets_total"} <= used


def test_the_dashboard_is_provisioned_from_its_folder() -> None:
    prov = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning.yml").read_text())
    [provider] = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("netwatch")
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "netwatch"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["datasource"]["uid"] == "${datasource}" for p in dash["panels"]
               for t in p["targets"])



def _rsyslog_filter() -> re.Pattern[str]:
    """The regular expression rsyslog's re_match() applies to each EVE line (POSIX ERE; this
    one reads the same in Python's dialect)."""
    text = (FLEET / "rsyslog-netwatch.conf").read_text()
    m = re.search(r"re_match\(\$msg, '([^']+)'\)", text)
    assert m is not None
    return re.compile(m[1])


def test_rsyslog_ships_alerts_sessions_and_stats_never_dns_or_detections(
        tmp_path: Path) -> None:
    (tmp_path / "household.yaml").write_text(HOUSEHOLD, encoding="utf-8")
    log = tmp_path / "eve.json"
    subprocess.run([sys.executable, "-m", "netwatch", "replay", str(DEMO), "--eve-log",
                    str(log), "--household", str(tmp_path / "household.yaml")],
                   capture_output=True, timeout=120, check=True)
    keep = _rsyslog_filter()
    shipped, kept_home = set(), set()
    for line in log.read_text().splitlines():
        kind = json.loads(line)["event_type"]
        (shipped if keep.search(line) else kept_home).add(kind)
    assert shipped == {"alert", "session", "stats"}
    assert {"remote_access", "dns"} & kept_home and not shipped & kept_home


def test_rsyslog_reads_the_shipping_config(tmp_path: Path) -> None:
    rsyslogd = shutil.which("rsyslogd")
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed (Debian's rsyslog, which bash run.sh test "
                    "installs)")
    master = tmp_path / "rsyslog.conf"  # as Debian's /etc/rsyslog.conf includes it
    master.write_text(f'global(workDirectory="{tmp_path}")\n'
                      f'include(file="{FLEET / "rsyslog-netwatch.conf"}")\n')
    out = _run(rsyslogd, "-N1", "-f", str(master))
    assert "End of config validation run" in out
