"""What the nflog rules really hand to Python, and the CPU it costs per packet of the line.

    sudo .venv/bin/python benchmarks/nflog_live.py [--pcap FILE] [--pps 10000]

Replays a capture (by default the 1M-packet home mix, generated as ``netwatch bench`` does)
with tcpreplay through a router namespace that runs netwatch's capture rules, and reads
the NFLOG group with the nflog source feeding a real Pipeline, as the daemon does. Both
directions of every connection enter the router on its LAN side and leave by routing
(public addresses to the "internet" side, the mix's LAN back out the LAN side), so the
forward hook and conntrack see every packet exactly once. Prints, and writes as JSON with
``--json``: packets sent, forwarded, handed to Python (and dropped), the share, Python's
CPU seconds and microseconds per line packet, and bench.py's offline estimate of the same
share for comparison.

Namespaces nwn-bhome, nwn-brouter, nwn-binet (10.74.9.0/24, 10.74.10.0/24) are created
and deleted here; every program runs under ``timeout``. Not part of ``bash run.sh test``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netwatch import bench  # noqa: E402
from netwatch.sources.nflog import FIRST_PACKETS  # noqa: E402

HOME, ROUTER, INET = "nwn-bhome", "nwn-brouter", "nwn-binet"
GROUP = 76
# The mix's LAN and the documentation prefix its IPv6 devices use (shared/bench/README.md).
MIX_LAN4, MIX_LAN6 = "192.168.0.0/16", "2001:db8:cafe::/48"
NEXT_HOP_MAC = "02:00:00:00:09:02"

RUNNER = """
import json, resource, signal, sys, time
from netwatch.eventlog import EventLog
from netwatch.pipeline import Pipeline
from netwatch.recognisers import load_all
from netwatch.signatures import load_dir
from netwatch.sources.nflog import NflogSource
pipe = Pipeline(load_dir(known_recognisers=load_all()), EventLog(sys.argv[2]))
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
src = NflogSource(group=int(sys.argv[1]), on_counters=pipe.flow_counters).start()
print("ready", flush=True)
prof = None
if len(sys.argv) > 3:
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
r0 = resource.getrusage(resource.RUSAGE_SELF)
try:
    while not stop:
        pipe.feed(src.poll(0.2))
finally:
    src.close()
r1 = resource.getrusage(resource.RUSAGE_SELF)
if prof is not None:
    prof.disable()
    prof.dump_stats(sys.argv[3])
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
res = pipe.finish()
pipe.log.close()
print(json.dumps({"stats": src.stats(), "cpu_s": cpu, "flows": res.counters.flows,
                  "detections": len(res.findings)}), flush=True)
"""


def sh(*argv: str, ns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60).stdout


def setup() -> str:
    for ns in (HOME, ROUTER, INET):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "link", "add", "nwn-bh0", "netns", HOME, "type", "veth", "peer", "name", "nwn-br0",
       "netns", ROUTER)
    sh("ip", "link", "add", "nwn-br1", "netns", ROUTER, "type", "veth", "peer", "name",
       "nwn-bi0", "netns", INET)
    for ns, dev, addr in ((HOME, "nwn-bh0", "10.74.9.2/24"), (ROUTER, "nwn-br0", "10.74.9.1/24"),
                          (ROUTER, "nwn-br1", "10.74.10.1/24"), (INET, "nwn-bi0", "10.74.10.2/24")):
        sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.nwn-br0.rp_filter=0",
                # The mix is synthetic: conntrack must not call its segments out of window.
                "net.netfilter.nf_conntrack_tcp_be_liberal=1"):
        sh("sysctl", "-qw", key, ns=ROUTER)
    # Routes to next hops whose MAC is fixed: nothing is resolved, the sinks just drop.
    for dev, via, nets in (("nwn-br1", "10.74.10.2", ("default",)),
                           ("nwn-br0", "10.74.9.2", (MIX_LAN4,))):
        sh("ip", "neigh", "replace", via, "lladdr", NEXT_HOP_MAC, "dev", dev, ns=ROUTER)
        for net in nets:
            sh("ip", "route", "replace", net, "via", via, "dev", dev, ns=ROUTER)
    sh("ip", "-6", "route", "replace", MIX_LAN6, "dev", "nwn-br0", ns=ROUTER)
    sh("ip", "-6", "route", "replace", "default", "dev", "nwn-br1", ns=ROUTER)
    mac = sh("cat", "/sys/class/net/nwn-br0/address", ns=ROUTER).strip()
    return mac


def teardown() -> None:
    for ns in (HOME, ROUTER, INET):
        for pid in sh("ip", "netns", "pids", ns, check=False).split():
            subprocess.run(["kill", "-KILL", pid], check=False)
        sh("ip", "netns", "del", ns, check=False)


def forwarded(ns: str, dev: str) -> int:
    return int(sh("cat", f"/sys/class/net/{dev}/statistics/rx_packets", ns=ns))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", type=Path)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--pps", type=int, default=10_000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the reading process")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, nftables)")
    pcap = args.pcap or bench.make_mix(args.packets, 1, Path(tempfile.gettempdir())
                                       / "netwatch-bench")[0]
    teardown()
    out: dict[str, object] = {"pcap": str(pcap), "pps": args.pps,
                              "first_packets": FIRST_PACKETS}
    with tempfile.TemporaryDirectory() as d:
        try:
            mac = setup()
            rewritten = Path(d) / "mix.pcap"
            subprocess.run(["tcprewrite", f"--enet-dmac={mac}", f"--infile={pcap}",
                            f"--outfile={rewritten}"], check=True, timeout=600)
            rx0 = forwarded(ROUTER, "nwn-br0")
            runner = subprocess.Popen(
                ["ip", "netns", "exec", ROUTER, "timeout", "3600", sys.executable, "-c", RUNNER,
                 str(GROUP), str(Path(d) / "eve.json"),
                 *([str(args.profile.resolve())] if args.profile else [])],
                stdout=subprocess.PIPE, text=True,
                env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert runner.stdout is not None
            if runner.stdout.readline().strip() != "ready":
                sys.exit("the nflog source did not start")
            t0 = time.monotonic()
            rep = subprocess.run(["ip", "netns", "exec", HOME, "timeout", "3600", "tcpreplay",
                                  "-q", f"--pps={args.pps}", "-i", "nwn-bh0", str(rewritten)],
                                 capture_output=True, text=True, check=False)
            out["replay_s"] = round(time.monotonic() - t0, 1)
            time.sleep(2)  # the last batches leave the kernel's queue
            runner.terminate()
            res = json.loads(runner.communicate(timeout=120)[0].splitlines()[-1])
            line = forwarded(ROUTER, "nwn-br0") - rx0
            sent = next((int(w) for ln in rep.stdout.splitlines() if "Actual:" in ln
                         for w in ln.split() if w.isdigit()), 0)
            st = res["stats"]
            out.update({
                "sent": sent, "line_packets": line, "to_python": st["packets"],
                "dropped": st["dropped"], "overruns": st["overruns"],
                "share": st["packets"] / line if line else 0.0,
                "python_cpu_s": round(res["cpu_s"], 2),
                "us_per_line_packet": round(res["cpu_s"] / line * 1e6, 2) if line else 0.0,
                "us_per_python_packet": round(res["cpu_s"] / st["packets"] * 1e6, 1)
                if st["packets"] else 0.0,
                "flows": res["flows"], "detections": res["detections"],
            })
            truth = pcap.with_suffix(".truth.tsv")
            if truth.is_file():
                out["sessions"] = bench.sessions_found(Path(d) / "eve.json", truth)
            kept, total = bench.nflog_subset(pcap, Path(d) / "estimate.pcap")
            out["estimate_share"] = kept / total if total else 0.0
        finally:
            teardown()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
