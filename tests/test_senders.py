"""Alert senders against real receivers on loopback: a small ntfy-compatible HTTP server
written for these tests, and an SMTP server (aiosmtpd). Also ``netwatch alert test``.

The helpers here (FakeNtfy, the ``ntfy``/``smtp`` fixtures, ``make_message``) are shared
with tests/test_outbox.py.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from netwatch.cli import main
from netwatch.messages import Action, Message
from netwatch.senders import (
    APPRISE_MISSING,
    DeliveryId,
    SendError,
    Senders,
    mail_message,
    scrub,
    secret_parts,
)

TOKEN = "tk_s3cr3tT0kenXYZ"
PASSWORD = "Pa55-w0rd-9876"
TOPIC = "maria-helpdesk-q7z"


# --- a small ntfy-compatible server --------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int = 0  # what the server answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def netwatch_id(self) -> str:
        return self.headers.get("x-netwatch-id", "")


@dataclass
class FakeNtfy:
    """ntfy's publish endpoint on 127.0.0.1: records every request. ``status`` switches the
    answer (200, 503…); ``stop()``/``start()`` take it down and bring it back on the same
    port. ``auth``: the Authorization header it insists on (403 otherwise, and the error
    echoes what it got, as a careless service might)."""

    port: int = 0
    status: int = 200
    auth: str | None = None
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    def start(self) -> FakeNtfy:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                req = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                              body, time.monotonic())
                with fake.lock:
                    fake.requests.append(req)
                got = self.headers.get("Authorization", "")
                if fake.auth is not None and got != fake.auth:
                    status, answer = 403, {"code": 40301, "http": 403,
                                           "error": f"forbidden: {got!r} is not allowed"}
                elif fake.status != 200:
                    status, answer = fake.status, {"code": fake.status * 100 + 1,
                                                   "http": fake.status,
                                                   "error": "service unavailable"}
                else:
                    status, answer = 200, {"id": f"m{len(fake.requests)}", "event": "message"}
                req.status = status
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            assert self.thread is not None
            self.thread.join(5)
            self.server = None

    @property
    def accepted(self) -> list[Request]:
        """The requests answered 200: what a phone would have shown."""
        with self.lock:
            return [r for r in self.requests if r.status == 200]

    def url(self, scheme: str = "ntfy", topic: str = TOPIC, cred: str = "",
            query: str = "") -> str:
        return f"{scheme}://{cred}127.0.0.1:{self.port}/{topic}{query}"




# --- an SMTP server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Smtp:
    port: int
    messages: list[tuple[str, list[str], email.message.EmailMessage]]
    logins: list[tuple[str, str]]


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Smtp(0, [], [])

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
            box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            return "250 Message accepted for delivery"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, pw = auth_data.login.decode(), auth_data.password.decode()
            box.logins.append((user, pw))
            ok = user == "alice" and pw == PASSWORD
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)

    for _ in range(5):  # the free port may be taken between the probe and the bind
        box.port = free_port()
        controller = Controller(Handler(), hostname="127.0.0.1", port=box.port,
                                authenticator=authenticator, auth_require_tls=False,
                                ready_timeout=5.0)
        try:
            controller.start()
            break
        except Exception:  # pragma: no cover - a port race
            continue
    else:  # pragma: no cover
        pytest.fail("could not start the SMTP server")
    try:
        yield box
    finally:
        controller.stop()


# --- messages --------------------------------------------------------------------------------


def make_message(severity: str = "warning", *, key: str = "12:Pieter", title: str = "AnyDesk "
                 "session on the laptop", created: float = 1_700_000_000.0,
                 alert_id: str = "12-1", language: str = "en") -> Message:
    return Message(
        key=key, alert_id=alert_id, session_id=int(key.split(":")[0]), carer="Pieter",
        language=language, severity=severity, title=title,
        body="Someone is controlling Maria's laptop with AnyDesk.\nStarted 14:02.",
        tags=["computer"],
        actions=[Action("block", "Block now", "http://192.168.1.2:8787/a/BLOCKTOKEN"),
                 Action("allow", "Allow for 2 h", "http://192.168.1.2:8787/a/ALLOWTOKEN")],
        created=created)


DELIVERY = DeliveryId(row=7, revision=1, instance="ab12cd34", key="12:Pieter")


# --- ntfy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity,priority,tag", [("info", 3, "information_source"),
                                                   ("warning", 4, "warning"),
                                                   ("critical", 5, "rotating_light")])
def test_ntfy_publishes_json_with_priority_tags_and_view_actions(
        ntfy: FakeNtfy, severity: str, priority: int, tag: str) -> None:
    Senders().send(ntfy.url(), make_message(severity), DELIVERY)
    [req] = ntfy.requests
    assert req.path == "/"  # JSON publishing goes to the server root
    assert req.headers["content-type"].startswith("application/json")
    assert req.netwatch_id == "7.1@ab12cd34"
    assert req.headers["x-netwatch-key"] == "12:Pieter"
    body = req.json
    assert body["topic"] == TOPIC
    assert body["title"] == "AnyDesk session on the laptop"
    assert body["message"].startswith("Someone is controlling Maria's laptop")
    assert body["priority"] == priority
    assert body["tags"] == [tag, "computer"]
    assert body["actions"] == [
        {"action": "view", "label": "Block now", "url": "http://192.168.1.2:8787/a/BLOCKTOKEN"},
        {"action": "view", "label": "Allow for 2 h",
         "url": "http://192.168.1.2:8787/a/ALLOWTOKEN"}]
    assert "authorization" not in req.headers


def test_ntfy_credentials_token_and_priority_override(ntfy: FakeNtfy) -> None:
    s = Senders()
    s.send(ntfy.url(cred=f"alice:{PASSWORD}@"), make_message(), DELIVERY)
    s.send(ntfy.url(query=f"?token={TOKEN}&priority=min&tags=house"), make_message(), DELIVERY)
    s.send(ntfy.url(cred=f"{TOKEN}@", query="?priority=urgent"), make_message("info"),
           DELIVERY)
    basic, bearer, bearer2 = ntfy.requests
    assert basic.headers["authorization"] == "Basic " + base64.b64encode(
        f"alice:{PASSWORD}".encode()).decode()
    assert bearer.headers["authorization"] == f"Bearer {TOKEN}"
    assert bearer.json["priority"] == 1
    assert bearer.json["tags"] == ["warning", "computer", "house"]
    assert bearer2.headers["authorization"] == f"Bearer {TOKEN}"
    assert bearer2.json["priority"] == 5


def test_ntfy_several_topics_and_non_ascii(ntfy: FakeNtfy) -> None:
    m = make_message(title="Zoë: AnyDesk-sessie op de laptop — nu blokkeren?")
    m.carer, m.key = "Zoë", "12:Zoë"
    Senders().send(f"ntfy://127.0.0.1:{ntfy.port}/one/two", m,
                   DeliveryId(1, 1, "x", m.key))
    assert [r.json["topic"] for r in ntfy.requests] == ["one", "two"]
    assert ntfy.requests[0].json["title"] == m.title


def test_ntfy_errors_name_the_service_and_hide_secrets(ntfy: FakeNtfy) -> None:
    ntfy.auth = "Bearer the-right-one"
    url = ntfy.url(cred=f"alice:{PASSWORD}@", query=f"?token={TOKEN}")
    with pytest.raises(SendError) as e:
        Senders().send(url, make_message(), DELIVERY)
    text = str(e.value)
    assert "HTTP 403" in text and "forbidden" in text
    assert f"127.0.0.1:{ntfy.port}" in text
    for secret in (TOKEN, PASSWORD, TOPIC):
        assert secret not in text

    ntfy.auth, ntfy.status = None, 503
    with pytest.raises(SendError, match="HTTP 503 Service Unavailable: service unavailable"):
        Senders().send(ntfy.url(), make_message(), DELIVERY)

    port = ntfy.port
    ntfy.stop()
    with pytest.raises(SendError, match="connection refused") as e:
        Senders().send(f"ntfy://alice:{PASSWORD}@127.0.0.1:{port}/{TOPIC}", make_message(),
                       DELIVERY)
    assert PASSWORD not in str(e.value) and TOPIC not in str(e.value)


def test_ntfy_times_out_within_the_limit() -> None:
    # A listener that accepts and never answers: the sender gives up after its timeout.
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with pytest.raises(SendError, match="no answer within 0.3 s"):
            Senders(timeout=0.3).send(f"ntfy://127.0.0.1:{port}/{TOPIC}", make_message(),
                                      DELIVERY)


def test_bad_ntfy_priority_is_an_error() -> None:
    with pytest.raises(SendError, match="unknown ntfy priority"):
        Senders().send("ntfy://127.0.0.1:9/t?priority=loud", make_message(), DELIVERY)


# --- JSON webhook ----------------------------------------------------------------------------


def test_json_webhook_posts_the_message(ntfy: FakeNtfy) -> None:
    url = f"json://hook:{PASSWORD}@127.0.0.1:{ntfy.port}/hooks/netwatch?+X-Home=maria&a=1"
    Senders().send(url, make_message("critical"), DELIVERY)
    [req] = ntfy.requests
    assert req.path == "/hooks/netwatch?a=1"
    assert req.headers["x-home"] == "maria"
    assert req.netwatch_id == "7.1@ab12cd34"
    assert req.headers["authorization"].startswith("Basic ")
    body = req.json
    assert body["title"] == "AnyDesk session on the laptop"
    assert body["body"] == body["message"]
    assert body["severity"] == "critical" and body["type"] == "failure"
    assert body["key"] == "12:Pieter" and body["alert_id"] == "12-1"
    assert body["session_id"] == 12 and body["id"] == "7.1@ab12cd34"
    assert body["actions"][0] == {"kind": "block", "label": "Block now",
                                  "url": "http://192.168.1.2:8787/a/BLOCKTOKEN"}


# --- e-mail ----------------------------------------------------------------------------------


def test_mail_subject_body_headers_and_login(smtp: Smtp) -> None:
    url = (f"mailto://alice:{PASSWORD}@127.0.0.1:{smtp.port}"
           "?to=pieter@example.org&from=netwatch@example.org")
    Senders().send(url, make_message("critical"), DELIVERY)
    assert smtp.logins == [("alice", PASSWORD)]
    [(sender, rcpts, msg)] = smtp.messages
    assert sender == "netwatch@example.org"
    assert rcpts == ["pieter@example.org"]
    assert msg["Subject"] == "AnyDesk session on the laptop"
    assert msg["To"] == "pieter@example.org"
    assert msg["Message-ID"] == "<netwatch.7.1.ab12cd34@example.org>"
    assert msg["X-Netwatch-Severity"] == "critical"
    assert msg["X-Netwatch-Id"] == "7.1@ab12cd34"
    assert msg["X-Netwatch-Key"] == "12:Pieter"
    assert msg["Importance"] == "high"
    body = msg.get_content().replace("\r\n", "\n")
    assert body.startswith("Someone is controlling Maria's laptop with AnyDesk.\n")
    assert "Block now: http://192.168.1.2:8787/a/BLOCKTOKEN\n" in body
    assert "Allow for 2 h: http://192.168.1.2:8787/a/ALLOWTOKEN\n" in body


def test_mail_recipients_in_path_and_default_sender(smtp: Smtp) -> None:
    url = f"mailto://127.0.0.1:{smtp.port}/a@example.org/b@example.org?cc=c@example.org"
    Senders().send(url, make_message("info"), DELIVERY)
    [(sender, rcpts, msg)] = smtp.messages
    assert sender == "netwatch@127.0.0.1"
    assert rcpts == ["a@example.org", "b@example.org", "c@example.org"]
    assert msg["Cc"] == "c@example.org"
    assert smtp.logins == []


def test_mail_wrong_password_fails_without_showing_it(smtp: Smtp) -> None:
    url = f"mailto://alice:wrong-{PASSWORD}@127.0.0.1:{smtp.port}?to=p@example.org"
    with pytest.raises(SendError, match="log in: SMTP 535") as e:
        Senders().send(url, make_message(), DELIVERY)
    assert PASSWORD not in str(e.value)
    assert smtp.messages == []


def test_mail_links_are_not_repeated_when_the_body_has_them() -> None:
    m = make_message()
    m.body += "\n\nBlock now: http://192.168.1.2:8787/a/BLOCKTOKEN"
    text = mail_message(m, DELIVERY, "n@example.org", ["p@example.org"]).get_content()
    assert isinstance(text, str)
    assert text.count("BLOCKTOKEN") == 1 and text.count("ALLOWTOKEN") == 1


# --- Apprise ---------------------------------------------------------------------------------


def test_other_schemes_fail_clearly_without_apprise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    url = f"tgram://123456789:{TOKEN}/987654"
    with pytest.raises(SendError) as e:
        Senders().send(url, make_message(), DELIVERY)
    assert APPRISE_MISSING in str(e.value)
    assert TOKEN not in str(e.value)


def test_other_schemes_go_through_apprise(ntfy: FakeNtfy) -> None:
    pytest.importorskip("apprise")
    # Apprise's form:// posts a form: a scheme netwatch does not speak itself.
    Senders().send(f"form://127.0.0.1:{ntfy.port}/{TOPIC}", make_message("critical"),
                   DELIVERY)
    [req] = ntfy.requests
    form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
    assert form["title"] == "AnyDesk session on the laptop"
    assert form["type"] == "failure"
    assert "Block now: http://192.168.1.2:8787/a/BLOCKTOKEN" in form["message"]

    ntfy.status = 503
    with pytest.raises(SendError) as e:
        Senders().send(f"form://alice:{PASSWORD}@127.0.0.1:{ntfy.port}/{TOPIC}",
                       make_message(), DELIVERY)
    assert PASSWORD not in str(e.value) and TOPIC not in str(e.value)
    assert "form://" in str(e.value)


# --- secrets ---------------------------------------------------------------------------------


def test_scrub_hides_every_secret_part() -> None:
    url = f"ntfy://alice:{PASSWORD}@ntfy.example.org/{TOPIC}?token={TOKEN}"
    text = f"failed for {url}; got {TOKEN} and {PASSWORD} on {TOPIC}"
    out = scrub(text, url)
    assert "ntfy.example.org" in out
    for secret in (TOKEN, PASSWORD, TOPIC):
        assert secret not in out
    assert TOKEN in secret_parts(url)
    # A token in the host position (Telegram) is secret too.
    assert "123456789:ABCDEF" not in scrub("bot 123456789:ABCDEF failed",
                                           "tgram://123456789:ABCDEF/42")


# --- netwatch alert test ---------------------------------------------------------------------


def write_household(path: Path, carers: list[tuple[str, str, list[str]]]) -> Path:
    lines = ["timezone: Europe/Brussels", "people:", "  Maria:", "    language: nl",
             "carers:"]
    for name, lang, urls in carers:
        lines += [f"  - name: {name}", f"    language: {lang}", "    notify:"]
        lines += [f"      - \"{u}\"" for u in urls]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_alert_test_reports_each_target(tmp_path: Path, ntfy: FakeNtfy, smtp: Smtp) -> None:
    dead = free_port()
    ok_ntfy = ntfy.url(query=f"?token={TOKEN}")
    mail = (f"mailto://alice:{PASSWORD}@127.0.0.1:{smtp.port}"
            "?to=pieter@example.org&from=netwatch@example.org")
    dead_ntfy = f"ntfy://alice:{PASSWORD}@127.0.0.1:{dead}/{TOPIC}"
    hh = write_household(tmp_path / "household.yaml",
                         [("Pieter", "nl", [ok_ntfy, mail]), ("Anne", "en", [dead_ntfy])])
    result = CliRunner().invoke(main, ["alert", "test", "--household", str(hh),
                                       "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Pieter: ntfy://127.0.0.1:{ntfy.port}/****: ok"
    assert lines[1] == f"Pieter: mailto://****@127.0.0.1:{smtp.port}/****: ok"
    assert lines[2].startswith(f"Anne: ntfy://****@127.0.0.1:{dead}/****: FAILED: ")
    assert "connection refused" in lines[2]
    assert lines[3].startswith("outbox: 0 waiting")
    for secret in (TOKEN, PASSWORD, TOPIC):
        assert secret not in result.output
    # Pieter reads Dutch.
    [req] = ntfy.requests
    assert req.json["title"] == "netwatch: testbericht"
    assert req.json["priority"] == 3
    [(_, _, msg)] = smtp.messages
    assert msg["Subject"] == "netwatch: testbericht"

    hh = write_household(tmp_path / "ok.yaml", [("Anne", "fr", [ok_ntfy])])
    result = CliRunner().invoke(main, ["alert", "test", "--household", str(hh)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Anne: ntfy://127.0.0.1:{ntfy.port}/****: ok\n"
    assert ntfy.requests[-1].json["title"] == "netwatch : message de test"


def test_alert_test_without_addresses_or_file(tmp_path: Path) -> None:
    hh = write_household(tmp_path / "h.yaml", [("Anne", "en", [])])
    result = CliRunner().invoke(main, ["alert", "test", "--household", str(hh)])
    assert result.exit_code == 1
    assert "no carer" in result.output
    result = CliRunner().invoke(main, ["alert", "test", "--household",
                                       str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
