"""Prometheus metrics and the health check: what a scrape shows after the demo capture, the
names' conventions (checked by promtool), and the HTTP server's two pages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import SYNTHETIC, signatures
from netwatch.eventlog import EventLog
from netwatch.household import load_household
from netwatch.metrics import DEFAULT_HOST, Health, MetricsServer, make_registry
from netwatch.notify import Notifier
from netwatch.pipeline import Pipeline, StageTimes
from netwatch.sources.capture import ReadStats, open_capture

ROOT = Path(__file__).resolve().parents[1]
DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"
HOUSEHOLD = ROOT / "deploy" / "household.example.yaml"
DEVICE_IP = "192.168.1.23"  # the example household's laptop


class KernelCounters:
    """A live source's kernel counters, as netwatch.metrics reads them."""

    def __init__(self, received: int, dropped: int):
        self.counts = {"received": received, "dropped": dropped}

    def stats(self) -> dict[str, int]:
        return dict(self.counts)


def demo_pipeline(tmp_path: Path, *, notify: bool = False) -> Pipeline:
    """The demo capture fed as a live source feeds it: frame by frame, its flows and its
    AnyDesk session still open at the end."""
    household = load_household(str(HOUSEHOLD))
    pipe = Pipeline(signatures(), EventLog(None), household=household)
    pipe.source_name = "af_packet"
    if notify:
        pipe.on_alert.append(Notifier(household, tmp_path / "state").handle)
    pipe.feed(open_capture(str(DEMO), ReadStats()))
    return pipe


def scrape(registry: CollectorRegistry) -> dict[str, list[Any]]:
    """Samples by name, as Prometheus's text parser reads the exposition."""
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    [hit] = [s for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    return float(hit.value)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, dict[str, list[Any]]]:
    tmp = tmp_path_factory.mktemp("metrics")
    pipe = demo_pipeline(tmp, notify=True)
    pipe.source = KernelCounters(received=1200, dropped=3)
    registry, _c = make_registry(pipe, state_dir=tmp / "state", blocks_active=lambda: 2)
    return pipe, scrape(registry)


def test_packets_and_bytes_are_counted_by_source(demo: Any) -> None:
    pipe, samples = demo
    assert value(samples, "netwatch_packets_total", source="af_packet") == pipe.c.packets > 0
    assert value(samples, "netwatch_bytes_total", source="af_packet") == pipe.c.bytes


def test_kernel_drops_come_from_the_sources_counters(demo: Any) -> None:
    _p, samples = demo
    assert value(samples, "netwatch_kernel_dropped_packets_total", source="af_packet") == 3
    assert value(samples, "netwatch_kernel_received_packets_total", source="af_packet") == 1200


def test_detections_are_counted_by_tool_and_role(demo: Any) -> None:
    _p, samples = demo
    assert value(samples, "netwatch_detections_total", tool="anydesk", role="relay") >= 1


def test_open_sessions_are_labelled_by_device_name_never_address(demo: Any) -> None:
    _p, samples = demo
    sessions = samples["netwatch_sessions_open"]
    assert {s.labels["device"] for s in sessions} == {"laptop"}
    assert {s.labels["tool"] for s in sessions} == {"anydesk"}
    every_label = {v for ss in samples.values() for s in ss for v in s.labels.values()}
    assert DEVICE_IP not in every_label


def test_alerts_are_counted_by_level(demo: Any) -> None:
    pipe, samples = demo
    assert value(samples, "netwatch_alerts_total", level="critical") == len(pipe.alerts) > 0


def test_the_outbox_is_read_at_scrape_time(demo: Any) -> None:
    _p, samples = demo
    assert value(samples, "netwatch_outbox_messages", status="pending") > 0
    assert value(samples, "netwatch_outbox_messages", status="sent") == 0


def test_blocks_in_force_come_from_the_blocking_layer(demo: Any) -> None:
    _p, samples = demo
    assert value(samples, "netwatch_blocks_active") == 2


def test_flows_in_the_table_are_a_gauge(demo: Any) -> None:
    pipe, samples = demo
    assert value(samples, "netwatch_flows_tracked") == len(pipe.live) > 0


def test_last_packet_time_and_build_info(demo: Any) -> None:
    pipe, samples = demo
    assert value(samples, "netwatch_last_packet_timestamp_seconds") == pipe.last_packet_ts > 0
    assert samples["netwatch_build_info"][0].labels["version"]
    assert value(samples, "netwatch_signatures_loaded") == len(pipe.sigs.by_tool)


def test_stage_times_show_when_the_daemon_keeps_them(tmp_path: Path) -> None:
    household = load_household(str(HOUSEHOLD))
    pipe = Pipeline(signatures(), EventLog(None), household=household)
    pipe.stage_times = StageTimes()
    pipe.feed(open_capture(str(DEMO), ReadStats()))
    samples = scrape(make_registry(pipe)[0])
    assert value(samples, "netwatch_stage_calls_total", stage="inspect") > 0
    assert value(samples, "netwatch_stage_seconds_total", stage="inspect") > 0


def test_decode_errors_are_counted_by_reason(tmp_path: Path) -> None:
    pipe = Pipeline(signatures(), EventLog(None))
    cut = b"\x00" * 12 + b"\x08\x00" + b"\x45\x00\x00"  # an IPv4 header cut short
    pipe.feed([(1.0, 1, cut, len(cut))])
    samples = scrape(make_registry(pipe)[0])
    assert value(samples, "netwatch_decode_errors_total", reason="malformed") == 1


def test_names_follow_prometheus_conventions(demo: Any) -> None:
    _p, samples = demo
    for name in samples:
        assert name.startswith("netwatch_")
    counters = [f for f in text_string_to_metric_families(
        generate_latest(make_registry(demo[0])[0]).decode()) if f.type == "counter"]
    assert counters and all(s.name.endswith("_total") for f in counters for s in f.samples)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_finds_nothing_to_say_about_a_scrape(tmp_path: Path) -> None:
    pipe = demo_pipeline(tmp_path, notify=True)
    pipe.stage_times = StageTimes()
    pipe.stage_times.add("batch", 0.01)
    pipe.source = KernelCounters(10, 0)
    registry, _c = make_registry(pipe, state_dir=tmp_path / "state", blocks_active=lambda: 0)
    proc = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(registry),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == b"", proc.stdout + proc.stderr


# What a replay never needs: the daemon's metrics and senders, the bench's child processes,
# the household's policy and messages, the live sources, the other commands' definitions,
# socket (an IPv4 capture's addresses are written without it). Importing them is start-up
# time that every small capture pays.
NOT_FOR_REPLAY = ("prometheus_client", "yaml", "sqlite3", "http.server", "http.client",
                  "subprocess", "tempfile", "zoneinfo", "netwatch.policy", "netwatch.messages",
                  "netwatch.household", "netwatch.daemon", "netwatch.sources.conntrack",
                  "netwatch.sources.dnslog", "netwatch.bench", "netwatch.commands", "socket")


def test_replay_imports_only_what_it_needs() -> None:
    code = ("import sys; from netwatch.cli import main; "
            f"main(['replay', {str(DEMO)!r}], standalone_mode=False); "
            f"print(sorted(m for m in {NOT_FOR_REPLAY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_commands_loaded_on_demand_are_all_there() -> None:
    import click
    from click.testing import CliRunner

    from netwatch.cli import LATER_COMMANDS, main

    ctx = click.Context(main, info_name="netwatch")
    for name in LATER_COMMANDS:
        cmd = main.get_command(ctx, name)
        assert cmd is not None and cmd.name == name
    listed = CliRunner().invoke(main, ["--help"]).output.split("Commands:")[1]
    names = [line.split()[0] for line in listed.splitlines() if line.startswith("  ")]
    assert names == sorted([*LATER_COMMANDS, "replay"])


# ---------------------------------------------------------------------- health


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_health_turns_bad_when_a_live_source_is_silent(tmp_path: Path) -> None:
    pipe = demo_pipeline(tmp_path)
    clock = Clock(pipe.last_packet_ts + 10)
    health = Health(pipe, live=lambda: True, max_silence_s=60, clock=clock)
    assert health()[0] is True
    clock.now += 100
    ok, why = health()
    assert ok is False and "no packet for 110 s" in why


def test_health_stays_good_when_the_source_is_not_live(tmp_path: Path) -> None:
    pipe = demo_pipeline(tmp_path)
    health = Health(pipe, live=lambda: False, max_silence_s=60,
                    clock=Clock(pipe.last_packet_ts + 3600))
    assert health()[0] is True


def test_health_counts_from_start_before_the_first_packet() -> None:
    pipe = Pipeline(signatures(), EventLog(None))
    clock = Clock(1000.0)
    health = Health(pipe, live=lambda: True, max_silence_s=60, clock=clock)
    assert health()[0] is True
    clock.now = 1061.0
    assert health()[0] is False


# ---------------------------------------------------------------------- the server


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_server_serves_metrics_on_loopback(tmp_path: Path) -> None:
    pipe = Pipeline(signatures(), EventLog(None))
    with MetricsServer(make_registry(pipe)[0], DEFAULT_HOST, 0) as server:
        code, ctype, body = get(server.url + "/metrics")
    assert server.url.startswith("http://127.0.0.1:")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "netwatch_packets_total" in body


@pytest.mark.parametrize("healthy,code", [(True, 200), (False, 503)])
def test_healthz_answers_what_the_check_says(healthy: bool, code: int) -> None:
    pipe = Pipeline(signatures(), EventLog(None))
    with MetricsServer(make_registry(pipe)[0], DEFAULT_HOST, 0,
                       health=lambda: (healthy, "said so")) as server:
        got, _t, body = get(server.url + "/healthz")
    assert (got, body) == (code, "said so\n")


def test_other_paths_are_not_found() -> None:
    with MetricsServer(CollectorRegistry(), DEFAULT_HOST, 0) as server:
        assert get(server.url + "/")[0] == 404


def test_a_stopped_server_no_longer_answers() -> None:
    server = MetricsServer(CollectorRegistry(), DEFAULT_HOST, 0)
    server.start()
    url = server.url + "/metrics"
    assert get(url)[0] == 200
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_sessions_outside_every_help_window_are_a_gauge(tmp_path: Path) -> None:
    household = load_household(str(HOUSEHOLD))
    pipe = Pipeline(signatures(), EventLog(None), household=household)
    registry, _c = make_registry(pipe)
    at_alerts: list[dict[str, list[Any]]] = []
    pipe.on_alert.append(lambda alert: at_alerts.append(scrape(registry)))
    pipe.feed(open_capture(str(DEMO), ReadStats()))
    # The demo's AnyDesk session happens outside the laptop's help windows: while it is
    # live (at its critical alerts) the gauge counts it by tool and device name; once it
    # has gone idle, not any more.
    assert pipe.alert_levels.get("critical", 0) >= 1 and at_alerts
    for samples in at_alerts:
        assert value(samples, "netwatch_sessions_outside_window", tool="anydesk",
                     device="laptop") == 1
    assert "netwatch_sessions_outside_window" not in scrape(registry)


def test_a_session_inside_a_help_window_is_not_counted_outside(tmp_path: Path) -> None:
    pipe = demo_pipeline(tmp_path)
    assert pipe.policy is not None
    registry, _c = make_registry(pipe)
    [view] = pipe.policy.sessions.values()
    view.state = "active"
    view.in_window = False
    assert value(scrape(registry), "netwatch_sessions_outside_window", tool="anydesk",
                 device="laptop") == 1
    view.in_window = True  # as the policy judges a session in a window
    assert "netwatch_sessions_outside_window" not in scrape(registry)


def test_the_text_without_prometheus_client_is_the_same(demo: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from netwatch import metrics, promtext

    pipe, _samples = demo
    args = {"state_dir": tmp_path, "blocks_active": lambda: 2, "clock": lambda: 1.7966e9}
    registry, _c = make_registry(pipe, **args)
    theirs = generate_latest(registry).decode()
    for name in ("CounterMetricFamily", "GaugeMetricFamily", "InfoMetricFamily",
                 "CollectorRegistry"):
        monkeypatch.setattr(metrics, name, getattr(promtext, name))
    ours, _c = make_registry(pipe, **args)
    assert isinstance(ours, promtext.CollectorRegistry)
    assert promtext.generate_latest(ours).decode() == theirs


def test_the_metrics_file_for_a_node_exporter(demo: Any, tmp_path: Path) -> None:
    from netwatch.metrics import TextfileWriter

    pipe, _samples = demo
    registry, _c = make_registry(pipe)
    path = tmp_path / "netwatch.prom"
    writer = TextfileWriter(registry, path, every_s=15)
    assert writer.due(100.0)
    writer.write(100.0)
    assert not writer.due(110.0) and writer.due(115.0)
    text = path.read_text()
    assert f'netwatch_packets_total{{source="af_packet"}} {float(pipe.c.packets)}' in text
    assert [p.name for p in tmp_path.iterdir()] == ["netwatch.prom"]  # no temporary left
