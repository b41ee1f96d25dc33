"""Names a remote party chose (SNI, DNS names, the RDP cookie, User-Agent…) cannot forge
lines, move a terminal's cursor, set its title or reverse text where a person reads them."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import control_server
from netwatch.actions import load_or_create_secret, make_link
from netwatch.cli import main
from netwatch.messages import reason
from netwatch.pipeline import Counters, Finding, Result
from netwatch.recognisers import Detection, Evidence
from netwatch.report import summary_text

# A line break and a fake summary line, a terminal title (OSC 0), a screen clear (CSI 2J),
# a right-to-left override, NEL (U+0085) and LINE SEPARATOR (U+2028).
FORGED = "a.example\n  device 192.168.1.66: teamviewer"
OSC = "b.example\x1b]0;owned\x07\x1b[2J"
BIDI = "c.example\u202egpj.exe"
SEPARATORS = "d.example\x85e\u2028f"
HOSTILE = (FORGED, OSC, BIDI, SEPARATORS)
RAW = ("\x1b", "\x07", "\u202e", "\x85", "\u2028", "\n  device 192.168.1.66")


def _clean(text: str) -> None:
    for bad in RAW:
        assert bad not in text, repr(bad)


def _finding(name: str, value: str, detail: str) -> Finding:
    det = Detection("rdp", "session", "high", [Evidence("handshake", value, detail),
                                              Evidence("sni", name)])
    return Finding(flow_id=1, first_seen=1_709_650_000.0, ts=1_709_650_000.0, proto="TCP",
                   client="192.168.1.23", client_port=50211, server="203.0.113.7",
                   server_port=3389, detection=det, pcap=None, name=name)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_summary_shows_remote_names_escaped(name: str) -> None:
    result = Result(Counters(), [_finding(name, "X.224 Connection Request",
                                          f"mstshash={name}")])
    text = summary_text(result, ("x.pcap",))
    _clean(text)
    assert [ln for ln in text.splitlines() if ln.startswith("  device ")] == \
        ["  device 192.168.1.23: rdp"]
    assert "\\x1b]0;owned\\x07" in text or name != OSC
    assert "c.example\\u202egpj.exe" in text or name != BIDI


def test_a_bank_named_by_its_dns_name_is_escaped_in_the_reason() -> None:
    line = reason("en", {"code": "banking", "params": {"banks": [OSC, BIDI]}}, None)
    _clean(line)
    assert "b.example\\x1b]0;owned" in line


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path, bytes]]:
    state = tmp_path / "state"
    with control_server(state) as srv:
        yield srv.server_address[1], state, load_or_create_secret(state)


def _exchange(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_control_log_and_server_log_escape_what_a_client_sent(
        server: tuple[int, Path, bytes], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="netwatch.control")
    port, state, secret = server
    url = make_link(secret, f"http://127.0.0.1:{port}", action="block", session_id=3,
                    alert_id="3-1", carer="Sophie", device="Maria's laptop",
                    expires_at=4_000_000_000)
    path = url.split(str(port), 1)[1]
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            f"User-Agent: {OSC}{BIDI}\r\nX-Forwarded-For: 10.9.9.9\x85{BIDI}\r\n\r\n")
    assert b" 200 " in _exchange(port, head.encode("utf-8"))
    # A request line with an escape sequence in its path, for the server's own log.
    assert b" 404 " in _exchange(port, b"GET /\x1b]0;owned\x07/x HTTP/1.0\r\n\r\n")
    log = CliRunner().invoke(main, ["control", "log", "--state-dir", str(state)])
    assert log.exit_code == 0, log.output
    _clean(log.output)
    assert len(log.output.splitlines()) == 1 and "\\x1b]0;owned" in log.output
    _clean(caplog.text)
    assert "\\x1b]0;owned" in caplog.text


def test_the_confirmation_page_escapes_html_and_bidi(server: tuple[int, Path, bytes]) -> None:
    port, _state, secret = server
    device = "<b>laptop</b>\u202eexe.txt"
    url = make_link(secret, f"http://127.0.0.1:{port}", action="block", session_id=3,
                    alert_id="3-1", carer="Sophie", device=device, expires_at=4_000_000_000)
    path = url.split(str(port), 1)[1]
    page = _exchange(port, f"GET {path} HTTP/1.0\r\n\r\n".encode()).decode("utf-8")
    assert "<b>laptop" not in page and "&lt;b&gt;laptop" in page
    assert "\u202e" not in page and "\\u202eexe.txt" in page

