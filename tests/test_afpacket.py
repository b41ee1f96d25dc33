"""The af_packet source and ``netwatch run`` on a veth pair in network namespaces this test
makes (``nwd-…``, addresses in 10.73.0.0/16), deleted at the end.

Frames are sent with a raw socket on one end and read on the other: the source runs in a
child process inside the namespace (``ip netns exec``) and prints what it read as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RECORDED
from netwatch.sources.afpacket import afpacket_available

ROOT = Path(__file__).resolve().parent.parent


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and AF_PACKET need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    why = afpacket_available()
    if why:
        return why
    probe = f"nwd-probe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return f"this kernel forbids network namespaces here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


WHY_NOT = _why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def veth() -> Iterator[str]:
    """A namespace with a veth pair nwd0 <-> nwd1 (no addresses: frames are sent raw), IPv6
    off (no neighbour discovery noise) and loopback up (the metrics endpoint). Yields the
    namespace's name."""
    ns = f"nwd-af{os.getpid()}"
    _ip("netns", "add", ns)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True, timeout=10)
        _ip("-n", ns, "link", "add", "nwd0", "type", "veth", "peer", "name", "nwd1")
        _ip("-n", ns, "link", "set", "nwd0", "up")
        _ip("-n", ns, "link", "set", "nwd1", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _in_ns(ns: str, script: str, timeout: float = 30) -> dict[str, object]:
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                        textwrap.dedent(script)], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


SENDER = """
import json, socket, struct, time
from netwatch.sources.afpacket import AfPacketSource
dst, src = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
def ip_tcp(ident):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, ident, 0x4000, 64, 6, 0,
                     socket.inet_aton("10.73.0.1"), socket.inet_aton("10.73.0.2"))
    return ip + struct.pack("!HHIIBBHHH", 40000, 5900, 1, 0, 0x50, 0x10, 512, 0, 0)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
tx.bind(("nwd0", 0))
"""


def test_frames_come_with_vlan_tags_and_wire_length_and_without_non_ip(veth: str) -> None:
    out = _in_ns(veth, SENDER + """
rx = AfPacketSource("nwd1", promiscuous=False)
sent = [dst + src + b"\\x08\\x00" + ip_tcp(1),
        dst + src + b"\\x81\\x00\\x00\\x2a\\x08\\x00" + ip_tcp(2)]  # VLAN 42
for f in sent:
    tx.send(f)
tx.send(dst + src + b"\\x08\\x06" + bytes(28))   # ARP
tx.send(dst + src + b"\\x88\\xcc" + bytes(46))   # LLDP
tx.send(dst + src + b"\\x08\\x00" + ip_tcp(3))
sent.append(dst + src + b"\\x08\\x00" + ip_tcp(3))
got, deadline = [], time.time() + 5
while len(got) < 3 and time.time() < deadline:
    got += rx.poll(0.5)
got += rx.poll(0.3)  # anything more (there should be nothing)
print(json.dumps({"ring": rx.ring, "sent": [f.hex() for f in sent],
                  "got": [[lt, f.hex(), w] for _ts, lt, f, w in got],
                  "stats": rx.stats()}))
rx.close()
""")
    assert out["ring"] is True
    got = out["got"]
    assert [g[1] for g in got] == out["sent"]  # ARP and LLDP filtered out, tag put back
    assert [g[0] for g in got] == [1, 1, 1]
    assert [g[2] for g in got] == [len(bytes.fromhex(f)) for f in out["sent"]]  # type: ignore[attr-defined]
    assert out["stats"]["packets"] == 3  # type: ignore[index]


def test_kernel_drops_are_counted_when_the_ring_is_full(veth: str) -> None:
    out = _in_ns(veth, SENDER + """
rx = AfPacketSource("nwd1", promiscuous=False, block_size=4096, block_nr=2)
frame = dst + src + b"\\x08\\x00" + ip_tcp(1) + bytes(900)
for _ in range(300):
    tx.send(frame)
time.sleep(0.3)
n = 0
for _ in range(20):
    n += len(rx.poll(0.05))
print(json.dumps({"read": n, "stats": rx.stats()}))
rx.close()
""")
    st = out["stats"]
    assert st["dropped"] > 0  # type: ignore[index]
    assert st["received"] == out["read"] + st["dropped"]  # type: ignore[index]


def test_plain_reads_when_there_is_no_ring(veth: str) -> None:
    out = _in_ns(veth, SENDER + """
rx = AfPacketSource("nwd1", promiscuous=False, ring=False)
tx.send(dst + src + b"\\x08\\x06" + bytes(28))
tx.send(dst + src + b"\\x08\\x00" + ip_tcp(7))
got = rx.poll(2.0)
print(json.dumps({"ring": rx.ring, "got": [[f.hex(), w] for _t, _l, f, w in got],
                  "stats": rx.stats()}))
rx.close()
""")
    assert out["ring"] is False
    assert len(out["got"]) == 1 and out["got"][0][1] == 54  # type: ignore[index, arg-type]
    assert out["stats"]["received"] == 1  # type: ignore[index]


# ------------------------------------------------------------------ netwatch run


HOUSEHOLD = """\
timezone: UTC
people:
  Maria: {language: en}
devices:
  - name: laptop
    person: Maria
    ips: [10.73.0.1]
"""


@contextlib.contextmanager
def _netwatch_run(ns: str, args: list[str], err: Path, env: dict[str, str] | None = None
                  ) -> Iterator[subprocess.Popen[str]]:
    """``netwatch run ARGS`` in the namespace (bounded by timeout), standard error to
    ``err``; killed at the end if still running."""
    with open(err, "w", encoding="utf-8") as err_fh:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "timeout", "60", sys.executable,
                                 "-m", "netwatch", "run", *args],
                                stderr=err_fh, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_for(path: Path, text: str, proc: subprocess.Popen[str], within: float) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        content = path.read_text(encoding="utf-8") if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen in {path}:\n" +
                         (path.read_text(encoding="utf-8") if path.exists() else ""))


@pytest.mark.skipif(shutil.which("tcpreplay") is None or shutil.which("tcprewrite") is None,
                    reason="tcpreplay and tcprewrite are not installed")
def test_netwatch_run_on_af_packet_detects_reloads_and_stops_cleanly(veth: str,
                                                                     tmp_path: Path) -> None:
    # The recorded VNC session (10.99.0.1 -> 10.99.0.2:5900) moved into this test's range.
    pcap = tmp_path / "vnc.pcap"
    subprocess.run(["tcprewrite", "--pnat=10.99.0.0/16:10.73.0.0/16", "--fixcsum",
                    f"--infile={RECORDED / 'vnc-x11vnc.pcap'}", f"--outfile={pcap}"],
                   check=True, capture_output=True, timeout=30)
    household = tmp_path / "household.yaml"
    household.write_text(HOUSEHOLD, encoding="utf-8")
    eve, err = tmp_path / "eve.json", tmp_path / "stderr.txt"
    # As systemd would start it: a notify socket (a path: namespaces do not separate those)
    # with a 0.4 s watchdog, and standard error going to the journal.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.5)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000",
           "JOURNAL_STREAM": "8:12345"}
    with _netwatch_run(veth, ["--source", "af_packet", "--interface", "nwd1", "--household",
                              str(household), "--state-dir", str(tmp_path / "state"),
                              "--eve-log", str(eve), "--metrics-listen", "127.0.0.1:0",
                              "--control-listen", "127.0.0.1:0"], err, env) as proc:
        ready = _wait_for(err, "ready: capturing on nwd1 (af_packet, kernel ring)", proc, 20)
        subprocess.run(["ip", "netns", "exec", veth, "timeout", "20", "tcpreplay", "-q",
                        "-i", "nwd0", "--topspeed", str(pcap)], check=True,
                       capture_output=True)
        _wait_for(eve, '"event_type":"remote_access"', proc, 10)
        url = re.search(r"metrics (http://127\.0\.0\.1:\d+/metrics)", ready)
        assert url, ready
        scraped = subprocess.run(
            ["ip", "netns", "exec", veth, "timeout", "10", sys.executable, "-c",
             f"import urllib.request; print(urllib.request.urlopen({url.group(1)!r}).read()"
             ".decode())"], check=True, capture_output=True, text=True).stdout
        proc.send_signal(signal.SIGHUP)
        _wait_for(err, "reloaded: signatures, household", proc, 10)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    assert rc == 0, err.read_text()
    said = []
    with contextlib.suppress(TimeoutError):
        while True:
            said.append(notify.recv(4096).decode())
    notify.close()
    assert said[0].startswith("READY=1\nSTATUS=0 packets")
    assert "WATCHDOG=1" in said and said[-1] == "STOPPING=1"
    lines = err.read_text(encoding="utf-8").splitlines()
    assert "<6>ready: capturing on nwd1 (af_packet, kernel ring)" in "\n".join(lines)
    assert all(line.startswith(("<6>", "<4>", "<3>")) for line in lines)
    packets = re.search(r'^netwatch_packets_total\{source="af_packet"\} (\S+)$', scraped, re.M)
    assert packets and float(packets.group(1)) >= 118, scraped
    assert re.search(r'^netwatch_detections_total\{(?=.*tool="vnc")(?=.*role="session").*\} '
                     r'[1-9]', scraped, re.M), scraped
    events = [json.loads(x) for x in eve.read_text(encoding="utf-8").splitlines()]
    ra = [e for e in events if e["event_type"] == "remote_access"]
    assert all(e.get("in_iface") == "nwd1" for e in ra)
    assert ra and ra[-1]["remote_access"]["tool"] == "vnc"
    assert (ra[-1]["src_ip"], ra[-1]["dest_ip"]) == ("10.73.0.1", "10.73.0.2")
    assert any(e["event_type"] == "alert" for e in events)
    final = events[-1]
    assert final["event_type"] == "stats"
    assert final["stats"]["packets"] >= 118  # the capture's 118 frames
    assert final["stats"]["source_received"] >= 118
    assert final["stats"]["source_dropped"] == 0


def _child_pid(pid: int, within: float = 10) -> int:
    """The process ``pid`` started (``timeout`` runs netwatch as its child)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise AssertionError("netwatch did not start")


def test_netwatch_run_as_root_drops_to_a_user_with_cap_net_raw_only(veth: str) -> None:
    import pwd
    import tempfile

    from netwatch.service import CAP_NET_RAW, capabilities

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run as")
    # Not under pytest's private tmp folder: the user must reach the state folder.
    work = Path(tempfile.mkdtemp(prefix="nwd-priv-", dir="/tmp"))
    try:
        work.chmod(0o755)
        household = work / "household.yaml"
        household.write_text(HOUSEHOLD, encoding="utf-8")
        err = work / "stderr.txt"
        with _netwatch_run(veth, ["--interface", "nwd1", "--household", str(household),
                                  "--state-dir", str(work / "state"), "--eve-log",
                                  str(work / "eve.json"), "--metrics-listen", "off",
                                  "--control-listen", "off", "--user", "nobody"], err) as proc:
            _wait_for(err, "ready: capturing on nwd1", proc, 20)
            pid = _child_pid(proc.pid)
            status = Path(f"/proc/{pid}/status").read_text()
            uid_line = next(x for x in status.splitlines() if x.startswith("Uid:"))
            effective, permitted = capabilities(pid)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=10)
        assert "running as nobody with CAP_NET_RAW only" in err.read_text()
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
        assert (effective, permitted) == (1 << CAP_NET_RAW, 1 << CAP_NET_RAW)
        assert rc == 0, err.read_text()
        assert (work / "state" / "history.json").stat().st_uid == nobody.pw_uid
    finally:
        shutil.rmtree(work, ignore_errors=True)
