"""A real dnsmasq as the LAN's DNS server, queried from another network namespace: netwatch's
dnslog source turns the lines it really writes into the AnyDesk detection and alert.

The test makes two namespaces joined by a veth pair (the resolver 10.75.53.1, a household
PC 10.75.53.23), runs Debian's dnsmasq in the first with query logging to a file and local
answers only (``--address``, ``--no-resolv``: nothing leaves the namespaces), and sends
bounded UDP queries from the second.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import signatures
from netwatch.eventlog import EventLog
from netwatch.household import load_household
from netwatch.pipeline import Pipeline
from netwatch.sources.dnslog import DnsLogSource

DNSMASQ = "/usr/sbin/dnsmasq"
TAG = f"{os.getpid() % 100000}"
NS_DNS, NS_PC = f"nwl-dns{TAG}", f"nwl-pc{TAG}"
RESOLVER, PC = "10.75.53.1", "10.75.53.23"
LOCAL_ANSWER = "10.75.9.9"
NAMES = ("download.anydesk.com", "boot.net.anydesk.com", "relay-1a2b3c4d.net.anydesk.com")
RUN_S = 30  # dnsmasq and the client stop by themselves after this, whatever happens


def sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def namespaces() -> Iterator[None]:
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is missing (bash run.sh test installs it)")
    made = sh("ip", "netns", "add", NS_DNS)
    if made.returncode != 0:
        pytest.skip(f"network namespaces are not allowed here: {made.stderr.strip()}")
    try:
        sh("ip", "netns", "add", NS_PC)
        a, b = f"nwl{TAG}d", f"nwl{TAG}p"
        steps = [
            ("ip", "link", "add", a, "netns", NS_DNS, "type", "veth", "peer", "name", b,
             "netns", NS_PC),
            ("ip", "-n", NS_DNS, "addr", "add", f"{RESOLVER}/24", "dev", a),
            ("ip", "-n", NS_PC, "addr", "add", f"{PC}/24", "dev", b),
            ("ip", "-n", NS_DNS, "link", "set", a, "up"),
            ("ip", "-n", NS_PC, "link", "set", b, "up"),
            ("ip", "-n", NS_DNS, "link", "set", "lo", "up"),
        ]
        for step in steps:
            r = sh(*step)
            if r.returncode != 0:
                pytest.skip(f"the kernel refused {' '.join(step)}: {r.stderr.strip()}")
        yield
    finally:
        sh("ip", "netns", "del", NS_PC)
        sh("ip", "netns", "del", NS_DNS)


def dns_query(name: str, ident: int) -> bytes:
    """A standard query for an A record (RFC 1035 §4.1), recursion desired."""
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


# Run in the household PC's namespace: each query once, two seconds at most for its answer.
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i, hexq in enumerate(sys.argv[2:]):
    s.sendto(bytes.fromhex(hexq), (sys.argv[1], 53))
    try:
        print(len(s.recv(512)))
    except OSError as e:
        print("no answer", e)
"""


def household(tmp_path: Path) -> Path:
    p = tmp_path / "household.yaml"
    p.write_text(f"""timezone: Europe/Brussels
people:
  Maria: en
carers:
  - name: Pieter
    language: en
    notify: [ntfy://127.0.0.1:9/topic]
devices:
  - name: pc
    person: Maria
    ips: [{PC}]
""")
    return p


# Plain query logging, and "extra": a serial number and the requestor on every line.
@pytest.mark.parametrize("logging", ["--log-queries", "--log-queries=extra"])
def test_real_dnsmasq_log_lines_become_the_anydesk_detection(tmp_path: Path, logging: str,
                                                            namespaces: None) -> None:
    log = tmp_path / "dnsmasq.log"
    server = subprocess.Popen(
        ["ip", "netns", "exec", NS_DNS, "timeout", str(RUN_S), DNSMASQ, "--keep-in-foreground",
         "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
         f"--listen-address={RESOLVER}", "--port=53", "--user=root", "--pid-file=",
         logging, f"--log-facility={log}", f"--address=/anydesk.com/{LOCAL_ANSWER}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        src = DnsLogSource(str(log), resolver=RESOLVER, from_start=True)
        for _ in range(100):  # dnsmasq logs "started" once it listens
            if log.exists() and "started" in log.read_text():
                break
            if server.poll() is not None:
                pytest.fail(f"dnsmasq stopped: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.05)
        queries = [dns_query(n, 0x4E57 + i).hex() for i, n in enumerate(NAMES)]
        client = sh("ip", "netns", "exec", NS_PC, "timeout", "15", sys.executable, "-c", CLIENT,
                    RESOLVER, *queries)
        assert client.returncode == 0, client.stderr
        assert "no answer" not in client.stdout, client.stdout
        lookups: list[Any] = []
        for _ in range(40):  # bounded: the lines are written before the answers are sent
            lookups += src.poll(0.1)
            if len(lookups) >= len(NAMES):
                break
        src.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert [(lk.client, lk.qname, lk.answers, lk.source) for lk in lookups] == [
        (PC, n, [LOCAL_ANSWER], "config") for n in NAMES], log.read_text()
    assert src.stats()["junk_lines"] == 0, log.read_text()
    if logging.endswith("extra"):
        assert f" {PC}/" in log.read_text()  # the lines really carried the requestor

    eve = tmp_path / "eve.json"
    pipe = Pipeline(signatures(), EventLog(str(eve)),
                    household=load_household(str(household(tmp_path))))
    pipe.feed_lookups(lookups)
    pipe.finish()
    pipe.log.close()
    events = [json.loads(ln) for ln in eve.read_text().splitlines()]
    ra = [(e["src_ip"], e["dest_ip"], e["remote_access"]["role"]) for e in events
          if e["event_type"] == "remote_access" and e["remote_access"]["tool"] == "anydesk"]
    assert ra == [(PC, RESOLVER, "download"), (PC, RESOLVER, "rendezvous"),
                  (PC, RESOLVER, "dns")]
    alerts = [e["alert"] for e in events if e["event_type"] == "alert"]
    assert [a["tool"] for a in alerts] == ["anydesk"]
    assert alerts[0]["device"] == "pc"
    assert any(r["code"] == "dns_only" for r in alerts[0]["reason_codes"])


def test_dns_query_builder_is_a_valid_question() -> None:
    q = dns_query("boot.net.anydesk.com", 7)
    assert q[:12] == struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    assert q[12:] == b"\x04boot\x03net\x07anydesk\x03com\x00\x00\x01\x00\x01"
