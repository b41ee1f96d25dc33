"""Floods: a real remote-access session must survive what any LAN device can send, and
memory stays bounded (netwatch.floods; the full sizes run with ``bash run.sh floods``).

Each flood runs ``netwatch replay`` in a child process whose peak RSS is measured; sizes
here are smaller than the full ones, enough to fill every bounded table at the defaults."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import CORPUS, needs_corpus
from netwatch import floods
from netwatch.eventlog import EventLog
from netwatch.flows import Flow, Limits
from netwatch.pipeline import Pipeline
from netwatch.sessions import Session
from netwatch.signatures import load_dir
from netwatch.sources.capture import ReadStats

pytestmark = needs_corpus

RDP = Path(__file__).parent / "pcaps" / "recorded" / "rdp-xrdp.pcap"
# Each past the bound it tests at the defaults: the flow table (flows.MAX_FLOWS), the pool of
# undecided flows (MAX_INSPECTING), findings and session peers (MAX_FINDINGS,
# MAX_SESSION_PEERS); the SYN flood is the test below.
CI_SIZES = {"flows": 40_000, "bulk": 8_000, "peers": 12_000}


def test_syn_burst_within_a_minute_keeps_the_session_and_its_alert(tmp_path: Path) -> None:
    # 66,000 SYNs from a LAN device in six seconds, around a live VNC session: more new
    # flows than the table holds at its old size, all after the session's flow began.
    out = floods.run("syns", 66_000, CORPUS, RDP, tmp_path)
    assert out.detected and out.active
    assert out.kept, "the session ended before its last packet: its flow was evicted"
    assert out.alert, "the bank opened during the session must make the alert critical"
    assert out.peak_rss_mib <= floods.RSS_CAP_MIB, out


@pytest.mark.parametrize("kind", sorted(CI_SIZES))
def test_flood_keeps_the_session_within_the_memory_cap(kind: str, tmp_path: Path) -> None:
    out = floods.run(kind, CI_SIZES[kind], CORPUS, RDP, tmp_path)
    assert (out.detected, out.active, out.kept, out.alert) == (True, True, True, True), out
    assert out.peak_rss_mib <= floods.RSS_CAP_MIB, out
    assert out.session_event_bytes < 4096, out  # peers listed are bounded


def _pipeline(limits: Limits) -> Pipeline:
    return Pipeline(load_dir(), EventLog(None), limits=limits)


def test_every_table_stays_within_its_bound(tmp_path: Path) -> None:
    cap = tmp_path / "peers.pcap"
    floods.write_pcap(cap, floods.flood_peers(600, 1000.0, 1010.0, random.Random(1),
                                              floods.rdp_openings(RDP)))
    lim = Limits(max_flows=200, max_inspecting=50, max_findings=100, max_scan_findings=10,
                 max_session_peers=8)
    pipe = _pipeline(lim)
    pipe.feed_file(str(cap), ReadStats())
    res = pipe.finish()
    c = res.counters
    assert c.max_concurrent_flows == lim.max_flows
    assert c.flows_evicted > 0 and len(res.findings) == lim.max_findings
    assert c.findings_dropped == 600 - lim.max_findings
    assert c.session_peers_dropped == 600 - lim.max_session_peers
    sessions = [s for _, s in pipe.sessions.ended if s.tool == "rdp"]
    assert sessions and all(len(s.peers) <= lim.max_session_peers for s in sessions)


def test_a_flood_of_undecided_flows_evicts_its_own(tmp_path: Path) -> None:
    cap = tmp_path / "bulk.pcap"
    rng = random.Random(2)
    floods.write_pcap(cap, floods.flood_bulk(300, 1000.0, 1010.0, rng, packets=4, together=300))
    pipe = _pipeline(Limits(max_flows=1000, max_inspecting=64))
    pipe.feed_file(str(cap), ReadStats())
    c = pipe.c
    assert c.flows_evicted_undecided == c.flows_evicted > 0
    # With room for them all, each stops inspecting: 4 x 1,400 bytes unanswered, nothing
    # left to read them.
    pipe = _pipeline(Limits())
    pipe.feed_file(str(cap), ReadStats())
    assert pipe.c.inspect_stopped_one_sided > 250 and pipe.c.flows_evicted == 0


def test_segments_keep_no_more_than_the_inspection_bytes() -> None:
    from netwatch.flows import INSPECT_BYTES, Flow

    f = Flow(1, 6, b"\x0a\x00\x00\x01", 1000, b"\x0a\x00\x00\x02", 443, 0.0)
    for i in range(24):
        f.add_tcp_payload(0, 1 + i * 1400, bytes(1400))
    assert len(f.streams[0]) == INSPECT_BYTES
    assert sum(map(len, f.segments[0])) == INSPECT_BYTES  # not 24 x 1,400



def test_eviction_spares_a_real_session_over_a_flood_of_session_flows() -> None:
    # A full table whose oldest flows are all in sessions: 16 handshake-only flows (a
    # flood's, in a session of their own) and the real session's two flows, idle longer
    # than they are: one busy (flows.BUSY_BYTES), one that carried 12 kB so far. Both stay;
    # one of the flood's goes.
    pipe = _pipeline(Limits())
    dev = b"\xc0\xa8\x02\x6e"
    busy = Flow(1, 6, b"\x5f\xed\x30\xd0", 59791, dev, 6900, 0.0)
    busy.bytes, busy.last_ts = [40_000, 200_000], 3.4
    warm = Flow(99, 6, b"\x5f\xed\x30\xd0", 51559, dev, 6900, 0.0)
    warm.bytes, warm.last_ts = [3_000, 9_000], 3.3
    flood = [Flow(2 + i, 6, dev, 20000 + i, bytes([100, 64, 0, i]), 3389, 3.5)
             for i in range(16)]
    for f in flood:
        f.bytes, f.last_ts = [400, 300], 3.9
    vnc, rdp = Session(1, "vnc", "192.168.2.110", 0.0), Session(2, "rdp", "192.168.2.110", 1.0)
    vnc.flows, rdp.flows = [busy, warm], list(flood)
    for f in [busy, warm, *flood]:
        pipe.live[f.id] = f
        pipe.sessions.by_flow[f.id] = vnc if f in (busy, warm) else rdp
    pipe._evict_idle()
    assert busy.id in pipe.live and warm.id in pipe.live and len(pipe.live) == 17
    assert pipe.c.flows_evicted_protected == 1
