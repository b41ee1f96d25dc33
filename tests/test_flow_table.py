"""The flow table full (netwatch.floods.table_frames, table_full): the mix of flows it is
filled with, the bounds given to a replay and to the daemon, and the measurement that
``netwatch bench`` reports at 65,536 flows (here far smaller)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import signatures
from netwatch import floods
from netwatch.cli import main
from netwatch.config import ConfigError, load_settings
from netwatch.eventlog import EventLog
from netwatch.flows import DECIDED, Flow, Limits
from netwatch.pipeline import Pipeline
from netwatch.sources.capture import ReadStats, open_source


def _table(tmp_path: Path, flows: int, inspecting: int) -> Path:
    cap = tmp_path / "table.pcap"
    floods.write_pcap(cap, floods.table_frames(flows, inspecting))
    return cap


def test_table_holds_decided_flows_and_the_last_ones_still_inspected(tmp_path: Path) -> None:
    cap = _table(tmp_path, 1_600, 96)
    pipe = Pipeline(signatures(), EventLog(None), limits=Limits(max_flows=1_600))
    pipe.feed_pcap(open_source(str(cap), ReadStats()))  # not feed_file: it ends the flows
    live = list(pipe.live.values())
    assert len(live) == 1_600 and pipe.c.flows_evicted == 0
    assert [f.id for f in live if f.inspecting] == list(range(1_505, 1_601))
    # Decided by their handshakes, none a detection: TLS, plain HTTP, QUIC.
    kinds = {(f.proto, f.server_port) for f in live if not f.inspecting}
    assert kinds == {(6, 443), (6, 80), (17, 443)}
    assert pipe.c.events == 0 and not pipe.findings
    # What a decided flow keeps: no inspection state of its own, no detail, no server name.
    decided = [f for f in live if not f.inspecting]
    assert all(f.insp is DECIDED and f.detail is None and f.sni is None for f in decided)
    assert all(f.insp is not DECIDED for f in live if f.inspecting)


def test_the_shared_decided_state_is_never_written() -> None:
    f = Flow(1, 6, bytes([192, 168, 1, 20]), 50000, bytes([203, 0, 113, 7]), 443, 0.0)
    f.stop_inspecting()
    with pytest.raises(AttributeError):
        f.candidates = []
    assert DECIDED.candidates == ()


def _stats(eve: Path) -> dict[str, int]:
    lines = eve.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])["stats"]


def test_replay_takes_the_flow_cap(tmp_path: Path) -> None:
    cap = _table(tmp_path, 600, 40)
    for cap_flows, evicted in ((500, 100), (600, 0)):
        eve = tmp_path / f"eve-{cap_flows}.json"
        res = CliRunner().invoke(main, ["replay", str(cap), "--eve-log", str(eve),
                                        "--max-flows", str(cap_flows)])
        assert res.exit_code == 0, res.output
        st = _stats(eve)
        assert st["flows_evicted"] == evicted
    assert st["max_concurrent_flows"] == 600


def test_replay_takes_the_bound_on_flows_being_inspected(tmp_path: Path) -> None:
    cap = _table(tmp_path, 600, 40)
    eve = tmp_path / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(cap), "--eve-log", str(eve),
                                    "--max-inspecting", "30"])
    assert res.exit_code == 0, res.output
    assert _stats(eve)["flows_evicted_undecided"] == 10


def test_daemon_settings_take_the_flow_bounds(tmp_path: Path) -> None:
    cfg = tmp_path / "netwatch.yaml"
    cfg.write_text("interface: eth0\nmax_flows: 65536\nmax_inspecting: 4096\n",
                   encoding="utf-8")
    s = load_settings(str(cfg))
    assert (s.max_flows, s.max_inspecting) == (65_536, 4_096)
    cfg.write_text("interface: eth0\nmax_flows: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(str(cfg))
    assert e.value.problems == [f"{cfg}:2: max_flows: '0' is not a whole number of flows, "
                                "like 8192"]


def test_table_full_measures_both_replays(tmp_path: Path) -> None:
    t = floods.table_full(flows=2_048, inspecting=128, workdir=tmp_path)
    assert (t.max_concurrent, t.evicted) == (2_048, 0)
    assert t.peak_rss_mib >= t.half_rss_mib > 0


@pytest.mark.parametrize("cip,sip", [
    (bytes([192, 168, 1, 20]), bytes([203, 0, 113, 7])),
    (bytes(range(16)), bytes(range(100, 116))),
    (bytes(range(16)), bytes([192, 168, 1, 1])),  # a resolver log's IPv6 device, IPv4 resolver
    (bytes([192, 168, 1, 20]), bytes(range(16))),
])
def test_flow_reads_its_addresses_and_ports_from_its_key(cip: bytes, sip: bytes) -> None:
    f = Flow(1, 6, cip, 50211, sip, 3389, 0.0)
    assert (f.client_ip, f.client_port, f.server_ip, f.server_port) == (cip, 50211, sip, 3389)
    if len(cip) == len(sip):  # the keys of the table, each way, as the packets carry them
        assert f.key == cip + sip + (50211).to_bytes(2, "big") + (3389).to_bytes(2, "big")
        assert f.rkey == sip + cip + (3389).to_bytes(2, "big") + (50211).to_bytes(2, "big")
