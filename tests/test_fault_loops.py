"""Alert delivery under faults: a receiver that is down, slow, dripping or answering 500
(each then recovering), and ``kill -9`` at random points of ``netwatch replay --notify``
and ``netwatch alert deliver``, the state folder kept across the kills.

What must hold: no alert is lost (every alert in an event log reaches the receiver, itself
or as the newer state of its conversation, which the outbox merges by design), and no alert
arrives twice under two different ``X-Netwatch-Id`` values (a copy with the same id is
allowed: delivery is at least once, and the receiver can drop it).

The receivers listen on 127.0.0.1 only and every wait is bounded. Times (how long delivery
takes to catch up once a receiver is back) are printed (run with -s), never asserted.

The default budget is short; ``bash run.sh faults`` runs the long one (the sizes come from
``NETWATCH_FAULT_KILLS`` and ``NETWATCH_FAULT_CYCLES``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from test_outbox import wait_for
from test_senders import make_message

from conftest import ROOT, SYNTHETIC
from netwatch.outbox import Outbox

KILLS = int(os.environ.get("NETWATCH_FAULT_KILLS", "20"))  # kill -9 iterations
CYCLES = int(os.environ.get("NETWATCH_FAULT_CYCLES", "2"))  # fault-and-recover cycles
SEED = int(os.environ.get("NETWATCH_FAULT_SEED", "21"))
CARER = "Pieter"  # the carer of deploy/household.example.yaml

# Receiver faults. The worker's send deadline is SEND_DEADLINE_S: a slow answer (SLOW_S
# before the first byte) and a dripping one (a byte every DRIP_S, each well within the
# socket timeout) both outlast it, so only the deadline ends those sends.
FAULTS = ("down", "slow", "dripping", "error500")
SEND_DEADLINE_S = 1.0
SLOW_S = 2.0
DRIP_S = 0.3
FAULT_S = 3.0  # how long each fault lasts
PER_FAULT = 4  # messages queued for each receiver per cycle
CATCH_UP_S = 40.0  # the longest wait for delivery to catch up (a failure beyond it)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
ANSWER_DELAY_S = 0.2  # the kill loop's receiver: a little slow, never failing
WORKER = ("--interval", "0.1", "--min-interval", "0", "--max-per-hour", "0")


def netwatch(*args: str, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "netwatch", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, **kw)


def worker(state: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A delivery worker, returned once it says it is up (its signal handlers in place)."""
    with log.open("ab") as err:
        proc = netwatch("alert", "deliver", "--state-dir", str(state), *WORKER, *extra,
                        stderr=err)
    wait_for(lambda: "delivering from" in log.read_text() or proc.poll() is not None, 30)
    return proc


def end(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
    """Signal ``proc`` (when it still runs) and reap it; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - never leave it running
        proc.kill()
        return proc.wait(5)


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"


# --- a receiver with a switchable fault ------------------------------------------------------


@dataclass
class Published:
    """A message the receiver published: ntfy publishes once it has read the request, before
    it answers, so a slow or dripping answer still means the phone showed it."""

    netwatch_id: str
    key: str
    alert: str
    at: float


@dataclass
class FaultyNtfy:
    """ntfy's publish endpoint on 127.0.0.1 with one fault it can be switched into:
    ``down`` (the port closed: connection refused), ``slow`` (the answer after SLOW_S),
    ``dripping`` (the answer a byte every DRIP_S) or ``error500`` (nothing published, 500)."""

    fault: str
    faulty: bool = False
    delay: float = 0.0  # seconds before every answer, faulty or not
    port: int = 0
    published: list[Published] = field(default_factory=list)
    refused: int = 0  # requests answered 500
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    closing: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FaultyNtfy:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = fake.fault if fake.faulty else "ok"
                if mode == "error500":
                    with fake.lock:
                        fake.refused += 1
                    self.send_error(500, "Internal Server Error")
                    return
                with fake.lock:
                    fake.published.append(Published(
                        self.headers.get("X-Netwatch-Id", ""),
                        unquote(self.headers.get("X-Netwatch-Key", "")),
                        unquote(self.headers.get("X-Netwatch-Alert", "")), time.monotonic()))
                fake.closing.wait(SLOW_S if mode == "slow" else fake.delay)
                pause = DRIP_S if mode == "dripping" else 0.0
                try:
                    for i in range(0, len(ANSWER), 1 if pause else len(ANSWER)):
                        if pause and fake.closing.wait(pause):
                            return
                        self.wfile.write(ANSWER[i:i + 1] if pause else ANSWER)
                        self.wfile.flush()
                except OSError:
                    pass  # the sender gave up (its deadline): the connection is gone

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def set_faulty(self, on: bool) -> None:
        self.faulty = on
        if self.fault == "down":
            if on:
                self.stop()
            else:
                self.start()  # the same port again

    def url(self) -> str:
        return f"ntfy://127.0.0.1:{self.port}/maria-helpdesk"

    def ids(self) -> set[str]:
        with self.lock:
            return {p.netwatch_id for p in self.published}


@pytest.fixture
def receivers() -> Iterator[dict[str, FaultyNtfy]]:
    fakes = {f: FaultyNtfy(f).start() for f in FAULTS}
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            fake.closing.set()
            fake.stop()


def test_receiver_faults_then_recovery(tmp_path: Path,
                                       receivers: dict[str, FaultyNtfy]) -> None:
    state = tmp_path / "state"
    rows: dict[str, list[int]] = defaultdict(list)
    recover: dict[str, list[float]] = defaultdict(list)
    with Outbox(state) as box:
        instance = box.instance
    deliver = worker(state, tmp_path / "deliver.log", "--send-deadline", str(SEND_DEADLINE_S))
    try:
        for cycle in range(CYCLES):
            for fake in receivers.values():
                fake.set_faulty(True)
            new: dict[str, list[int]] = {}
            with Outbox(state) as box:
                for fault, fake in receivers.items():
                    new[fault] = []
                    for k in range(PER_FAULT):
                        sid = 100 * (cycle + 1) + 10 * FAULTS.index(fault) + k
                        msg = make_message("critical", key=f"{sid}:{CARER}",
                                           alert_id=f"{sid}-1", created=time.time())
                        new[fault] += box.enqueue(msg, [fake.url()])
                    rows[fault] += new[fault]
            time.sleep(FAULT_S)
            back = time.monotonic()
            for fake in receivers.values():
                fake.set_faulty(False)
            waiting = dict(new)
            with Outbox(state) as box:
                until = back + CATCH_UP_S
                while waiting and time.monotonic() < until:
                    sent = {r.id for r in box.rows("sent")}
                    for fault in [f for f, ids in waiting.items() if set(ids) <= sent]:
                        recover[fault].append(time.monotonic() - back)
                        del waiting[fault]
                    time.sleep(0.05)
            assert not waiting, f"not delivered {CATCH_UP_S:g} s after the recovery: {waiting}"
        assert end(deliver, signal.SIGTERM) == 0
    finally:
        end(deliver)
    with Outbox(state) as box:
        table = {r.id: r for r in box.rows()}
    print(f"\nreceiver faults: {CYCLES} cycle(s) of {FAULT_S:g} s, {PER_FAULT} alerts per "
          f"receiver each; send deadline {SEND_DEADLINE_S:g} s")
    for fault, fake in receivers.items():
        ids = [p.netwatch_id for p in fake.published]
        expected = {f"{r}.1@{instance}" for r in rows[fault]}
        by_alert: dict[tuple[str, str], set[str]] = defaultdict(set)
        for p in fake.published:
            by_alert[(p.key, p.alert)].add(p.netwatch_id)
        same_id = sum(n - 1 for n in Counter(ids).values())
        print(f"  {fault:9} published {len(ids)} for {len(expected)} alerts: 0 lost, "
              f"{same_id} repeat(s) with the same id, 0 with another id; time to recover "
              f"{summary(recover[fault])}")
        # Every alert arrived, each under one id, and nothing else did.
        assert set(ids) == expected, fault
        assert all(len(v) == 1 for v in by_alert.values()), (fault, by_alert)
        assert len(by_alert) == len(expected)
        # The fault was felt: every row needed more than one attempt.
        assert all(table[r].status == "sent" and table[r].attempts >= 1
                   for r in rows[fault]), fault
    assert receivers["error500"].refused >= CYCLES  # a 500 in every cycle


# --- kill -9 at random points ----------------------------------------------------------------


def captures() -> list[str]:
    """The bundled synthetic captures: 15 alerts in 14 conversations for the example
    household."""
    return sorted(str(p) for p in SYNTHETIC.iterdir() if p.suffix in (".pcap", ".pcapng"))


def household_for(fake: FaultyNtfy, folder: Path) -> Path:
    text = (ROOT / "deploy" / "household.example.yaml").read_text()
    old = "ntfy://ntfy.sh/maria-helpdesk-change-me"
    assert old in text
    path = folder / "household.yaml"
    path.write_text(text.replace(old, fake.url()))
    return path


def logged_alerts(eve: Path) -> list[tuple[str, str]]:
    """(conversation key, alert id) of every alert for the carers in an event log: what the
    replay wrote before it ended (a killed replay's log keeps what had been flushed)."""
    out = []
    for line in eve.read_text(errors="replace").splitlines() if eve.exists() else []:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the process was killed
        alert = ev.get("alert") if ev.get("event_type") == "alert" else None
        if alert and alert.get("notify", True) and alert["level"] != "info":
            out.append((f"{alert['session_id']}:{CARER}", alert["id"]))
    return out


def seq(alert_id: str) -> int:
    """An alert's place in its session (``<session>-<n>``)."""
    return int(alert_id.rpartition("-")[2])


def covered(key: str, alert_id: str, got: set[tuple[str, str]]) -> bool:
    """The alert, or a newer one of its conversation (merged by the outbox), is in ``got``."""
    return any(k == key and seq(a) >= seq(alert_id) for k, a in got)


def test_kill_9_replay_and_deliver_loses_nothing(tmp_path: Path) -> None:
    # Each answer takes ANSWER_DELAY_S, so a worker spends seconds sending and many kills
    # land between a send and its mark.
    ntfy = FaultyNtfy("none", delay=ANSWER_DELAY_S).start()
    rng = random.Random(SEED)
    state = tmp_path / "state"
    hh = household_for(ntfy, tmp_path)
    caps = captures()
    replay_args = ["replay", *caps, "--household", str(hh), "--notify", str(state)]
    deliver_args = ["alert", "deliver", "--state-dir", str(state), *WORKER]
    logged: set[tuple[str, str]] = set()
    killed_replays = completed_replays = killed_workers = 0
    logged_by_killed = 0
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(KILLS):
            eve = tmp_path / f"eve-{i}.json"
            # A full replay takes about 1-3 s on a small machine: most kills land inside it.
            replay = netwatch(*replay_args, "--eve-log", str(eve), stderr=subprocess.DEVNULL)
            deliver = netwatch(*deliver_args, stderr=subprocess.DEVNULL)
            procs = [replay, deliver]
            kills = sorted([(rng.uniform(0.2, 3.0), replay), (rng.uniform(0.2, 2.6), deliver)],
                           key=lambda t: t[0])
            t0 = time.monotonic()
            codes = {}
            for at, proc in kills:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                codes[proc.pid] = end(proc)
            assert codes[replay.pid] in (0, -signal.SIGKILL)
            killed_replays += codes[replay.pid] == -signal.SIGKILL
            completed_replays += codes[replay.pid] == 0
            killed_workers += codes[deliver.pid] == -signal.SIGKILL
            alerts = logged_alerts(eve)
            if codes[replay.pid] != 0:
                logged_by_killed += len(alerts)
            logged.update(alerts)
            # Write-ahead: what reached the event log is in the outbox already. (A replay
            # writes its log in batches, so a killed one's log is mostly empty.)
            with Outbox(state) as box:
                queued = {(r.key, r.alert_id) for r in box.rows()}
            assert all(covered(k, a, queued) for k, a in alerts), (i, alerts, queued)
        # Afterwards: the replay run once more to its end (what a person would do after a
        # crash), and delivery to completion.
        eve = tmp_path / "eve-final.json"
        final = netwatch(*replay_args, "--eve-log", str(eve), stderr=subprocess.DEVNULL)
        assert final.wait(60) == 0
        logged.update(logged_alerts(eve))
        last = worker(state, tmp_path / "deliver.log")
        procs = [last]
        with Outbox(state) as box:
            assert wait_for(lambda: not box.pending(), 30), box.pending()
        assert end(last, signal.SIGTERM) == 0
    finally:
        for p in procs:
            end(p)
        ntfy.closing.set()
        ntfy.stop()
    with Outbox(state) as box:
        statuses = Counter(r.status for r in box.rows())
    arrivals = [(p.key, p.alert, p.netwatch_id) for p in ntfy.published]
    got = {(k, a) for k, a, _ in arrivals}
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for k, a, i in arrivals:
        ids[(k, a)].add(i)
    lost = sorted(x for x in logged if not covered(*x, got))
    merged = sorted(x for x in logged if x not in got and x not in lost)
    other_id = {x: v for x, v in ids.items() if len(v) > 1}
    same_id = len(arrivals) - sum(len(v) for v in ids.values())
    print(f"\nkill -9 loop: {KILLS} iterations (seed {SEED}) in "
          f"{time.monotonic() - started:.0f} s: {killed_replays} replays killed, "
          f"{completed_replays} completed, {killed_workers} workers killed; "
          f"{logged_by_killed} alerts in killed replays' event logs")
    print(f"  {len(logged)} alerts logged, {len(arrivals)} arrivals: {len(lost)} lost, "
          f"{len(merged)} delivered as a newer state of their conversation, {same_id} repeat(s)"
          f" with the same id, {len(other_id)} sent twice under another id")
    assert logged, "no alert in any event log: nothing was tested"
    assert lost == []
    assert other_id == {}
    assert statuses.keys() == {"sent"}, statuses
