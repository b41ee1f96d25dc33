"""A small home network in network namespaces, for the live blocking tests and benchmark.

```
nwb-pc (the household PC)      nwb-r (the router: netwatch's table, DNS)     nwb-net ("internet")
10.77.1.2  ── veth ──  10.77.1.1        10.77.2.1  ── veth ──  10.77.2.2
```

The router forwards between the two; a DNS responder on 10.77.1.1:53 answers every A query
with 10.77.2.2; a stand-in for OpenWrt's fw4 (``inet fw4`` with a chain and a counter rule)
sits beside netwatch's table. Everything started here is bounded by ``timeout``. Names,
addresses and X displays: the ``nwb-`` prefix, 10.77.0.0/16, :50-:59 by default; another
test file makes its own lab with ``Lab(prefix, base)`` (its names and /16 in place of these).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PC, ROUTER, NET = "nwb-pc", "nwb-r", "nwb-net"
PC_IP, ROUTER_LAN, ROUTER_WAN, NET_IP = "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2"
# An "internet" resolver the router's own resolv.conf names (ip netns exec bind-mounts
# /etc/netns/<ns>/resolv.conf): the safety rules must protect it.
UPSTREAM_DNS = "10.77.2.53"
REPO = Path(__file__).resolve().parent.parent
NETWATCH = [sys.executable, "-m", "netwatch"]
# Every helper process ends by itself after this long, whatever happens to the test.
LIFETIME_S = 120

FW4 = """table inet fw4 {
  chain input {
    type filter hook input priority filter; policy accept;
    ct state established,related counter accept
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    tcp dport 22 counter accept
  }
}
"""

DNS_RESPONDER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
answer = socket.inet_aton(sys.argv[2])
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    end = q.index(b"\0", 12) + 5
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:end]
             + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + answer, peer)
"""


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check,
                          timeout=timeout)


def ns(name: str, *args: str, check: bool = True,
       timeout: float = 30) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", name, *args, check=check, timeout=timeout)


def bg(name: str, *args: str, env: dict[str, str] | None = None,
       lifetime: float = LIFETIME_S, **kw: object) -> subprocess.Popen:
    """A process in namespace ``name`` that ends by itself after ``lifetime`` seconds."""
    return subprocess.Popen(["ip", "netns", "exec", name, "timeout", str(int(lifetime)),
                             *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def stop(p: subprocess.Popen) -> None:
    """End a process started by ``bg``: SIGTERM to ``timeout``, which passes it on to the
    program (a SIGKILL would leave the program running without its time limit)."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def why_not(prefix: str = "nwb") -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    for tool in ("ip", "nft", "conntrack", "timeout"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"{prefix}-probe"
    try:
        sh("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as e:
        return f"cannot make a network namespace: {getattr(e, 'stderr', e)}"
    try:
        p = ns(probe, "nft", "add", "table", "inet", "nwbprobe", check=False)
        if p.returncode != 0:
            return f"the kernel lacks nftables in a network namespace: {p.stderr.strip()}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


class Lab:
    """The three namespaces, named ``PREFIX-pc``, ``PREFIX-r`` and ``PREFIX-net``, with
    addresses in ``BASE.0.0/16`` (the module's constants are the default lab's)."""

    def __init__(self, prefix: str = "nwb", base: str = "10.77") -> None:
        self.procs: list[subprocess.Popen] = []
        self.prefix = prefix
        self.pc, self.router, self.net = f"{prefix}-pc", f"{prefix}-r", f"{prefix}-net"
        self.pc_ip, self.router_lan = f"{base}.1.2", f"{base}.1.1"
        self.router_wan, self.net_ip = f"{base}.2.1", f"{base}.2.2"
        self.upstream_dns = f"{base}.2.53"
        # veth ends: PC side, router's LAN side, router's WAN side, internet side.
        self.pc_if, self.lan_if, self.wan_if, self.net_if = (f"{prefix}-{x}" for x in "abcd")

    def up(self) -> Lab:
        self.down()
        for n in (self.pc, self.router, self.net):
            sh("ip", "netns", "add", n)
            ns(n, "ip", "link", "set", "lo", "up")
        for a, b, na, nb in ((self.pc_if, self.lan_if, self.pc, self.router),
                             (self.wan_if, self.net_if, self.router, self.net)):
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", a, "netns", na)
            sh("ip", "link", "set", b, "netns", nb)
        for n, dev, addr in ((self.pc, self.pc_if, self.pc_ip),
                             (self.router, self.lan_if, self.router_lan),
                             (self.router, self.wan_if, self.router_wan),
                             (self.net, self.net_if, self.net_ip)):
            ns(n, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            ns(n, "ip", "link", "set", dev, "up")
        ns(self.net, "ip", "addr", "add", f"{self.upstream_dns}/24", "dev", self.net_if)
        ns(self.pc, "ip", "route", "add", "default", "via", self.router_lan)
        ns(self.net, "ip", "route", "add", "default", "via", self.router_wan)
        ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        etc = Path("/etc/netns") / self.router
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {self.upstream_dns}\n")
        subprocess.run(["ip", "netns", "exec", self.router, "nft", "-f", "-"], input=FW4,
                       text=True, check=True, capture_output=True, timeout=30)
        self.procs.append(bg(self.router, sys.executable, "-c", DNS_RESPONDER,
                             self.router_lan, self.net_ip))
        wait_for(lambda: self.dns_works(), 5)
        return self

    def down(self) -> None:
        for p in self.procs:
            stop(p)
        self.procs.clear()
        for n in (self.pc, self.router, self.net):
            sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(Path("/etc/netns") / self.router, ignore_errors=True)

    # -- probes

    def dns_works(self) -> bool:
        """An A query from the PC to the router's resolver gets its answer."""
        probe = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                 "s.settimeout(1)\n"
                 "s.sendto(bytes.fromhex('abcd01000001000000000000')+b'\\x07example\\x03lan"
                 "\\x00\\x00\\x01\\x00\\x01',('" + self.router_lan + "',53))\n"
                 "print(s.recv(512).hex())")
        p = ns(self.pc, sys.executable, "-c", probe, check=False, timeout=10)
        return p.returncode == 0 and p.stdout.strip().endswith(
            socket.inet_aton(self.net_ip).hex())

    def router_answers(self) -> bool:
        return ns(self.pc, "ping", "-c", "1", "-W", "1", self.router_lan,
                  check=False).returncode == 0

    def connects(self, src_ns: str, ip: str, port: int) -> bool:
        """Whether a new TCP connection from ``src_ns`` to ip:port is accepted."""
        probe = (f"import socket,sys\ntry:\n socket.create_connection(('{ip}',{port}),"
                 "timeout=2)\nexcept OSError as e:\n print(e); sys.exit(1)")
        return ns(src_ns, sys.executable, "-c", probe, check=False, timeout=10).returncode == 0

    def established(self, name: str, port: int) -> int:
        """Established TCP connections on ``port`` (either end) in namespace ``name``."""
        out = ns(name, "ss", "-Htn", "state", "established",
                 f"( sport = :{port} or dport = :{port} )", check=False).stdout
        return len([ln for ln in out.splitlines() if ln.strip()])

    def fw4(self) -> list:
        out = ns(self.router, "nft", "-j", "list", "table", "inet", "fw4").stdout
        items = [o for o in json.loads(out)["nftables"] if "metainfo" not in o]
        for o in items:  # counters move with traffic; the rules themselves must not
            for expr in o.get("rule", {}).get("expr", []):
                expr.pop("counter", None)
        return items

    def netwatch(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """``netwatch ARGS`` run on the router."""
        return ns(self.router, *NETWATCH, *args, check=check, timeout=60)


# A long-lived TCP session between two real programs: the server on the PC sends a byte
# every 100 ms, the client on the internet only reads (like a viewer waiting for updates);
# each prints how its connection ended.
SERVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
while True:
    c, _ = s.accept()
    try:
        while True:
            c.send(b"x"); time.sleep(0.1)
    except OSError as e:
        print("server:", e.strerror, flush=True)
"""
CLIENT = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("connected", flush=True)
try:
    while c.recv(100):
        pass
    print("client: closed", flush=True)
except OSError as e:
    print("client:", e.strerror, time.time(), flush=True)
"""


VNC_TOOLS = ("Xvfb", "xclock", "x11vnc", "vncviewer")


def vnc_server(lab: Lab, display: int, port: int = 5900, lifetime: float = 60) -> None:
    """x11vnc on an Xvfb screen (with a ticking clock, so the screen keeps changing) on the
    PC, accepting connections; its processes are in ``lab.procs``."""
    assert not Path(f"/tmp/.X11-unix/X{display}").exists(), f"X display :{display} is in use"
    lab.procs.append(bg(lab.pc, "Xvfb", f":{display}", "-screen", "0", "800x600x24",
                        "-nolisten", "tcp", lifetime=lifetime))
    assert wait_for(lambda: Path(f"/tmp/.X11-unix/X{display}").exists(), 10)
    lab.procs.append(bg(lab.pc, "xclock", "-update", "1", env={"DISPLAY": f":{display}"},
                        lifetime=lifetime))
    lab.procs.append(bg(lab.pc, "x11vnc", "-display", f":{display}", "-rfbport", str(port),
                        "-listen", lab.pc_ip, "-nopw", "-forever", "-shared", "-noxdamage",
                        "-nolookup", "-no6", "-quiet", lifetime=lifetime))
    assert wait_for(lambda: lab.connects(lab.net, lab.pc_ip, port), 15), "x11vnc did not start"


def vnc_screen(lab: Lab, display: int, lifetime: float = 60) -> None:
    """An Xvfb screen on the internet side for the viewer."""
    assert not Path(f"/tmp/.X11-unix/X{display}").exists(), f"X display :{display} is in use"
    lab.procs.append(bg(lab.net, "Xvfb", f":{display}", "-screen", "0", "1024x768x24",
                        "-nolisten", "tcp", lifetime=lifetime))
    assert wait_for(lambda: Path(f"/tmp/.X11-unix/X{display}").exists(), 10)


def vnc_viewer(lab: Lab, display: int, home: Path, port: int = 5900,
               lifetime: float = 60) -> subprocess.Popen:
    """TigerVNC's viewer on the internet side's screen ``display``, connecting to the PC."""
    viewer = bg(lab.net, "vncviewer", "SecurityTypes=None", f"{lab.pc_ip}::{port}",
                env={"DISPLAY": f":{display}", "HOME": str(home)}, lifetime=lifetime)
    lab.procs.append(viewer)
    return viewer


def vnc_session(lab: Lab, displays: tuple[int, int], home: Path, port: int = 5900,
                lifetime: float = 60) -> subprocess.Popen:
    """A real VNC session across the router (``vnc_server`` on the PC's display, the viewer
    on the internet's), connected. Returns the viewer."""
    vnc_server(lab, displays[0], port, lifetime)
    vnc_screen(lab, displays[1], lifetime)
    viewer = vnc_viewer(lab, displays[1], home, port, lifetime)
    assert wait_for(lambda: lab.established(lab.net, port) >= 1, 15), \
        "the viewer did not connect"
    return viewer


@contextlib.contextmanager
def netwatch_run(ns: str, args: list[str], err: Path, env: dict[str, str] | None = None
                 ) -> Iterator[subprocess.Popen[str]]:
    """``netwatch run ARGS`` in the namespace (bounded by timeout), standard error to
    ``err``; killed with its group at the end if still running (a failed test too)."""
    with open(err, "w", encoding="utf-8") as err_fh:
        # ip execs timeout, which leads a process group of its own with netwatch in it.
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "timeout", "60", sys.executable,
                                 "-m", "netwatch", "run", *args],
                                stderr=err_fh, stdout=subprocess.DEVNULL, text=True, cwd=REPO,
                                env={**os.environ, **(env or {})})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                # The whole group: killing timeout alone would leave netwatch running.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[str], within: float) -> str:
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


def wait_for(cond, seconds: float, step: float = 0.05) -> bool:  # noqa: ANN001
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()
