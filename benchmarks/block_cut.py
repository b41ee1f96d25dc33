"""How fast a block cuts a live session: the block decision to the session's last packet
crossing the router, over real sessions in network namespaces (tests/blocklab.py).

Each round: a TCP session between two real programs (the PC's end sends a small packet every
10 ms, like a screen being shared; the internet's end only reads, like a viewer), then the
block decision: ``--via policy`` calls ``BlockLayer.add`` (nftables backend) in a warm
netwatch process on the router, as the daemon does on the policy's decision; ``--via
control`` sends the POST of a carer's "Block now" link to ``netwatch control serve`` on the
router, and the decision is the moment the POST is sent. tcpdump on the router
records what it forwards; the cut time is the last forwarded packet of the session minus the
moment of the decision. netwatch's own packets (the reject's resets, the out-of-window ACKs
that make both ends reset) are not the session's and are left out.

    sudo .venv/bin/python benchmarks/block_cut.py [--via policy|control] [--sessions 20]

Not part of the default test run (it takes about a minute). Needs root, nft, conntrack,
tcpdump.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import blocklab  # noqa: E402
from blocklab import NET, NET_IP, PC, PC_IP, ROUTER, Lab, wait_for  # noqa: E402

PORT = 7100
# The server's pace: a packet every 10 ms, so the session is never quiet for long.
SERVER = blocklab.SERVER.replace("time.sleep(0.1)", "time.sleep(0.01)")

# The router's side: a warm blocking layer that blocks and unblocks on request, printing
# the wall-clock moment of each decision and how long add() took.
DECIDER = r"""
import sys, time, urllib.request
from netwatch.actions import load_or_create_secret, make_link
from netwatch.block import BlockLayer
from netwatch.block.nftables import NftablesBackend
state, device, peer, control = sys.argv[1:5]
layer = BlockLayer(state, NftablesBackend())
layer.backend.install()
secret = load_or_create_secret(state)
print("ready", flush=True)
for n, line in enumerate(sys.stdin):
    verb, arg = line.split()
    if verb == "remove":
        layer.remove(arg)
        print("removed", flush=True)
    elif control == "-":  # the decision as the policy takes it, in the daemon's process
        t0 = time.time()
        ev = layer.add(device=None, ip=device, peers=[peer], duration_s=60,
                       reason="benchmark")
        print(ev["block"]["id"], repr(t0), repr(time.time() - t0), ev["block"]["action"],
              flush=True)
    else:  # a carer's Block now: the POST on a signed link to the control endpoint
        layer.remember_session({"event_type": "session", "src_ip": device,
                                "session": {"id": n, "tool": "vnc", "peers": [peer]}})
        url = make_link(secret, control, action="block", session_id=n, alert_id=f"{n}-1",
                        carer="bench", device=None, expires_at=time.time() + 600)
        t0 = time.time()
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"),
                                    timeout=30) as r:
            status = r.status
        took = time.time() - t0
        ids = [b.id for b in layer.list_blocks() if b.session_id == n]
        print(ids[0] if ids else "-", repr(t0), repr(took), "add" if status == 200 else status,
              flush=True)
"""


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def last_forwarded(pcap_text: str, port: int) -> float | None:
    """The time of the last packet of the session on ``port`` that crossed the router: seen
    coming in on one side and going out on the other. What the router makes itself (the
    reject's resets, netwatch's ACKs) only goes out, and is left out."""
    last = None
    came_in: set[str] = set()
    for line in pcap_text.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4 or f".{port}" not in line:
            continue
        ts, _iface, direction, packet = parts
        if direction == "In":
            came_in.add(packet)
        elif direction == "Out" and packet in came_in:
            last = float(ts)
    return last


def one(lab: Lab, decider: subprocess.Popen, port: int, tmp: Path) -> dict[str, float]:
    server = blocklab.bg(PC, sys.executable, "-c", SERVER, PC_IP, str(port), lifetime=30)
    lab.procs.append(server)
    assert wait_for(lambda: lab.connects(NET, PC_IP, port), 10)
    client = blocklab.bg(NET, sys.executable, "-c", blocklab.CLIENT, PC_IP, str(port),
                         lifetime=30)
    lab.procs.append(client)
    assert wait_for(lambda: lab.established(NET, port) == 1, 10)
    pcap = tmp / f"cut-{port}.txt"
    with open(pcap, "w") as out:
        dump = subprocess.Popen(["ip", "netns", "exec", ROUTER, "timeout", "20", "tcpdump",
                                 "-i", "any", "-n", "-tt", "-l", "-U",
                                 f"tcp port {port}"], stdout=out, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert decider.stdin is not None and decider.stdout is not None
    decider.stdin.write(f"block {port}\n")
    decider.stdin.flush()
    block_id, t0, took, action = decider.stdout.readline().split()
    assert action == "add", action
    wait_for(lambda: lab.established(NET, port) == 0 and lab.established(PC, port) == 0, 5)
    time.sleep(1.0)  # anything still in flight gets recorded
    dump.terminate()
    dump.wait(timeout=10)
    decider.stdin.write(f"remove {block_id}\n")
    decider.stdin.flush()
    decider.stdout.readline()
    for p in (server, client):
        blocklab.stop(p)
    last = last_forwarded(pcap.read_text(), port)
    assert last is not None, "tcpdump saw nothing of the session"
    return {"cut_s": max(0.0, last - float(t0)), "decision_s": float(took)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--via", choices=("policy", "control"), default="policy",
                    help="policy: the layer called in a warm process (the daemon's way); "
                         "control: a POST on a Block now link to 'netwatch control serve'")
    args = ap.parse_args()
    why = blocklab.why_not()
    if why is not None:
        print(f"block_cut: cannot run here: {why}", file=sys.stderr)
        return 2
    tmp = Path("/tmp/nwb-bench")
    tmp.mkdir(exist_ok=True)
    lab = Lab().up()
    try:
        state = str(tmp / f"state-{args.via}")
        control = "-"
        if args.via == "control":
            control = "http://127.0.0.1:8788"
            serve = blocklab.bg(ROUTER, *blocklab.NETWATCH, "control", "serve", "--state-dir",
                                state, "--listen", "127.0.0.1:8788", "--backend", "nftables",
                                lifetime=600, cwd=ROOT)
            lab.procs.append(serve)
            health = ("import urllib.request; "
                      "urllib.request.urlopen('http://127.0.0.1:8788/healthz')")
            assert wait_for(lambda: blocklab.ns(ROUTER, sys.executable, "-c", health,
                                                check=False).returncode == 0, 20)
        decider = subprocess.Popen(
            ["ip", "netns", "exec", ROUTER, "timeout", "600", sys.executable, "-c", DECIDER,
             state, PC_IP, NET_IP, control], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        lab.procs.append(decider)
        assert decider.stdout is not None and decider.stdout.readline().strip() == "ready"
        rounds = [one(lab, decider, PORT + i, tmp) for i in range(args.sessions)]
    finally:
        lab.down()
    cuts = [r["cut_s"] for r in rounds]
    adds = [r["decision_s"] for r in rounds]
    report = {"via": args.via, "sessions": len(rounds),
              "cut_p50_s": round(statistics.median(cuts), 4),
              "cut_p95_s": round(percentile(cuts, 0.95), 4),
              "cut_max_s": round(max(cuts), 4),
              "decision_call_p50_s": round(statistics.median(adds), 4),
              "decision_call_p95_s": round(percentile(adds, 0.95), 4)}
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"report": report, "rounds": rounds},
                                                  indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
