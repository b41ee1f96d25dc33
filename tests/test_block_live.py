"""Blocking on real traffic, in network namespaces the tests make (see tests/blocklab.py).

A household PC, a router with netwatch's table and a DNS resolver, and an "internet": a
real VNC session (TigerVNC's viewer to x11vnc) and long-lived TCP sessions between real
programs are cut by a block, new connections fail, the router and DNS stay reachable, and
traffic passes again after expiry or ``netwatch block remove``. How long the cut takes is
printed (measured, not asserted); benchmarks/block_cut.py gives p50/p95.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import blocklab
import pytest
from blocklab import NET, NET_IP, PC, PC_IP, ROUTER, ROUTER_LAN, UPSTREAM_DNS, Lab, wait_for

WHY_NOT = blocklab.why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"live blocking: {WHY_NOT}")
VNC_PORT = 5900
TCP_PORT = 7000


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab().up()
    before = lab.fw4()
    try:
        yield lab
        assert lab.fw4() == before, "netwatch changed the stand-in fw4 table"
    finally:
        lab.down()


@pytest.fixture
def state(lab: Lab, tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "state")
    blocklab.ns(ROUTER, "nft", "delete", "table", "inet", "netwatch", check=False)


def _session(lab: Lab, port: int = TCP_PORT) -> tuple[subprocess.Popen, subprocess.Popen]:
    server = blocklab.bg(PC, sys.executable, "-c", blocklab.SERVER, PC_IP, str(port),
                         lifetime=60)
    assert wait_for(lambda: lab.connects(NET, PC_IP, port), 10), "the test server is not up"
    client = blocklab.bg(NET, sys.executable, "-c", blocklab.CLIENT, PC_IP, str(port),
                         lifetime=60)
    assert wait_for(lambda: lab.established(NET, port) == 1, 10)
    lab.procs += [server, client]
    return server, client


def _gone(lab: Lab, port: int) -> float | None:
    """Seconds until no end of the session on ``port`` is established (None: 10 s passed)."""
    t0 = time.monotonic()
    ok = wait_for(lambda: lab.established(NET, port) == 0 and lab.established(PC, port) == 0,
                  10, step=0.02)
    return time.monotonic() - t0 if ok else None


def test_a_session_is_cut_new_connections_fail_dns_and_router_stay(lab: Lab, state: str) -> None:
    server, client = _session(lab)
    out = lab.netwatch("block", "add", PC_IP, NET_IP, "--for", "60s", "--state-dir", state,
                       "--backend", "nftables")
    assert out.returncode == 0, out.stdout + out.stderr
    took = _gone(lab, TCP_PORT)
    assert took is not None, "the session survived the block"
    print(f"session gone {took:.3f} s after 'netwatch block add' returned")
    client.wait(timeout=10)
    assert "reset" in client.stdout.read().decode().lower()  # the viewer side saw a reset
    assert not lab.connects(NET, PC_IP, TCP_PORT)
    assert lab.dns_works() and lab.router_answers()
    block_id = out.stdout.split()[1]
    removed = lab.netwatch("block", "remove", block_id, "--state-dir", state,
                           "--backend", "nftables")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert lab.connects(NET, PC_IP, TCP_PORT)


def test_a_block_lifts_itself_when_its_time_is_up(lab: Lab, state: str) -> None:
    _session(lab, TCP_PORT + 1)
    out = lab.netwatch("block", "add", PC_IP, NET_IP, "--for", "3s", "--state-dir", state,
                       "--backend", "nftables")
    assert out.returncode == 0, out.stdout + out.stderr
    assert _gone(lab, TCP_PORT + 1) is not None
    assert not lab.connects(NET, PC_IP, TCP_PORT + 1)
    # Nothing of netwatch runs now: the kernel's set timeout lifts the block.
    assert wait_for(lambda: lab.connects(NET, PC_IP, TCP_PORT + 1), 10, step=0.5)
    listed = lab.netwatch("block", "list", "--state-dir", state)
    assert "no blocks in force" in listed.stdout


def test_a_rule_against_the_router_or_the_resolver_is_refused(lab: Lab, state: str) -> None:
    for peer, why in ((ROUTER_LAN, "this box's own address"), (UPSTREAM_DNS, "DNS resolver")):
        out = lab.netwatch("block", "add", PC_IP, peer, "--state-dir", state,
                           "--backend", "nftables")
        assert out.returncode == 1
        assert out.stdout.startswith("refused:") and why in out.stdout, out.stdout
    sets = blocklab.ns(ROUTER, "nft", "-j", "list", "sets", "inet", check=False).stdout
    assert ROUTER_LAN not in sets and UPSTREAM_DNS not in sets
    assert lab.router_answers() and lab.dns_works()


def test_a_restart_keeps_the_block(lab: Lab, state: str) -> None:
    out = lab.netwatch("block", "add", PC_IP, NET_IP, "--for", "60s", "--state-dir", state,
                       "--backend", "nftables")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not lab.connects(NET, PC_IP, TCP_PORT + 2) and lab.connects(PC, ROUTER_LAN, 53) \
        is not None
    again = lab.netwatch("block", "reconcile", "--state-dir", state, "--backend", "nftables")
    assert "nothing to put right" in again.stdout, again.stdout + again.stderr
    # A reboot empties the kernel's ruleset; the state folder remembers.
    blocklab.ns(ROUTER, "nft", "delete", "table", "inet", "netwatch")
    server = blocklab.bg(PC, sys.executable, "-c", blocklab.SERVER, PC_IP, str(TCP_PORT + 2),
                         lifetime=60)
    lab.procs.append(server)
    assert wait_for(lambda: lab.connects(NET, PC_IP, TCP_PORT + 2), 10)
    back = lab.netwatch("block", "reconcile", "--state-dir", state, "--backend", "nftables")
    assert back.returncode == 0 and "put back after a restart" in back.stdout, back.stdout
    assert not lab.connects(NET, PC_IP, TCP_PORT + 2)
    assert lab.router_answers() and lab.dns_works()


def test_the_capture_chains_and_other_tables_are_left_alone(lab: Lab, state: str) -> None:
    # A stand-in for the nflog source's capture chain in the same table.
    blocklab.ns(ROUTER, "nft", "add", "table", "inet", "netwatch")
    blocklab.ns(ROUTER, "nft", "add", "chain", "inet", "netwatch", "capture_forward",
                "{ type filter hook forward priority -1; policy accept; }")
    blocklab.ns(ROUTER, "nft", "add", "rule", "inet", "netwatch", "capture_forward",
                "counter")
    code = ("import sys\nfrom netwatch.block.nftables import NftablesBackend\n"
            "b = NftablesBackend(); b.install(); b.install()\n"
            "b.add([('10.77.1.2', '10.77.2.2')], 30); b.uninstall()")
    blocklab.ns(ROUTER, sys.executable, "-c", code)
    table = json.loads(blocklab.ns(ROUTER, "nft", "-j", "list", "table", "inet",
                                   "netwatch").stdout)["nftables"]
    chains = sorted(o["chain"]["name"] for o in table if "chain" in o)
    assert chains == ["capture_forward"]
    assert [o for o in table if "rule" in o]  # its rule is still there
    assert not [o for o in table if "set" in o]


@pytest.mark.skipif(not all(shutil.which(t) for t in blocklab.VNC_TOOLS),
                    reason="Xvfb, xclock, x11vnc or TigerVNC's vncviewer is not installed")
def test_block_now_cuts_a_real_vnc_session(lab: Lab, state: str, tmp_path: Path) -> None:
    """x11vnc on the PC's screen, TigerVNC's viewer on the internet; the carer's "Block now"
    (a POST on a signed link to the control endpoint on the router) ends it."""
    blocklab.vnc_session(lab, (51, 52), tmp_path, VNC_PORT)
    time.sleep(1)  # the desktop is on the viewer's screen and updating
    # The control endpoint on the router, with the session as the pipeline saw it.
    code = ("import sys\nfrom netwatch.block import BlockLayer\n"
            "BlockLayer(sys.argv[1]).remember_session({'event_type': 'session', 'src_ip': "
            f"'{PC_IP}', 'session': {{'id': 7, 'tool': 'vnc', 'peers': ['{NET_IP}']}}}})")
    blocklab.ns(ROUTER, sys.executable, "-c", code, state)
    link = lab.netwatch("control", "link", "--state-dir", state, "--action", "block",
                        "--session", "7", "--alert", "7-1", "--carer", "Pieter",
                        "--base-url", "http://127.0.0.1:8787", check=True).stdout.strip()
    serve = blocklab.bg(ROUTER, *blocklab.NETWATCH, "control", "serve", "--state-dir", state,
                        "--listen", "127.0.0.1:8787", "--backend", "nftables", lifetime=60)
    lab.procs.append(serve)
    post = ("import sys, urllib.request\n"
            "r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'', "
            "method='POST'), timeout=20)\nprint(r.status)")
    health = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/healthz')"
    assert wait_for(lambda: blocklab.ns(ROUTER, sys.executable, "-c", health,
                                        check=False).returncode == 0, 15)
    t0 = time.monotonic()
    answer = blocklab.ns(ROUTER, sys.executable, "-c", post, link, check=False)
    assert answer.stdout.strip() == "200", answer.stdout + answer.stderr
    took = _gone(lab, VNC_PORT)
    assert took is not None, "the VNC session survived Block now"
    print(f"VNC session gone {time.monotonic() - t0:.3f} s after the POST was sent")
    assert not lab.connects(NET, PC_IP, VNC_PORT)
    assert lab.dns_works() and lab.router_answers()
    listed = lab.netwatch("block", "list", "--state-dir", state, "--format", "json")
    blocks = json.loads(listed.stdout)
    assert [(b["session_id"], b["peers"]) for b in blocks] == [(7, [NET_IP])]
    assert urllib.parse.urlsplit(link).path.startswith("/a/")
