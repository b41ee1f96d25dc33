"""The control endpoint: a real server on 127.0.0.1, the control store, the dry-run blocker.

Every server here listens on loopback only, on a port the system picks, and is stopped at
the end of its test (and by a watchdog after WATCHDOG_S, should a test hang).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from netwatch.actions import (
    ActionRefused,
    ActionRequest,
    load_or_create_secret,
    make_link,
    token_ref,
)
from netwatch.cli import main
from netwatch.control import (
    ControlHTTPServer,
    ControlService,
    ControlStore,
    DryRunBlocker,
    make_server,
    parse_listen,
    pick_lang,
    redact,
)
from netwatch.eventlog import iso_timestamp

NOW = 1_709_650_000.0  # 2024-03-05 14:46:40 UTC
WATCHDOG_S = 30
TIMEOUT_S = 5
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000")  # Suricata's form


@dataclass
class Env:
    state: Path
    eve: Path
    secret: bytes
    store: ControlStore
    service: ControlService
    server: ControlHTTPServer
    clock: list[float] = field(default_factory=lambda: [NOW])
    tokens: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def link(self, **kw: Any) -> str:
        args: dict[str, Any] = dict(action="block", session_id=12, alert_id="12-3",
                                    carer="Sophie", device="Maria's laptop",
                                    expires_at=self.clock[0] + 86400)
        args.update(kw)
        secret = args.pop("secret", self.secret)
        url = make_link(secret, f"http://127.0.0.1:{self.port}", **args)
        token = url.rsplit("/a/", 1)[1]
        self.tokens.append(token)
        return token

    def request(self, method: str, path: str, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            body = b"" if method == "POST" else None
            conn.request(method, path, body=body,
                         headers={"User-Agent": "test-phone/1.0", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, \
                resp.read().decode("utf-8")
        finally:
            conn.close()

    def get(self, token: str, **kw: Any) -> tuple[int, dict[str, str], str]:
        return self.request("GET", f"/a/{token}", **kw)

    def post(self, token: str, **kw: Any) -> tuple[int, dict[str, str], str]:
        return self.request("POST", f"/a/{token}", **kw)

    def events(self) -> list[dict[str, Any]]:
        if not self.eve.exists():
            return []
        return [json.loads(ln) for ln in self.eve.read_text().splitlines() if ln.strip()]


def _start(tmp_path: Path, blocker: Any = None) -> Generator[Env, None, None]:
    state = tmp_path / "state"
    secret = load_or_create_secret(state)
    store = ControlStore(state)
    clock = [NOW]
    eve = tmp_path / "eve.json"
    service = ControlService(secret, store, blocker or DryRunBlocker(lambda: clock[0]),
                             eve_log=str(eve))
    server = make_server(service, "127.0.0.1", 0, clock=lambda: clock[0], tz=UTC)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    watchdog = threading.Timer(WATCHDOG_S, server.shutdown)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield Env(state, eve, secret, store, service, server, clock)
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from _start(tmp_path)


# ------------------------------------------------------------------ pages and statuses


def test_healthz_and_security_headers(env: Env) -> None:
    status, headers, body = env.request("GET", "/healthz")
    assert (status, body) == (200, "ok\n")
    assert "no-store" in headers["cache-control"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert env.request("GET", "/nothing-here")[0] == 404


def test_get_shows_confirmation_and_does_not_act(env: Env) -> None:
    token = env.link()
    for _ in range(3):  # a previewer, a mail scanner, the carer
        status, headers, body = env.get(token)
        assert status == 200
        assert "Block this connection?" in body and "Block now" in body
        assert '<form method="post">' in body and "<script" not in body.lower()
        assert "Maria&#x27;s laptop" in body and "Sophie" in body
        assert token not in body
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "no-store" in headers["cache-control"]
    assert env.store.records() == [] and env.events() == []
    assert env.post(token)[0] == 200  # the GETs did not use the link up


@pytest.mark.parametrize("lang,block_q,allow_q", [
    ("en", "Block this connection?", "Allow for 2 hours?"),
    ("nl", "Deze verbinding blokkeren?", "2 uur toestaan?"),
    ("fr", "Bloquer cette connexion ?", "Autoriser pendant 2 heures ?"),
    ("de", "Diese Verbindung sperren?", "Für 2 Stunden erlauben?"),
])
def test_confirmation_in_the_carers_language(env: Env, lang: str, block_q: str,
                                             allow_q: str) -> None:
    status, _h, body = env.get(env.link(lang=lang))
    assert status == 200 and block_q in body and f'lang="{lang}"' in body
    status, _h, body = env.get(env.link(action="allow", lang=lang))
    assert status == 200 and allow_q in body


def test_language_falls_back_to_the_browser() -> None:
    assert pick_lang(None, accept_language="de-DE,de;q=0.9,en;q=0.8") == "de"
    assert pick_lang(None, accept_language="es, fr;q=0.5, nl;q=0.7") == "nl"
    assert pick_lang("fr", accept_language="de") == "fr"
    assert pick_lang(None, accept_language=None) == "en"


def test_post_blocks_once_records_and_writes_the_event(env: Env) -> None:
    token = env.link()
    status, headers, body = env.post(token)
    assert status == 200
    assert "Recorded" in body and "Test mode" in body and "nothing" in body
    assert headers["referrer-policy"] == "no-referrer"

    [rec] = env.store.records()
    assert (rec.carer, rec.action, rec.session_id, rec.alert_id, rec.device) == \
        ("Sophie", "block", 12, "12-3", "Maria's laptop")
    assert rec.at == NOW and rec.client == "127.0.0.1" and rec.user_agent == "test-phone/1.0"
    assert rec.outcome == "done" and rec.result is not None

    [ev] = env.events()
    assert ev["event_type"] == "block" and ISO.fullmatch(ev["timestamp"])
    assert set(ev["block"]) == {"id", "action", "target", "peers", "expires", "reason"}
    assert ev["block"]["action"] == "add" and ev["block"]["expires"] is None
    assert ev["block"]["target"] == "Maria's laptop" and ev["block"]["peers"] == []
    assert "dry run" in ev["block"]["reason"] and "Sophie" in ev["block"]["reason"]
    assert rec.result == ev

    env.clock[0] = NOW + 60
    status, _h, body = env.post(token)
    assert status == 410 and "already used at 14:46" in body
    assert len(env.store.records()) == 1 and len(env.events()) == 1
    status, _h, body = env.get(token)
    assert status == 410 and "already used at 14:46" in body


def test_block_events_match_the_event_schema(env: Env) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parent.parent / "netwatch" / "schema" /
                         "eve.schema.json").read_text())
    env.post(env.link())
    env.post(env.link(action="allow", device=None))
    events = env.events()
    assert len(events) == 2
    assert events[1]["block"]["target"] == "session 12"
    for ev in events:
        jsonschema.validate(ev, schema, cls=jsonschema.Draft202012Validator)


def test_post_allow_lasts_two_hours(env: Env) -> None:
    status, _h, body = env.post(env.link(action="allow", lang="nl"))
    assert status == 200 and "Genoteerd" in body and "16:46" in body
    [rec] = env.store.records()
    assert rec.action == "allow" and rec.until == NOW + 7200 and rec.duration_s == 7200
    [ev] = env.events()
    assert ev["block"]["action"] == "remove"
    assert ev["block"]["expires"] == iso_timestamp(NOW + 7200)


def test_tampered_expired_malformed(env: Env) -> None:
    token = env.link()
    payload, tag = token.split(".")
    tampered = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:] + "." + tag
    status, _h, body = env.post(tampered)
    assert status == 403 and "not valid" in body
    assert env.post(env.link(secret=bytes(32)))[0] == 403  # made by another install

    expired = env.link(expires_at=NOW - 1)
    status, _h, body = env.post(expired)
    assert status == 410 and "expired" in body
    assert env.get(expired)[0] == 410
    boundary = env.link(expires_at=NOW)
    assert env.post(boundary)[0] == 410

    for bad in ("garbage", token[:-3], token + "x", "%00%01"):
        status, _h, body = env.post(bad)
        assert status == 400 and "incomplete or damaged" in body, bad
        assert env.get(bad)[0] == 400

    assert env.store.records() == [] and env.events() == []
    assert env.post(token)[0] == 200  # the genuine link still works


def test_refusal_page_in_the_links_language(env: Env) -> None:
    token = env.link(lang="de")
    assert env.post(token)[0] == 200
    status, _h, body = env.post(token)
    assert status == 410 and "bereits um 14:46 benutzt" in body
    status, _h, body = env.post("garbage", headers={"Accept-Language": "fr-BE,fr;q=0.9"})
    assert status == 400 and "incomplet" in body


def test_concurrent_double_post_acts_once(env: Env) -> None:
    for _ in range(5):
        token = env.link()
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def go(tok: str = token, b: threading.Barrier = barrier,
               out: list[int] = statuses) -> None:
            b.wait(TIMEOUT_S)
            out.append(env.post(tok)[0])

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S * 2)
        assert sorted(statuses) == [200, 410]
    assert len(env.store.records()) == 5 and len(env.events()) == 5


def test_prefix_path_behind_a_reverse_proxy(env: Env) -> None:
    token = env.link()
    assert env.request("GET", f"/netwatch/a/{token}")[0] == 200
    assert env.request("POST", f"/netwatch/a/{token}")[0] == 200


def test_forwarded_for_is_recorded_as_a_hint(env: Env) -> None:
    env.post(env.link(), headers={"X-Forwarded-For": "198.51.100.7"})
    [rec] = env.store.records()
    assert rec.client == "127.0.0.1 (forwarded for 198.51.100.7)"


# ------------------------------------------------------------------ the blocking layer


class _Refusing:
    def block(self, request: ActionRequest) -> dict[str, Any]:
        return {"timestamp": iso_timestamp(NOW), "event_type": "block",
                "block": {"id": "x", "action": "refused", "target": "192.168.1.1",
                          "peers": [], "expires": None, "reason": "that is the router"}}

    def allow(self, request: ActionRequest, until: float) -> dict[str, Any]:
        return self.block(request)


class _Broken:
    def block(self, request: ActionRequest) -> dict[str, Any]:
        raise RuntimeError("backend exploded")

    def allow(self, request: ActionRequest, until: float) -> dict[str, Any]:
        raise RuntimeError("backend exploded")


def test_blocker_refusal_and_failure_are_recorded(tmp_path: Path) -> None:
    gen = _start(tmp_path / "r", _Refusing())
    env = next(gen)
    try:
        status, _h, body = env.post(env.link())
        assert status == 409 and "that is the router" in body
        assert env.store.records()[0].outcome == "refused"
        assert env.events()[0]["block"]["action"] == "refused"
    finally:
        gen.close()
    gen = _start(tmp_path / "b", _Broken())
    env = next(gen)
    try:
        token = env.link()
        status, _h, body = env.post(token)
        assert status == 500 and "could not" in body
        [rec] = env.store.records()
        assert rec.outcome == "failed"
        [ev] = env.events()
        assert ev["block"]["action"] == "failed" and "RuntimeError" in ev["block"]["reason"]
        assert env.post(token)[0] == 410  # recorded before it was handed on: not twice
    finally:
        gen.close()


def test_recover_hands_on_what_a_crash_left(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    store = ControlStore(tmp_path)
    eve = tmp_path / "eve.json"
    service = ControlService(secret, store, DryRunBlocker(lambda: NOW), eve_log=str(eve))
    base = dict(session_id=3, alert_id="3-1", carer="Sophie", device=None,
                expires_at=NOW + 86400)
    blk = ActionRequest(action="block", nonce="nonce-block-0001", **base)  # type: ignore[arg-type]
    alw = ActionRequest(action="allow", nonce="nonce-allow-0001", duration_s=60,
                        **base)  # type: ignore[arg-type]
    store.record(blk, at=NOW, client="127.0.0.1", user_agent="", ref="r1")
    store.record(alw, at=NOW - 120, client="127.0.0.1", user_agent="", ref="r2")
    with pytest.raises(ActionRefused) as e:
        store.record(blk, at=NOW + 1, client="127.0.0.1", user_agent="", ref="r1")
    assert e.value.reason_code == "used" and e.value.used_at == NOW
    assert len(store.pending()) == 2
    assert service.recover(NOW) == 1
    assert {r.nonce: r.outcome for r in store.records()} == \
        {"nonce-block-0001": "done", "nonce-allow-0001": "lapsed"}
    assert [json.loads(ln)["block"]["action"] for ln in eve.read_text().splitlines()] == ["add"]
    assert store.pending() == []


# ------------------------------------------------------------------ secrets


def _forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("=")]


def _raw(port: int, request_line: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as s:
        s.sendall(request_line.encode() + b"\r\n\r\n")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_secrets_never_in_logs_store_or_events(env: Env, caplog: pytest.LogCaptureFixture,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    good = env.link()
    env.get(good)
    env.post(good)
    env.post(good)  # used
    payload, tag = good.split(".")
    env.post(payload + "." + ("A" if tag[0] != "A" else "B") + tag[1:])  # tampered
    env.post(env.link(expires_at=NOW - 5))  # expired
    env.post(env.link(action="allow"))
    env.post(good[:-4])  # malformed
    # A request line the server cannot parse: its error log quotes the line.
    for line, code in ((f"GET /a/{good} HTTP/1.1 extra-words", b"400"),
                       (f"GET /a/{good} HTTP/9.9", b"505"),
                       (f"BREW /a/{good} HTTP/1.0", b"501")):
        answer = _raw(env.port, line)
        assert code in answer and good.encode() not in answer, line

    out, err = capfd.readouterr()
    runner = CliRunner()
    text_log = runner.invoke(main, ["control", "log", "--state-dir", str(env.state)])
    json_log = runner.invoke(main, ["control", "log", "--state-dir", str(env.state),
                                    "--format", "json"])
    assert text_log.exit_code == 0 and "Sophie: block" in text_log.output
    assert json_log.exit_code == 0 and json.loads(json_log.output)[0]["carer"] == "Sophie"

    store_bytes = b"".join(p.read_bytes() for p in env.state.glob("control.sqlite*"))
    haystacks = {"log records": caplog.text, "stdout": out, "stderr": err,
                 "control log": text_log.output + json_log.output,
                 "events": env.eve.read_text(),
                 "store": store_bytes.decode("latin-1")}
    assert "/a/#" + token_ref(good) in caplog.text  # the requests were logged, by ref
    needles = _forms(env.secret) + env.tokens + [t.split(".")[1] for t in env.tokens]
    for where, hay in haystacks.items():
        for needle in needles:
            assert needle not in hay, (where, needle[:12])


def test_redact() -> None:
    assert redact('"GET /a/AAAAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBB HTTP/1.1" 400') \
        .startswith('"GET /a/#')
    assert "BBBBBBBB" not in redact("x AAAAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBB y")
    assert redact("GET /healthz") == "GET /healthz"


# ------------------------------------------------------------------ the command line


def test_cli_link_makes_a_link_the_server_accepts(env: Env) -> None:
    result = CliRunner().invoke(main, [
        "control", "link", "--state-dir", str(env.state), "--action", "allow",
        "--session", "4", "--alert", "4-1", "--carer", "Zoë", "--device", "Opa's pc",
        "--lang", "fr", "--base-url", f"http://127.0.0.1:{env.port}/"])
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith(f"http://127.0.0.1:{env.port}/a/") and len(url) < 300
    env.clock[0] = datetime.now(UTC).timestamp()  # the CLI link expires 24 h from now
    path = url.split(str(env.port), 1)[1]
    status, _h, body = env.request("GET", path)
    assert status == 200 and "Autoriser pendant 2 heures ?" in body
    assert env.request("POST", path)[0] == 200
    [rec] = env.store.records()
    assert (rec.carer, rec.device, rec.session_id, rec.action) == ("Zoë", "Opa's pc", 4, "allow")


def test_cli_log_when_nothing_recorded(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["control", "log", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0 and "no actions recorded" in result.output


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("8787", "host:", ":80", "host:port"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_cli_serve_runs_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "netwatch", "control", "serve", "--state-dir",
         str(tmp_path / "state"), "--listen", "127.0.0.1:0", "--eve-log",
         str(tmp_path / "eve.json")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    timer = threading.Timer(WATCHDOG_S, proc.kill)
    timer.start()
    try:
        assert proc.stderr is not None
        seen = []
        m = None
        while m is None and (line := proc.stderr.readline()):
            seen.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, seen
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=TIMEOUT_S)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT_S * 2) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()
    assert (tmp_path / "state" / "signing.key").is_file()
