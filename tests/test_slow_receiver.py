"""A receiver that drips its answer cannot stall alert delivery: each send is cut at its
deadline, the other carers' messages go out meanwhile, and the worker stops at SIGTERM.

The dripping server listens on 127.0.0.1 only, sends one byte of an HTTP answer every
DRIP_S seconds (each byte well within the senders' socket timeout, so only an overall
deadline can end the exchange) and stops by itself after SERVER_BUDGET_S. Times are
printed (run with -s), never asserted: the assertions are on the order of events.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_outbox import stop, wait_for, worker
from test_senders import FakeNtfy, make_message

from netwatch.outbox import Outbox
from netwatch.senders import DeliveryId, SendError, Senders

DRIP_S = 4.0  # one byte every 4 s: under the 10 s socket timeout
SERVER_BUDGET_S = 16.0  # the server hangs up by itself after this
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
T0 = 1_700_000_000.0


@dataclass
class Drip:
    """One connection to the dripping server: when it began and ended, and who ended it."""

    accepted: float
    ended: float | None = None
    cut_by_client: bool = False


@dataclass
class DrippingServer:
    port: int = 0
    connections: list[Drip] = field(default_factory=list)
    sock: socket.socket | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> DrippingServer:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self.sock is not None
        until = time.monotonic() + SERVER_BUDGET_S + 5
        while not self.stopping.is_set() and time.monotonic() < until:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            drip = Drip(time.monotonic())
            self.connections.append(drip)
            threading.Thread(target=self._drip, args=(conn, drip), daemon=True).start()

    def _drip(self, conn: socket.socket, drip: Drip) -> None:
        with conn:
            end = drip.accepted + SERVER_BUDGET_S
            for byte in ANSWER:
                if self.stopping.is_set():
                    break
                # Wait one drip interval, watching for the client hanging up meanwhile.
                pause_until = min(time.monotonic() + DRIP_S, end)
                while (left := pause_until - time.monotonic()) > 0:
                    readable, _, _ = select.select([conn], [], [], left)
                    if readable:
                        try:
                            data = conn.recv(65536)
                        except OSError:
                            data = b""
                        if not data:
                            drip.cut_by_client = True
                            drip.ended = time.monotonic()
                            return
                if time.monotonic() >= end:
                    break
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    drip.cut_by_client = True
                    break
            drip.ended = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()
        if self.sock is not None:
            self.sock.close()

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@pytest.fixture
def dripping() -> Iterator[DrippingServer]:
    server = DrippingServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_dripping_receiver_is_cut_at_the_deadline_and_holds_no_one_back(
        tmp_path: Path, dripping: DrippingServer, ntfy: FakeNtfy) -> None:
    with Outbox(tmp_path / "state") as box:
        # The slow carer's message is the older one: it would go first.
        [slow] = box.enqueue(make_message(key="1:Anna", created=T0), [dripping.url()])
        [fast] = box.enqueue(make_message(key="1:Pieter", created=T0 + 1), [ntfy.url()])
        started = time.monotonic()
        report = box.deliver_due(T0 + 2, Senders(timeout=10.0, deadline=2.0))
        held = time.monotonic() - started
        [row] = [r for r in box.rows() if r.id == slow]
    [drip] = dripping.connections
    assert report.sent == [fast] and report.retry == [slow]
    assert "no complete answer within 2 s" in (row.last_error or "")
    assert drip.cut_by_client  # netwatch hung up, not the server at the end of its budget
    [arrived] = ntfy.accepted
    assert drip.ended is not None and arrived.at < drip.ended  # not held back by the drip
    print(f"\ndripping receiver held the pass {held:.1f} s (deadline 2 s, drip every "
          f"{DRIP_S:g} s); the healthy receiver had its message "
          f"{arrived.at - started:.2f} s into the pass")


def test_the_worker_stops_at_sigterm_during_a_dripping_send(
        tmp_path: Path, dripping: DrippingServer) -> None:
    state = tmp_path / "state"
    with Outbox(state) as box:
        box.enqueue(make_message(created=time.time()), [dripping.url()])
    proc = worker(state, "--interval", "0.2")
    try:
        assert wait_for(lambda: bool(dripping.connections), 10)
        signalled = time.monotonic()
        code, out = stop(proc)
        stopped = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    [drip] = dripping.connections
    assert code == 0, out
    # It hung up while the server was still dripping (well before the server's budget and
    # the send's deadline): it did not wait for the send to end. The server notices the
    # hang-up at its next drip.
    assert wait_for(lambda: drip.cut_by_client, 2 * DRIP_S + 2)
    assert drip.ended is None or drip.ended < drip.accepted + SERVER_BUDGET_S
    print(f"\nworker stopped {stopped - signalled:.2f} s after SIGTERM in a dripping send")


def test_a_mail_server_dripping_its_greeting_is_cut_at_the_deadline(
        dripping: DrippingServer) -> None:
    url = f"mailto://alice:pw@127.0.0.1:{dripping.port}?to=pieter@example.org"
    with pytest.raises(SendError, match="connect: no complete answer within 2 s"):
        Senders(timeout=10.0, deadline=2.0).send(url, make_message(),
                                                 DeliveryId(1, 1, "test", "1:Pieter"))
    assert wait_for(lambda: bool(dripping.connections) and dripping.connections[0].cut_by_client,
                    30)
