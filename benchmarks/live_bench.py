"""The live benchmark: ``netwatch run`` on a router in network namespaces (tests/netns.py).

    bash run.sh live-bench [--packets N] [--sessions N] [--long] [--memory-pps N]

Three measurements, each against real traffic on the router's LAN-side veth:

throughput   The home mix (netwatch bench's generator), its IPv4 packets with their
             addresses rewritten into the namespaces' range (tcprewrite), sent with
             tcpreplay from the PC's side. The highest rate (bisection over tcpreplay --pps)
             at which ``netwatch run --source af_packet`` loses under 0.1 % of the packets,
             and the same for ``ndpiReader -i`` on the same veth in the same run (the two
             capture in turn, never at once, so each has the machine's two cores). Then
             both at one rate neither loses packets at (--same-rate), in turn (--pairs):
             CPU per packet read, a capacity measure the sender's ceiling does not cap.
time to alert  Real VNC sessions (TigerVNC's viewer on the PC, x11vnc across the router): from
             the first SYN on the wire (tcpdump on the router) to the alert arriving at the
             ntfy-compatible receiver; p50 and p95.
memory       Peak RSS of ``netwatch run`` over a long replay at full speed (--long: 10
             million packets; otherwise the mix once), sampled from /proc as it goes.

The capture buffers differ unless asked: ``netwatch run`` uses its ``ring_mib`` (16 MiB by
default; ``--ring-mib N`` sets it for this run), ``ndpiReader -i`` libpcap's default buffer
(a 2 MiB TPACKET_V3 ring, blocks handed over after at most 500 ms: ndpiReader opens the
interface with pcap_open_live and a 500 ms timeout, and sets no buffer size).

Needs root (namespaces) and the programs ``bash run.sh test`` installs; prints a table and
writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import realprograms as rp  # noqa: E402
from livedaemon import NetwatchRun, household_text, metric_value, receiver, wall_clock  # noqa: E402
from netns import (  # noqa: E402
    INET_IP,
    LAN_IF,
    PC_IF,
    PC_MORE_IPS,
    Lab,
    LabError,
    Proc,
    unavailable,
)

from netwatch.bench import make_mix  # noqa: E402

# The loss a capture may show at a rate it "keeps up with" (the benchmark's definition).
MAX_LOSS = 0.001
# Bisection steps over the rate: 2^-7 of the top rate is finer than the run-to-run noise of
# this 2-core machine.
BISECT_STEPS = 7
# A trial's packets: long enough that the socket's buffer cannot hide a backlog.
TRIAL_PACKETS = 200_000
# The rate at which both tools' CPU per packet is compared: well under what either keeps
# up with here, so neither loses packets and the sender is not at its ceiling.
SAME_RATE = 100_000.0
# Trials at that rate, each tool in turn: pairs taken close in time, so that the ratio of
# each pair holds while the machine's speed drifts (the run-to-run spread of one tool's
# CPU per packet is larger than the difference being measured).
SAME_RATE_PAIRS = 5
# The mix's home network and everything else, mapped into the namespaces' own range, away
# from the lab's own addresses (10.76.1.0/24, 10.76.2.0/24).
PNAT = "192.168.0.0/16:10.76.64.0/18,0.0.0.0/0:10.76.128.0/17"
# Messages to one ntfy topic the outbox sends in an hour (netwatch/outbox.py's default);
# the time-to-alert sessions move to a fresh topic (a household reload) before reaching it.
TOPIC_BUDGET = 10
# Messages one timed session sends: "connecting" (warning), then "in control" (critical)
# once the viewer's traffic makes the session active.
MESSAGES_PER_SESSION = 2
# Sessions timed on one topic: one message to spare, for the previous topic's last session,
# whose second message may be queued after the move.
SESSIONS_PER_TOPIC = (TOPIC_BUDGET - 1) // MESSAGES_PER_SESSION
# The PC's addresses the timed sessions come from, one each (sessions are per address).
SESSION_IPS = PC_MORE_IPS[1:]


@dataclass
class Trial:
    pps_asked: float
    pps_sent: float
    sent: int
    seen: int
    drops: int
    cpu_s: float = 0.0  # the capturing process's CPU time (user + system) while it ran
    sys_s: float = 0.0  # of which system (the kernel, on its behalf)

    @property
    def cpu_us_per_packet(self) -> float:
        return self.cpu_s * 1e6 / self.seen if self.seen else 0.0

    @property
    def loss(self) -> float:
        lost = max(self.drops, self.sent - self.seen)
        return lost / self.sent if self.sent else 1.0


@dataclass
class Result:
    packets_in_mix: int = 0
    top_pps: float = 0.0
    netwatch_pps: float = 0.0
    ndpi_pps: float = 0.0
    netwatch_trials: list[dict[str, Any]] = field(default_factory=list)
    ndpi_trials: list[dict[str, Any]] = field(default_factory=list)
    # Both at the same offered rate (--same-rate): CPU per packet read, the capacity
    # measure that does not depend on how fast this machine can send.
    same_rate_pps: float = 0.0
    netwatch_same: dict[str, Any] = field(default_factory=dict)  # the median pair's
    ndpi_same: dict[str, Any] = field(default_factory=dict)
    same_pairs: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    alert_seconds: list[float] = field(default_factory=list)
    alert_p50: float = 0.0
    alert_p95: float = 0.0
    rss_kib: list[tuple[int, int]] = field(default_factory=list)  # (packets read, RSS)
    memory_pps: float = 0  # the memory run's sending rate (0: full speed)
    rss_peak_kib: int = 0
    ring_mib: int = 16  # netwatch run's ring (ndpiReader's is libpcap's default, 2 MiB)


# -- the replay file ----------------------------------------------------------------------

def prepare(packets: int, workdir: Path) -> tuple[Path, int]:
    """The home mix's IPv4 packets with addresses in the namespaces' range, and how many."""
    mix, _truth = make_mix(packets, 1, workdir)
    out = workdir / f"live-{packets}.pcap"
    if not out.exists():
        v4 = workdir / f"v4-{packets}.pcap"
        subprocess.run(["tcpdump", "-r", str(mix), "-w", str(v4), "ip"], check=True,
                       capture_output=True, timeout=600)
        subprocess.run(["tcprewrite", f"--pnat={PNAT}", "-i", str(v4), "-o", str(out)],
                       check=True, capture_output=True, timeout=600)
        v4.unlink()
    count = subprocess.run(["tcpdump", "-r", str(out), "-n", "-q", "-t"], capture_output=True,
                           text=True, timeout=600).stdout.count("\n")
    return out, count


def cut(pcap: Path, packets: int) -> Path:
    out = pcap.with_name(f"{pcap.stem}-first{packets}.pcap")
    if not out.exists():
        subprocess.run(["tcpdump", "-r", str(pcap), "-c", str(packets), "-w", str(out)],
                       check=True, capture_output=True, timeout=600)
    return out


def tcpreplay(lab: Lab, pcap: Path, pps: float | None, loops: int = 1) -> tuple[int, float]:
    """Send ``pcap`` from the PC's side; packets sent and the rate tcpreplay achieved."""
    rate = ["--topspeed"] if pps is None else [f"--pps={pps:.0f}"]
    res = lab.run(lab.pc, ["tcpreplay", "-i", PC_IF, "-K", "-q", f"--loop={loops}", *rate,
                           str(pcap)], timeout=3600)
    sent = re.search(r"Actual: (\d+) packets", res.stdout)
    rated = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", res.stdout)
    if not sent or not rated:
        raise LabError(f"tcpreplay: {res.stdout[-500:]} {res.stderr[-500:]}")
    return int(sent.group(1)), float(rated.group(1))


# -- the two captures ---------------------------------------------------------------------

def _settled(read: Any, quiet_s: float = 1.0, within: float = 60) -> Any:
    """``read()`` once it has stopped changing for ``quiet_s`` (the capture caught up)."""
    last = read()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = read()
        if now == last:
            return now
        last = now
    return last


def netwatch_counts(daemon: NetwatchRun) -> tuple[int, int]:
    text = daemon.metrics()
    return (int(metric_value(text, "netwatch_packets_total")),
            int(metric_value(text, "netwatch_kernel_dropped_packets_total")))


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """User + system CPU time of process ``pid`` (all its threads), and system time alone,
    from /proc."""
    if pid is None:
        return 0.0, 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick


def _cpu_settled(pid: int | None, step_s: float = 0.5, idle_s: float = 0.01,
                 within: float = 60) -> tuple[float, float]:
    """``cpu_seconds(pid)`` once the process has stopped working: less than ``idle_s`` of
    CPU in ``step_s`` (the daemon idles at a few ms a second)."""
    last = cpu_seconds(pid)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(step_s)
        now = cpu_seconds(pid)
        if now[0] - last[0] < idle_s:
            return now
        last = now
    return last


def trial_netwatch(lab: Lab, daemon: NetwatchRun, pcap: Path, pps: float | None) -> Trial:
    """One trial. Its CPU time is read when the daemon has gone idle, before the counts
    are read from /metrics: the benchmark's own scrapes (a few ms each) are not the
    traffic's cost."""
    assert daemon.proc is not None
    pid = daemon.proc.program_pid()
    seen0, drops0 = _settled(lambda: netwatch_counts(daemon))
    cpu0, sys0 = _cpu_settled(pid)
    sent, rate = tcpreplay(lab, pcap, pps)
    cpu1, sys1 = _cpu_settled(pid)
    seen1, drops1 = _settled(lambda: netwatch_counts(daemon))
    return Trial(pps or rate, rate, sent, seen1 - seen0, drops1 - drops0, cpu1 - cpu0,
                 sys1 - sys0)


def trial_ndpi(lab: Lab, pcap: Path, pps: float | None) -> Trial:
    # stdbuf: ndpiReader's "Running thread" line says it captures; unbuffered, it is seen
    nd = lab.start(lab.router, "ndpiReader",
                   ["stdbuf", "-oL", "ndpiReader", "-i", LAN_IF, "-s", "3000"], 3600)
    lab.wait_for("ndpiReader capturing", lambda: "Running thread" in nd.output(), 20, nd)
    time.sleep(0.5)
    pid = nd.program_pid()
    cpu0, sys0 = cpu_seconds(pid)
    sent, rate = tcpreplay(lab, pcap, pps)
    time.sleep(1.0)
    cpu1, sys1 = cpu_seconds(pid)
    nd.signal(signal.SIGINT)
    nd.popen.wait(120)
    out = nd.output()
    total = re.search(r"of (\d+) packets total", out)
    dropped = re.search(r"[Dd]ropped[^\d]*(\d+)", out)
    if not total:
        raise LabError(f"ndpiReader's figures not found:\n{out[-2000:]}")
    return Trial(pps or rate, rate, sent, int(total.group(1)),
                 int(dropped.group(1)) if dropped else 0, cpu1 - cpu0, sys1 - sys0)


def highest_rate(run_trial: Any, top: float, log: list[dict[str, Any]], name: str) -> float:
    """The highest rate at which ``run_trial(pps)`` loses under MAX_LOSS: full speed first,
    then a bisection between 0 and ``top`` (tcpreplay's full speed with nobody capturing),
    or the full speed of that first trial when it was faster. The rate is the one tcpreplay
    achieved, which is below the one asked when the machine is busy."""
    best = 0.0

    def attempt(pps: float | None) -> bool:
        nonlocal best
        t = run_trial(pps)
        log.append(asdict(t) | {"loss": t.loss})
        asked = "full speed" if pps is None else f"{pps:,.0f} pps asked"
        print(f"  {name}: {asked}, {t.pps_sent:,.0f} sent, loss {t.loss:.3%} "
              f"({t.sent:,} sent, {t.seen:,} read, {t.drops:,} kernel drops; "
              f"CPU {t.cpu_us_per_packet:.2f} us/packet, {t.sys_s / t.cpu_s if t.cpu_s else 0:.0%}"
              " of it system)", file=sys.stderr)
        if t.loss < MAX_LOSS:
            best = max(best, t.pps_sent)
            return True
        return False

    if attempt(None):
        return best
    lo, hi = 0.0, max(top, log[-1]["pps_sent"])
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        if attempt(mid):
            lo = mid
        else:
            hi = mid
    return best


# -- time to alert ------------------------------------------------------------------------

def syn_times(pcap: Path) -> list[float]:
    out = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-tt",
                          "tcp[tcpflags] == tcp-syn"], capture_output=True, text=True,
                         timeout=60).stdout
    return [float(line.split()[0]) for line in out.splitlines() if line.strip()]


def time_to_alert(lab: Lab, daemon: NetwatchRun, ntfy: Any, household: Path,
                  sessions: int) -> list[float]:
    """Seconds from each VNC session's SYN to its first message at the receiver."""
    rp.VncServer(lab, lab.inet, INET_IP, lifetime=sessions * 20 + 60).start()
    viewer = rp.VncViewer(lab, lab.pc).start()
    syns = lab.workdir / "syns.pcap"
    cap = lab.start(lab.router, "tcpdump-syns", [
        "tcpdump", "-i", LAN_IF, "-n", "-U", "-w", str(syns),
        f"tcp dst port {rp.VNC_PORT} and tcp[tcpflags] == tcp-syn"], sessions * 20 + 60)
    lab.wait_for("tcpdump listening", lambda: "listening" in cap.output(), 10, cap)
    arrivals: list[float] = []
    sources = SESSION_IPS * (1 + sessions // len(SESSION_IPS))
    for k in range(sessions):
        if k and k % SESSIONS_PER_TOPIC == 0:
            # A fresh topic before the outbox's hourly limit per topic holds a message back.
            household.write_text(household_text(ntfy.url(topic=f"bench-{k}")))
            assert daemon.proc is not None
            daemon.proc.signal(signal.SIGHUP)
            time.sleep(1.0)
        # Each session from another address of the PC: a new session, so a new alert.
        lab.pc_source(sources[k])
        before = len(ntfy.accepted)
        proc = viewer.open(INET_IP, f"vncviewer-{k}", 60)
        lab.wait_for(f"session {k}'s alert", lambda b=before: len(ntfy.accepted) > b, 30)
        arrivals.append(wall_clock(ntfy.accepted[before].at))
        proc.stop()
    time.sleep(0.5)
    cap.signal(signal.SIGINT)
    cap.popen.wait(10)
    starts = syn_times(syns)
    if len(starts) < sessions:
        raise LabError(f"{len(starts)} SYNs captured for {sessions} sessions")
    return [arrive - start for start, arrive in zip(starts, arrivals)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- memory -------------------------------------------------------------------------------

def rss_kib(proc: Proc) -> int:
    pid = proc.program_pid()
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(lab: Lab, daemon: NetwatchRun, pcap: Path, loops: int, result: Result,
           pps: float = 0) -> None:
    """RSS of netwatch run, sampled every second while ``pcap`` is sent ``loops`` times at
    ``pps`` (0: full speed), against the packets it has read; and its peak (VmHWM). A
    sender faster than netwatch makes the kernel drop what it cannot take: the packets
    read, not those sent, are what fills its tables."""
    assert daemon.proc is not None
    pid = daemon.proc.program_pid()
    rate = [f"--pps={pps:.0f}"] if pps else ["--topspeed"]
    result.memory_pps = pps
    sender = lab.start(lab.pc, "tcpreplay-long", [
        "tcpreplay", "-i", PC_IF, "-q", *rate, f"--loop={loops}", str(pcap)], 7200)
    while sender.alive():
        time.sleep(1.0)
        seen, _drops = netwatch_counts(daemon)
        result.rss_kib.append((seen, rss_kib(daemon.proc)))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            result.rss_peak_kib = int(line.split()[1])
    print(f"  memory: {sender.output().strip()[-300:]}", file=sys.stderr)


# -- the run ------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="size of the home mix")
    ap.add_argument("--trial-packets", type=int, default=TRIAL_PACKETS)
    ap.add_argument("--sessions", type=int, default=20, help="VNC sessions timed to alert")
    ap.add_argument("--same-rate", type=float, default=SAME_RATE,
                    help="pps at which both tools' CPU per packet is compared (0: skip)")
    ap.add_argument("--pairs", type=int, default=SAME_RATE_PAIRS,
                    help="trials of each tool at the same rate, in turn")
    ap.add_argument("--ring-mib", type=int, default=0,
                    help="netwatch run's ring_mib (default: its own default, 16)")
    ap.add_argument("--long", action="store_true",
                    help="memory over 10 million packets (the mix sent repeatedly)")
    ap.add_argument("--memory-pps", type=float, default=0,
                    help="the memory run's sending rate (default: full speed; a sender "
                    "faster than netwatch leaves packets unread)")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["throughput", "alert", "memory"])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "nwt-bench")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    why = unavailable()
    if why:
        print(f"live-bench: {why}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = Result()
    pcap, result.packets_in_mix = prepare(args.packets, args.workdir)
    trial_pcap = cut(pcap, args.trial_packets)
    lab = Lab(Path(tempfile.mkdtemp(prefix="nwt-live-bench-")))
    ntfy = None
    try:
        lab.up()
        ntfy = receiver(lab)
        household = lab.workdir / "household.yaml"
        household.write_text(household_text(ntfy.url(topic="bench-0")))
        extra: list[str] = []
        if args.ring_mib:
            settings = lab.workdir / "netwatch.yaml"
            settings.write_text(f"interface: {LAN_IF}\nring_mib: {args.ring_mib}\n")
            extra = ["--config", str(settings)]
            result.ring_mib = args.ring_mib
        # A daemon of its own for each measurement: fresh flows, state and outbox.
        if "throughput" not in args.skip:
            print("throughput:", file=sys.stderr)
            daemon = NetwatchRun(lab, household, "af_packet", lifetime=7200,
                                 extra=extra, name="throughput").start()
            _, top = tcpreplay(lab, trial_pcap, None)
            result.top_pps = top
            result.netwatch_pps = highest_rate(
                lambda pps: trial_netwatch(lab, daemon, trial_pcap, pps), top,
                result.netwatch_trials, "netwatch")
            daemon.stop()
            result.ndpi_pps = highest_rate(
                lambda pps: trial_ndpi(lab, trial_pcap, pps), top, result.ndpi_trials,
                "ndpiReader")
            if args.same_rate and args.pairs:
                same_rate_pairs(lab, household, extra, trial_pcap, args.same_rate,
                                args.pairs, result)
        if "alert" not in args.skip:
            print("time to alert:", file=sys.stderr)
            daemon = NetwatchRun(lab, household, "af_packet", lifetime=7200,
                                 extra=extra, name="alert").start()
            secs = time_to_alert(lab, daemon, ntfy, household, args.sessions)
            daemon.stop()
            result.alert_seconds = secs
            result.alert_p50 = percentile(secs, 0.50)
            result.alert_p95 = percentile(secs, 0.95)
        if "memory" not in args.skip:
            print("memory:", file=sys.stderr)
            daemon = NetwatchRun(lab, household, "af_packet", lifetime=7200,
                                 extra=extra, name="memory").start()
            loops = max(1, -(-10_000_000 // result.packets_in_mix)) if args.long else 1
            memory(lab, daemon, pcap, loops, result, args.memory_pps)
            daemon.stop()
    finally:
        lab.close()
        if ntfy is not None:
            ntfy.stop()
        if not os.environ.get("NETWATCH_KEEP_LIVE"):
            shutil.rmtree(lab.workdir, ignore_errors=True)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1))
    return 0


def _as_dict(t: Trial) -> dict[str, Any]:
    return asdict(t) | {"loss": t.loss, "cpu_us_per_packet": t.cpu_us_per_packet}


def same_rate_pairs(lab: Lab, household: Path, extra: list[str], pcap: Path, pps: float,
                    pairs: int, result: Result) -> None:
    """Both tools at the same offered rate, in turn, ``pairs`` times. Each netwatch trial
    has a daemon of its own, started before and stopped after, as each ndpiReader trial
    has its own process: both meet the trial's flows for the first time."""
    result.same_rate_pps = pps
    for i in range(pairs):
        daemon = NetwatchRun(lab, household, "af_packet", lifetime=7200, extra=extra,
                             name=f"same-rate-{i}").start()
        mine = _as_dict(trial_netwatch(lab, daemon, pcap, pps))
        daemon.stop()
        theirs = _as_dict(trial_ndpi(lab, pcap, pps))
        result.same_pairs.append((mine, theirs))
        print(f"  at {pps:,.0f} pps: netwatch {mine['cpu_us_per_packet']:.2f} us/packet "
              f"(loss {mine['loss']:.3%}), ndpiReader {theirs['cpu_us_per_packet']:.2f} "
              f"us/packet (loss {theirs['loss']:.3%})", file=sys.stderr)
    ranked = sorted(result.same_pairs, key=_pair_ratio)
    result.netwatch_same, result.ndpi_same = ranked[len(ranked) // 2]


def _pair_ratio(pair: tuple[dict[str, Any], dict[str, Any]]) -> float:
    """ndpiReader's CPU per packet over netwatch's (above 1: netwatch needs less)."""
    mine, theirs = pair
    return (theirs["cpu_us_per_packet"] / mine["cpu_us_per_packet"]
            if mine["cpu_us_per_packet"] else 0.0)


def _sys_share(trial: dict[str, Any]) -> str:
    return f"{trial['sys_s'] / trial['cpu_s']:.0%}" if trial["cpu_s"] else "-"


def render(r: Result) -> str:
    lines = [f"home mix: {r.packets_in_mix:,} IPv4 packets, addresses in 10.76.0.0/16"]
    if r.top_pps:
        ratio = r.netwatch_pps / r.ndpi_pps if r.ndpi_pps else float("nan")
        lines += [
            f"tcpreplay's full speed here: {r.top_pps:,.0f} pps",
            f"highest rate under {MAX_LOSS:.1%} loss: netwatch run (af_packet, "
            f"{r.ring_mib} MiB ring) {r.netwatch_pps:,.0f} pps, ndpiReader -i (libpcap's "
            f"2 MiB) {r.ndpi_pps:,.0f} pps (ratio {ratio:.2f})"]
        for name, trials, best in (("netwatch", r.netwatch_trials, r.netwatch_pps),
                                   ("ndpiReader", r.ndpi_trials, r.ndpi_pps)):
            if trials and trials[0]["loss"] < MAX_LOSS:  # the first trial: full speed
                lines.append(f"  {name} lost nothing at tcpreplay's full speed: "
                             f"{best:,.0f} pps is a lower bound (the sender's ceiling)")
    if r.netwatch_same and r.ndpi_same:
        a, b = r.netwatch_same, r.ndpi_same
        ratios = sorted(_pair_ratio(p) for p in r.same_pairs)
        lines.append(
            f"at {r.same_rate_pps:,.0f} pps offered to both, {len(ratios)} pairs in turn: CPU "
            f"per packet read, ndpiReader/netwatch {ratios[0]:.2f} / "
            f"{ratios[len(ratios) // 2]:.2f} / {ratios[-1]:.2f} (min / median / max); the "
            f"median pair: netwatch {a['cpu_us_per_packet']:.2f} us ({_sys_share(a)} system; "
            f"loss {a['loss']:.3%}), ndpiReader {b['cpu_us_per_packet']:.2f} us "
            f"({_sys_share(b)} system; loss {b['loss']:.3%}); one core would keep up with "
            f"{1e6 / a['cpu_us_per_packet']:,.0f} and {1e6 / b['cpu_us_per_packet']:,.0f} pps")
    if r.alert_seconds:
        lines.append(f"time to alert over {len(r.alert_seconds)} VNC sessions: "
                     f"p50 {r.alert_p50:.2f} s, p95 {r.alert_p95:.2f} s "
                     f"(max {max(r.alert_seconds):.2f} s)")
    if r.rss_kib:
        samples = r.rss_kib
        marks = [samples[int(f * (len(samples) - 1))] for f in (0.1, 0.5, 1.0)]
        sent = f"{r.memory_pps:,.0f} pps" if r.memory_pps else "full speed"
        lines.append(f"RSS of netwatch run over the long replay (sent at {sent}): " + ", ".join(
            f"{rss / 1024:.1f} MiB at {seen:,} packets read" for seen, rss in marks)
            + f"; peak {r.rss_peak_kib / 1024:.1f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
