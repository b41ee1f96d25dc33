"""The control endpoint under slowloris: many connections that send their request a byte at
a time. Capped connections (overall and per client), a deadline for reading a request and
a larger listen backlog keep it answering a carer's phone.

Everything runs on loopback: the dripping clients from 127.0.1.x, the phone from 127.0.0.2
(all of 127.0.0.0/8 is the loopback interface). The server runs as a subprocess with
FD_LIMIT file descriptors, far fewer than the flood's connections (a server without bounds
runs out of them and answers no one), stopped by SIGTERM and by ``timeout`` should the test
hang; the phone asks once a second for PHONE_TRIES seconds while the flood drips. Counts
and times are printed (run with -s), the assertions are on answers.
"""

from __future__ import annotations

import errno
import http.client
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_senders import free_port

from conftest import control_server
from netwatch.control import (
    ControlHTTPServer,
)

SOURCES = 40  # dripping client addresses
PER_SOURCE = 25  # connections from each: 1,000 in all
FD_LIMIT = 128  # the flood must outnumber it quickly, whatever the machine's pace
PHONE_TRIES = 6  # requests from the phone during the flood, one a second
DRIP_EVERY_S = 1.0
SERVER_LIMIT_S = 60


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _open_dripping(port: int) -> list[socket.socket]:
    """Non-blocking connections that have sent the start of a request and nothing else."""
    socks = []
    for src in range(SOURCES):
        for _ in range(PER_SOURCE):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.0.1.{src + 1}", 0))
            s.setblocking(False)
            code = s.connect_ex(("127.0.0.1", port))
            assert code in (0, errno.EINPROGRESS), code
            socks.append(s)
    return socks


def _drip(socks: list[socket.socket], stop: threading.Event, cut: list[int]) -> None:
    """A header byte every DRIP_EVERY_S on each connection still open; ``cut`` counts the
    connections the server closed."""
    alive = list(socks)
    first = True
    while alive and not stop.wait(0 if first else DRIP_EVERY_S):
        still = []
        for s in alive:
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nX-a: " if first else b"a")
                still.append(s)
            except BlockingIOError:
                still.append(s)  # not connected yet, or the buffer is full
            except OSError:
                cut[0] += 1
        alive = still
        first = False


def _wait_listening(log: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if re.search(r"listening on", log.read_text(errors="replace")):
            return
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(log.read_text(errors="replace"))


def _phone(port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5,
                                      source_address=("127.0.0.2", 0))
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_the_endpoint_answers_a_phone_during_a_slowloris_flood(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            ["timeout", str(SERVER_LIMIT_S), sys.executable, "-m", "netwatch", "control",
             "serve", "--state-dir", str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_limit_fds)
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        _wait_listening(log, proc)
        started = time.monotonic()
        socks = _open_dripping(port)
        cut = [0]
        dripper = threading.Thread(target=_drip, args=(socks, stop, cut), daemon=True)
        dripper.start()
        # The phone asks once a second while the flood builds up and holds (a server without
        # bounds runs out of descriptors a few seconds in, and answers no one after that).
        answers = []
        for _ in range(PHONE_TRIES):
            stop.wait(DRIP_EVERY_S)
            try:
                answers.append(_phone(port))
            except OSError as e:
                answers.append((0, type(e).__name__.encode()))
        stop.set()
        dripper.join(5)
        print(f"\n{len(socks)} dripping connections from {SOURCES} addresses: the server "
              f"closed {cut[0]}; the phone's {PHONE_TRIES} requests, one a second: "
              f"{[a[0] for a in answers]} (in {time.monotonic() - started:.1f} s)")
        assert answers == [(200, b"ok\n")] * PHONE_TRIES
        assert proc.poll() is None, log.read_text(errors="replace")
    finally:
        stop.set()
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ControlHTTPServer]:
    with control_server(tmp_path / "state", request_deadline_s=1.0, max_per_client=2) as srv:
        yield srv


def test_a_request_sent_a_byte_at_a_time_is_cut_at_the_deadline(server: ControlHTTPServer) -> None:
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        for _ in range(12):  # 6 s of a byte every 0.5 s, each within the read timeout
            time.sleep(0.5)
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
        if not closed:
            s.settimeout(0.1)
            try:
                closed = s.recv(1) == b""
            except OSError:
                closed = True
    assert closed


def test_a_client_gets_no_more_than_its_share(server: ControlHTTPServer) -> None:
    port = server.server_address[1]
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        for s in held:
            s.sendall(b"GET /hea")
        time.sleep(0.3)
        closed = 0
        for s in held:
            s.settimeout(0.2)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed == 2  # two kept (max_per_client=2), two closed at once
        assert _phone(port) == (200, b"ok\n")  # another address is served
    finally:
        for s in held:
            s.close()
