"""A small home network in network namespaces, for the live tests and the live benchmark.

    household PC ── lan0 │ router │ wan0 ── "internet"
     10.76.1.2     10.76.1.1   10.76.2.1    10.76.2.2

Three namespaces made for the run (``nwt-pc-TAG``, ``nwt-rt-TAG``, ``nwt-in-TAG``), joined by
two veth pairs created directly inside them (nothing in the machine's own namespace). The
router forwards between its two sides; the PC and the internet host route through it.
Offloads are off on every veth, as in tests/pcaps/recorded/record.sh: segments on the wire
look like a 1500-byte link instead of 64 KiB veth super-packets, with valid checksums.

Every program runs under ``timeout`` inside one of the namespaces, in its own process
group; ``close()`` ends them by process group, then whatever is left inside the namespaces
(all of it started here), then deletes the namespaces. It is safe to call twice and is
meant for a finalizer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "nwt-"
# More addresses of the household PC: a session from each is a session of its own (the
# session tracker keys sessions by tool and device address).
PC_MORE_IPS = ["10.76.1.3"] + [f"10.76.1.{n}" for n in range(10, 30)]
PC_IP, ROUTER_LAN_IP, ROUTER_WAN_IP, INET_IP = "10.76.1.2", "10.76.1.1", "10.76.2.1", "10.76.2.2"
LAN_NET, WAN_NET = "10.76.1.0/24", "10.76.2.0/24"
LAN_IF, WAN_IF, PC_IF, INET_IF = "lan0", "wan0", "eth0", "eth0"
# X displays this harness may use (the live tests' share of the machine's displays).
DISPLAYS = range(60, 70)
# Longest any one program started here may live, whatever the caller asks: a stuck test
# cannot leave a server behind for longer than this.
MAX_LIFETIME_S = 900
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """The namespaces or one of their programs could not be set up."""


def _run(cmd: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def _must(cmd: Sequence[str], timeout: float = 20) -> str:
    res = _run(cmd, timeout)
    if res.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()}")
    return res.stdout


def unavailable() -> str | None:
    """Why namespaces cannot be made here (for a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    probe = f"{PREFIX}probe-{os.getpid()}"
    res = _run(["ip", "netns", "add", probe])
    if res.returncode != 0:
        return f"the kernel refuses a network namespace: {res.stderr.strip()}"
    _run(["ip", "netns", "del", probe])
    return None


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """The calling thread in namespace ``ns`` for the block: sockets made inside stay there
    (a receiver bound in the router's namespace keeps listening there after the block)."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns}") as there:
        if _libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            raise LabError(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise LabError(f"setns back: {os.strerror(ctypes.get_errno())}")


@dataclass
class Proc:
    """A program started in a namespace: its Popen and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def program_pid(self) -> int | None:
        """The program's own pid: below ``ip netns exec`` (which execs) and ``timeout``."""
        pid = self.popen.pid
        for _ in range(3):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                return None
            if comm not in ("ip", "timeout"):
                return pid
            kids = _children(pid)
            if not kids:
                return None
            pid = kids[0]
        return pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the program itself (``timeout`` passes on only the signals it
        is sent itself, and ends the program when its time is up)."""
        pid = self.program_pid()
        if pid is None:
            raise LabError(f"{self.name} is not running")
        os.kill(pid, sig)

    def stop(self, grace: float = 3.0) -> int | None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


@dataclass
class Lab:
    """The three namespaces and everything started in them."""

    workdir: Path
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}")
    procs: list[Proc] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    displays: list[int] = field(default_factory=list)

    @property
    def pc(self) -> str:
        return f"{PREFIX}pc-{self.tag}"

    @property
    def router(self) -> str:
        return f"{PREFIX}rt-{self.tag}"

    @property
    def inet(self) -> str:
        return f"{PREFIX}in-{self.tag}"

    # -- set-up ------------------------------------------------------------------------

    def up(self) -> Lab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for ns in (self.pc, self.router, self.inet):
            _must(["ip", "netns", "add", ns])
            self.made.append(ns)
            self.sh(ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                        "net.ipv6.conf.default.disable_ipv6=1; ip link set lo up")
        _must(["ip", "link", "add", PC_IF, "netns", self.pc, "type", "veth",
               "peer", "name", LAN_IF, "netns", self.router])
        _must(["ip", "link", "add", INET_IF, "netns", self.inet, "type", "veth",
               "peer", "name", WAN_IF, "netns", self.router])
        self.sh(self.pc, f"ip addr add {PC_IP}/24 dev {PC_IF}; ip link set {PC_IF} up; "
                         f"ip route add default via {ROUTER_LAN_IP}")
        self.sh(self.inet, f"ip addr add {INET_IP}/24 dev {INET_IF}; ip link set {INET_IF} up; "
                           f"ip route add {LAN_NET} via {ROUTER_WAN_IP}")
        self.sh(self.router, f"ip addr add {ROUTER_LAN_IP}/24 dev {LAN_IF}; "
                             f"ip addr add {ROUTER_WAN_IP}/24 dev {WAN_IF}; "
                             f"ip link set {LAN_IF} up; ip link set {WAN_IF} up; "
                             "sysctl -qw net.ipv4.ip_forward=1")
        for ns, dev in ((self.pc, PC_IF), (self.router, LAN_IF), (self.router, WAN_IF),
                        (self.inet, INET_IF)):
            self.offloads_off(ns, dev)
        self.sh(self.pc, f"ping -c1 -W2 {INET_IP} >/dev/null")
        return self

    def pc_source(self, ip: str) -> None:
        """The PC's connections to the internet host leave from ``ip`` (one of PC_IP and
        PC_MORE_IPS, added to its interface on first use)."""
        if ip != PC_IP and ip not in self.sh(self.pc, f"ip -4 -o addr show dev {PC_IF}"):
            self.sh(self.pc, f"ip addr add {ip}/24 dev {PC_IF}")
        self.sh(self.pc, f"ip route replace {INET_IP} via {ROUTER_LAN_IP} src {ip}")

    def offloads_off(self, ns: str, dev: str) -> None:
        # ethtool may lack a feature on an old kernel; what it can switch off is enough.
        _run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
              "gro", "off", "tx", "off", "rx", "off"])

    def sh(self, ns: str, script: str, timeout: float = 20) -> str:
        """A short shell command in ``ns``; its output, or LabError."""
        return _must(["ip", "netns", "exec", ns, "timeout", "-k", "2", str(int(timeout)),
                      "sh", "-ec", script], timeout=timeout + 5)

    def run(self, ns: str, cmd: Sequence[str], timeout: float = 20,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A program in ``ns`` to its end (bounded by ``timeout``)."""
        return subprocess.run(
            ["ip", "netns", "exec", ns, "timeout", "-k", "2", str(int(timeout)), *cmd],
            capture_output=True, text=True, timeout=timeout + 5,
            env={**os.environ, **(env or {})})

    def start(self, ns: str, name: str, cmd: Sequence[str], lifetime: float = 120,
              env: dict[str, str] | None = None) -> Proc:
        """A program in ``ns`` in the background, ended by ``timeout`` after ``lifetime``
        seconds at the latest; standard output and error go to WORKDIR/NAME.log."""
        log = self.workdir / f"{name}.log"
        secs = str(int(min(lifetime, MAX_LIFETIME_S)))
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", ns, "timeout", "-k", "2", secs, *cmd],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})})
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    # -- waiting -----------------------------------------------------------------------

    def wait_for(self, what: str, check: object, within: float = 15,
                 proc: Proc | None = None) -> None:
        """Poll ``check()`` until true; LabError naming ``what`` (and the program's output)
        when it is not true within ``within`` seconds or the program ended."""
        assert callable(check)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if check():
                return
            if proc is not None and not proc.alive():
                break
            time.sleep(0.05)
        tail = f"\n--- {proc.name} ---\n{proc.output()[-3000:]}" if proc else ""
        raise LabError(f"{what}: not within {within:g} s{tail}")

    def listening(self, ns: str, port: int, ip: str | None = None) -> bool:
        """A TCP listener on ``port`` (on ``ip`` itself when given: another program may
        listen on the same port of another address)."""
        where = f"src {ip}:{port}" if ip else f"sport = :{port}"
        res = _run(["ip", "netns", "exec", ns, "ss", "-Hltn", where])
        return bool(res.stdout.strip())

    def wait_port(self, ns: str, port: int, proc: Proc | None = None,
                  within: float = 15, ip: str | None = None) -> None:
        self.wait_for(f"a listener on port {port} in {ns}",
                      lambda: self.listening(ns, port, ip), within, proc)

    # -- X displays --------------------------------------------------------------------

    def xvfb(self, ns: str, geometry: str = "1024x768x24", lifetime: float = 120) -> int:
        """An Xvfb on the first free display of DISPLAYS; its number."""
        for d in DISPLAYS:
            if d in self.displays or Path(f"/tmp/.X{d}-lock").exists() \
                    or Path(f"/tmp/.X11-unix/X{d}").exists():
                continue
            self.displays.append(d)
            proc = self.start(ns, f"xvfb{d}", ["Xvfb", f":{d}", "-screen", "0", geometry,
                                               "-nolisten", "tcp", "-noreset"], lifetime)
            self.wait_for(f"Xvfb :{d}", lambda d=d: Path(f"/tmp/.X11-unix/X{d}").exists(),
                          10, proc)
            return d
        raise LabError(f"no free X display in :{DISPLAYS.start}-:{DISPLAYS.stop - 1}")

    def free_display(self) -> int:
        """A display number of DISPLAYS nobody uses, reserved for a server this lab starts
        by other means (xrdp's session)."""
        for d in reversed(DISPLAYS):
            if d not in self.displays and not Path(f"/tmp/.X{d}-lock").exists():
                self.displays.append(d)
                return d
        raise LabError("no free X display")

    # -- tear-down ---------------------------------------------------------------------

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=2)
        for ns in self.made:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = _run(["ip", "netns", "pids", ns]).stdout.split()
                for pid in pids:  # everything in our own namespaces was started here
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), sig)
                if pids:
                    time.sleep(0.5)
            _run(["ip", "netns", "del", ns])
        self.made.clear()
        self.procs.clear()


def free_port(ns: str) -> int:
    """A TCP port nothing listens on in ``ns``."""
    with inside(ns), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
