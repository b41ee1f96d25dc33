"""The local control endpoint: where a carer's "Block now" / "Allow for 2 h" links land.

``netwatch control serve`` listens (default 127.0.0.1:8787) for the links made by
netwatch/actions.py:

- ``GET /a/<token>`` shows a small confirmation page with one button. It never acts:
  link previewers, chat apps and mail scanners fetch links on their own.
- ``POST /a/<token>`` checks the token (form, signature, expiry), records the nonce as used
  together with who asked for what, from where, in ONE SQLite transaction, and only then
  hands the request to the blocking layer; the answer page says what happened. A link
  used a second time is refused ("already used at 14:02").
- ``GET /healthz`` answers ``ok``.

Statuses: 200 done, 400 malformed link, 403 tampered link (or made by another install),
410 expired or already used, 404 anything else; 409 when the blocking layer refused to
act (its safety rules) and 500 when it failed (the choice is recorded either way).

Reaching it. The links point at ``--base-url``. At home the carer's phone reaches the Pi or
router on the home network (e.g. ``http://netwatch.lan:8787``, listening on the LAN
address rather than 127.0.0.1). Away from home, put it behind the carer's own VPN
(WireGuard/Tailscale into the home network) or behind a reverse proxy with TLS that
forwards ``/a/`` and ``/healthz`` to it (a path prefix is fine: only the end ``/a/<token>``
of the path is used). Do not expose the port to the internet without TLS: a link is a
bearer credential until it is used or expires. Behind a proxy the recorded client address
is the proxy's; ``X-Forwarded-For`` is recorded beside it, as a hint only.

The blocking layer is ``netwatch.block.BlockLayer`` (nftables, or its dry run where nft
cannot be used); ``DryRunBlocker`` here answers with the ``block`` event the architecture
contract describes, saying it is a dry run, for tests of the endpoint alone. With a dry run
the pages say plainly that nothing was changed on the network.

Secrets: the signing key and tokens never reach logs, the control store or events. Logs
name a token by ``token_ref`` (a 10-digit hash prefix); the store keeps the nonce (useless
without the key) and the ref.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .actions import LANGUAGES, ActionRefused, ActionRequest, peek_lang, token_ref, verify
from .eventlog import eve_line, iso_timestamp
from .outbox import journal_mode
from .shown import shown

log = logging.getLogger("netwatch.control")

STORE_FILE = "control.sqlite"
DEFAULT_LISTEN = "127.0.0.1:8787"
MAX_BODY = 64 * 1024
MAX_UA = 200

# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class ActionRecord:
    """One use of a link, as recorded (before it was handed on)."""

    nonce: str
    ref: str
    at: float
    action: str
    session_id: int
    alert_id: str
    carer: str
    device: str | None
    duration_s: int | None
    until: float | None
    client: str
    user_agent: str
    outcome: str  # pending (handed on, no answer yet) | done | refused | failed | lapsed
    result: dict[str, Any] | None

    def request(self, expires_at: int = 0, lang: str | None = None) -> ActionRequest:
        return ActionRequest(action=self.action, session_id=self.session_id,
                             alert_id=self.alert_id, carer=self.carer, device=self.device,
                             expires_at=expires_at, nonce=self.nonce,
                             duration_s=self.duration_s, lang=lang)

    def as_dict(self) -> dict[str, Any]:
        return {"at": iso_timestamp(self.at), "carer": self.carer, "action": self.action,
                "session_id": self.session_id, "alert_id": self.alert_id,
                "device": self.device, "duration_s": self.duration_s,
                "until": iso_timestamp(self.until) if self.until is not None else None,
                "client": self.client, "user_agent": self.user_agent,
                "outcome": self.outcome, "ref": self.ref}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    nonce      TEXT PRIMARY KEY,
    ref        TEXT NOT NULL,
    at         REAL NOT NULL,
    action     TEXT NOT NULL,
    session_id INTEGER NOT NULL,
    alert_id   TEXT NOT NULL,
    carer      TEXT NOT NULL,
    device     TEXT,
    duration_s INTEGER,
    until      REAL,
    client     TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    outcome    TEXT NOT NULL DEFAULT 'pending',
    result     TEXT
);
CREATE INDEX IF NOT EXISTS actions_at ON actions (at);
"""

_COLUMNS = ("nonce, ref, at, action, session_id, alert_id, carer, device, duration_s, until, "
            "client, user_agent, outcome, result")


def _record(r: tuple[Any, ...]) -> ActionRecord:
    return ActionRecord(nonce=r[0], ref=r[1], at=float(r[2]), action=r[3], session_id=r[4],
                        alert_id=r[5], carer=r[6], device=r[7], duration_s=r[8],
                        until=None if r[9] is None else float(r[9]), client=r[10],
                        user_agent=r[11], outcome=r[12],
                        result=json.loads(r[13]) if r[13] else None)


class ControlStore:
    """Used nonces and the actions taken, in ``<state_dir>/control.sqlite`` (WAL mode).

    Every call opens its own connection, so the store is safe to share between the
    server's request threads and other processes (``netwatch control log``).
    """

    def __init__(self, state_dir: str | os.PathLike[str]):
        folder = Path(state_dir)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = folder / STORE_FILE
        fresh = not self.path.exists()
        con = self._connect()
        try:
            con.execute(f"PRAGMA journal_mode={journal_mode(folder)}")
            con.executescript(_SCHEMA)
        finally:
            con.close()
        if fresh:
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=15000")
        return con

    def record(self, req: ActionRequest, *, at: float, client: str, user_agent: str,
               ref: str) -> ActionRecord:
        """Mark the nonce used and record the action, in one transaction.

        Raises ActionRefused("used") with ``used_at`` when the nonce was used before.
        """
        until = req.until(at)
        ua = user_agent[:MAX_UA]
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute("SELECT at FROM actions WHERE nonce = ?",
                                  (req.nonce,)).fetchone()
                if row is None:
                    con.execute(
                        f"INSERT INTO actions ({_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL)",
                        (req.nonce, ref, at, req.action, req.session_id, req.alert_id,
                         req.carer, req.device, req.duration_s, until, client, ua))
                    con.execute("COMMIT")
                else:
                    con.execute("ROLLBACK")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        finally:
            con.close()
        if row is not None:
            raise ActionRefused("used", "The link was already used.", used_at=row[0],
                                request=req)
        return ActionRecord(req.nonce, ref, at, req.action, req.session_id, req.alert_id,
                            req.carer, req.device, req.duration_s, until, client, ua,
                            "pending", None)

    def finish(self, nonce: str, outcome: str, result: dict[str, Any] | None) -> None:
        """Record what the blocking layer answered."""
        con = self._connect()
        try:
            con.execute("UPDATE actions SET outcome = ?, result = ? WHERE nonce = ?",
                        (outcome, None if result is None else
                         json.dumps(result, ensure_ascii=False, separators=(",", ":")),
                         nonce))
        finally:
            con.close()

    def used_at(self, nonce: str) -> float | None:
        con = self._connect()
        try:
            row = con.execute("SELECT at FROM actions WHERE nonce = ?", (nonce,)).fetchone()
        finally:
            con.close()
        return None if row is None else float(row[0])

    def records(self, *, outcome: str | None = None) -> list[ActionRecord]:
        """All recorded actions, oldest first (only those with ``outcome`` if given)."""
        sql = f"SELECT {_COLUMNS} FROM actions"
        args: tuple[Any, ...] = ()
        if outcome is not None:
            sql += " WHERE outcome = ?"
            args = (outcome,)
        con = self._connect()
        try:
            rows = con.execute(sql + " ORDER BY at, rowid", args).fetchall()
        finally:
            con.close()
        return [_record(r) for r in rows]

    def pending(self) -> list[ActionRecord]:
        """Actions recorded but not answered by the blocking layer (a crash in between)."""
        return self.records(outcome="pending")


# --------------------------------------------------------------------------- blocking


class Blocker(Protocol):
    """The blocking layer, as the control endpoint sees it.

    Each call returns a ``block`` event (architecture contract): ``{"timestamp",
    "event_type": "block", "block": {"id", "action", "target", "peers", "expires",
    "reason"}}`` where ``action`` is ``add`` (blocked), ``remove`` (allowed),
    ``refused`` (the safety layer would not) or ``failed``.
    """

    def block(self, request: ActionRequest) -> dict[str, Any]: ...

    def allow(self, request: ActionRequest, until: float) -> dict[str, Any]: ...


def block_id(request: ActionRequest) -> str:
    return "ctl-" + hashlib.sha256(request.nonce.encode("ascii")).hexdigest()[:10]


def block_event(request: ActionRequest, now: float, action: str, reason: str,
                expires: float | None = None) -> dict[str, Any]:
    target = request.device or f"session {request.session_id}"
    return {"timestamp": iso_timestamp(now), "event_type": "block",
            "block": {"id": block_id(request), "action": action, "target": target,
                      "peers": [], "expires": None if expires is None else
                      iso_timestamp(expires), "reason": reason}}


class DryRunBlocker:
    """Blocks nothing; answers with the ``block`` event a real backend would write."""

    dry_run = True

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock

    def _what(self, request: ActionRequest) -> str:
        on = f" on {request.device}" if request.device else ""
        return (f"session {request.session_id}{on} (alert {request.alert_id}), "
                f"asked by {request.carer}")

    def block(self, request: ActionRequest) -> dict[str, Any]:
        return block_event(request, self.clock(), "add",
                           "dry run: no blocking backend, nothing was blocked; would block "
                           + self._what(request))

    def allow(self, request: ActionRequest, until: float) -> dict[str, Any]:
        return block_event(request, self.clock(), "remove",
                           "dry run: no blocking backend, nothing was changed; would allow "
                           + self._what(request) + f" until {iso_timestamp(until)}",
                           expires=until)


class EventAppender:
    """Appends events (compact JSON lines) to a file, one write per event.

    Opened per event, so log rotation and other writers of the same file are harmless.
    """

    def __init__(self, path: str | None):
        self.path = path
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        if not self.path:
            return
        line = eve_line(event) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True)
class Outcome:
    request: ActionRequest
    record: ActionRecord
    event: dict[str, Any]
    outcome: str  # done | refused | failed


class ControlService:
    """Verify, record, hand on: the endpoint's logic without HTTP (time passed in)."""

    def __init__(self, secret: bytes, store: ControlStore, blocker: Blocker, *,
                 eve_log: str | None = None):
        self._secret = secret
        self.store = store
        self.blocker = blocker
        self.events = EventAppender(eve_log)

    @property
    def dry_run(self) -> bool:
        return bool(getattr(self.blocker, "dry_run", False))

    def check(self, token: str, now: float) -> ActionRequest:
        """What a link asks for, or ActionRefused; records nothing (for GET)."""
        req = verify(self._secret, token, now)
        used = self.store.used_at(req.nonce)
        if used is not None:
            raise ActionRefused("used", "The link was already used.", used_at=used,
                                request=req)
        return req

    def act(self, token: str, now: float, *, client: str, user_agent: str) -> Outcome:
        """Verify, record (write-ahead), hand to the blocker, record and log its answer."""
        req = verify(self._secret, token, now)
        rec = self.store.record(req, at=now, client=client, user_agent=user_agent,
                                ref=token_ref(token))
        return self._hand_on(rec, req, now)

    def recover(self, now: float) -> int:
        """Hand on the actions a crash left recorded but unanswered; their number."""
        done = 0
        for rec in self.store.pending():
            req = rec.request()
            if rec.action == "allow" and rec.until is not None and rec.until <= now:
                self.store.finish(rec.nonce, "lapsed", None)
                log.warning("control: %s allow of session %d lapsed before it was handed "
                            "on", rec.ref, rec.session_id)
                continue
            self._hand_on(rec, req, now)
            done += 1
        return done

    def _hand_on(self, rec: ActionRecord, req: ActionRequest, now: float) -> Outcome:
        try:
            if req.action == "block":
                event = self.blocker.block(req)
            else:
                assert rec.until is not None
                event = self.blocker.allow(req, rec.until)
            kind = str(event.get("block", {}).get("action", ""))
            outcome = kind if kind in ("refused", "failed") else "done"
        except Exception as e:  # the blocking layer must not take the endpoint down
            log.error("control: %s: the blocking layer failed: %s", rec.ref, type(e).__name__)
            event = block_event(req, now, "failed",
                                f"the blocking layer failed ({type(e).__name__})")
            outcome = "failed"
        self.store.finish(rec.nonce, outcome, event)
        try:
            self.events.write(event)
        except OSError as e:
            log.error("control: cannot append to the event log %s: %s", self.events.path,
                      e.strerror or e)
        log.info("control: %s %s of session %d (alert %s, %s) by %s from %s: %s", rec.ref,
                 rec.action, rec.session_id, shown(rec.alert_id),
                 shown(rec.device or "unknown device"), shown(rec.carer), shown(rec.client),
                 outcome)
        return Outcome(req, rec, event, outcome)


# --------------------------------------------------------------------------- pages

_T: dict[str, dict[str, str]] = {
    "en": {
        "q_block": "Block this connection?",
        "q_allow": "Allow for {dur}?",
        "btn_block": "Block now",
        "btn_allow": "Allow for {dur}",
        "detail": "Remote access on {device} (session {session}, alert {alert}).",
        "unknown_device": "an unknown device",
        "sent_to": "This link was sent to {carer}. It works once, until {time}.",
        "note_block": "Blocking cuts this remote-access connection.",
        "note_allow": "netwatch will treat this session as expected help for {dur}.",
        "t_done_block": "Blocked",
        "done_block": "The remote-access connection on {device} is being blocked.",
        "t_done_allow": "Allowed",
        "done_allow": "The session on {device} is allowed until {time}.",
        "t_recorded": "Recorded",
        "rec_block": "Your choice to block the connection on {device} was recorded.",
        "rec_allow": "Your choice to allow the session on {device} until {time} was "
                     "recorded.",
        "dry_run": "Test mode: blocking is not set up on this netwatch yet, so nothing "
                   "was changed on the network.",
        "advice": "If you think this is a scam, phone now and ask for the computer to be "
                  "switched off.",
        "t_refused": "Link not accepted",
        "r_expired": "This link has expired (it was valid until {time}). Nothing was done.",
        "r_used": "This link was already used at {time}. Nothing more was done.",
        "r_tampered": "This link is not valid: it was changed, or it does not come from "
                      "this netwatch. Nothing was done.",
        "r_malformed": "This link is incomplete or damaged. Nothing was done. Open the "
                       "whole link from the alert again.",
        "t_not_done": "Not done",
        "nd_refused": "Your choice was recorded, but netwatch will not do it: {reason}",
        "nd_failed": "Your choice was recorded, but netwatch could not carry it out. The "
                     "netwatch log has the details.",
        "t_not_found": "Not found",
        "not_found": "There is nothing here.",
        "hour": "1 hour", "hours": "{n} hours", "minute": "1 minute", "minutes": "{n} minutes",
    },
    "nl": {
        "q_block": "Deze verbinding blokkeren?",
        "q_allow": "{dur} toestaan?",
        "btn_block": "Nu blokkeren",
        "btn_allow": "{dur} toestaan",
        "detail": "Bediening op afstand op {device} (sessie {session}, melding {alert}).",
        "unknown_device": "een onbekend apparaat",
        "sent_to": "Deze link is naar {carer} gestuurd. Hij werkt één keer, tot {time}.",
        "note_block": "Blokkeren verbreekt deze verbinding op afstand.",
        "note_allow": "netwatch ziet deze sessie {dur} lang als verwachte hulp.",
        "t_done_block": "Geblokkeerd",
        "done_block": "De verbinding op afstand op {device} wordt geblokkeerd.",
        "t_done_allow": "Toegestaan",
        "done_allow": "De sessie op {device} is toegestaan tot {time}.",
        "t_recorded": "Genoteerd",
        "rec_block": "Uw keuze om de verbinding op {device} te blokkeren is genoteerd.",
        "rec_allow": "Uw keuze om de sessie op {device} toe te staan tot {time} is "
                     "genoteerd.",
        "dry_run": "Testmodus: blokkeren is op deze netwatch nog niet ingesteld, dus er is "
                   "niets aan het netwerk veranderd.",
        "advice": "Denkt u aan oplichting? Bel dan nu en vraag om de computer uit te zetten.",
        "t_refused": "Link niet aanvaard",
        "r_expired": "Deze link is verlopen (hij was geldig tot {time}). Er is niets gedaan.",
        "r_used": "Deze link is al gebruikt om {time}. Er is niets meer gedaan.",
        "r_tampered": "Deze link is niet geldig: hij is veranderd of komt niet van deze "
                      "netwatch. Er is niets gedaan.",
        "r_malformed": "Deze link is onvolledig of beschadigd. Er is niets gedaan. Open de "
                       "volledige link uit de melding opnieuw.",
        "t_not_done": "Niet uitgevoerd",
        "nd_refused": "Uw keuze is genoteerd, maar netwatch voert ze niet uit: {reason}",
        "nd_failed": "Uw keuze is genoteerd, maar netwatch kon ze niet uitvoeren. Het "
                     "netwatch-logboek heeft de details.",
        "t_not_found": "Niet gevonden",
        "not_found": "Hier is niets.",
        "hour": "1 uur", "hours": "{n} uur", "minute": "1 minuut", "minutes": "{n} minuten",
    },
    "fr": {
        "q_block": "Bloquer cette connexion ?",
        "q_allow": "Autoriser pendant {dur} ?",
        "btn_block": "Bloquer maintenant",
        "btn_allow": "Autoriser pendant {dur}",
        "detail": "Prise de contrôle à distance sur {device} (session {session}, "
                  "alerte {alert}).",
        "unknown_device": "un appareil inconnu",
        "sent_to": "Ce lien a été envoyé à {carer}. Il ne sert qu'une fois, jusqu'à {time}.",
        "note_block": "Bloquer coupe cette connexion à distance.",
        "note_allow": "netwatch considérera cette session comme une aide attendue pendant "
                      "{dur}.",
        "t_done_block": "Bloqué",
        "done_block": "La connexion à distance sur {device} est en cours de blocage.",
        "t_done_allow": "Autorisé",
        "done_allow": "La session sur {device} est autorisée jusqu'à {time}.",
        "t_recorded": "Enregistré",
        "rec_block": "Votre choix de bloquer la connexion sur {device} a été enregistré.",
        "rec_allow": "Votre choix d'autoriser la session sur {device} jusqu'à {time} a été "
                     "enregistré.",
        "dry_run": "Mode test : le blocage n'est pas encore configuré sur ce netwatch, rien "
                   "n'a donc été changé sur le réseau.",
        "advice": "Si vous pensez à une arnaque, téléphonez maintenant et demandez "
                  "d'éteindre l'ordinateur.",
        "t_refused": "Lien refusé",
        "r_expired": "Ce lien a expiré (il était valable jusqu'à {time}). Rien n'a été fait.",
        "r_used": "Ce lien a déjà été utilisé à {time}. Rien de plus n'a été fait.",
        "r_tampered": "Ce lien n'est pas valable : il a été modifié ou ne vient pas de ce "
                      "netwatch. Rien n'a été fait.",
        "r_malformed": "Ce lien est incomplet ou abîmé. Rien n'a été fait. Ouvrez à nouveau "
                       "le lien complet de l'alerte.",
        "t_not_done": "Non effectué",
        "nd_refused": "Votre choix a été enregistré, mais netwatch ne l'effectue pas : "
                      "{reason}",
        "nd_failed": "Votre choix a été enregistré, mais netwatch n'a pas pu l'effectuer. Le "
                     "journal de netwatch donne les détails.",
        "t_not_found": "Introuvable",
        "not_found": "Il n'y a rien ici.",
        "hour": "1 heure", "hours": "{n} heures", "minute": "1 minute",
        "minutes": "{n} minutes",
    },
    "de": {
        "q_block": "Diese Verbindung sperren?",
        "q_allow": "Für {dur} erlauben?",
        "btn_block": "Jetzt sperren",
        "btn_allow": "Für {dur} erlauben",
        "detail": "Fernzugriff auf {device} (Sitzung {session}, Warnung {alert}).",
        "unknown_device": "ein unbekanntes Gerät",
        "sent_to": "Dieser Link wurde an {carer} geschickt. Er funktioniert einmal, bis "
                   "{time}.",
        "note_block": "Sperren trennt diese Fernzugriffsverbindung.",
        "note_allow": "netwatch behandelt diese Sitzung {dur} lang als erwartete Hilfe.",
        "t_done_block": "Gesperrt",
        "done_block": "Die Fernzugriffsverbindung auf {device} wird gesperrt.",
        "t_done_allow": "Erlaubt",
        "done_allow": "Die Sitzung auf {device} ist bis {time} erlaubt.",
        "t_recorded": "Gespeichert",
        "rec_block": "Ihre Wahl, die Verbindung auf {device} zu sperren, wurde gespeichert.",
        "rec_allow": "Ihre Wahl, die Sitzung auf {device} bis {time} zu erlauben, wurde "
                     "gespeichert.",
        "dry_run": "Testmodus: Auf diesem netwatch ist das Sperren noch nicht eingerichtet, "
                   "im Netzwerk wurde also nichts geändert.",
        "advice": "Wenn Sie Betrug vermuten, rufen Sie jetzt an und bitten Sie, den Computer "
                  "auszuschalten.",
        "t_refused": "Link nicht angenommen",
        "r_expired": "Dieser Link ist abgelaufen (er galt bis {time}). Es wurde nichts "
                     "getan.",
        "r_used": "Dieser Link wurde bereits um {time} benutzt. Es wurde nichts weiter "
                  "getan.",
        "r_tampered": "Dieser Link ist ungültig: Er wurde verändert oder stammt nicht von "
                      "diesem netwatch. Es wurde nichts getan.",
        "r_malformed": "Dieser Link ist unvollständig oder beschädigt. Es wurde nichts getan. "
                       "Öffnen Sie den vollständigen Link aus der Warnung erneut.",
        "t_not_done": "Nicht ausgeführt",
        "nd_refused": "Ihre Wahl wurde gespeichert, aber netwatch führt sie nicht aus: "
                      "{reason}",
        "nd_failed": "Ihre Wahl wurde gespeichert, aber netwatch konnte sie nicht ausführen. "
                     "Details stehen im netwatch-Protokoll.",
        "t_not_found": "Nicht gefunden",
        "not_found": "Hier gibt es nichts.",
        "hour": "1 Stunde", "hours": "{n} Stunden", "minute": "1 Minute",
        "minutes": "{n} Minuten",
    },
}


def text(lang: str, key: str, **values: Any) -> str:
    """A page sentence in ``lang`` with ``values`` filled in (shown escaped, then
    HTML-escaped: a device name from a link cannot reverse the page's text either)."""
    t = _T.get(lang, _T["en"])[key]
    return t.format(**{k: html.escape(shown(v)) for k, v in values.items()}) if values else t


def duration_text(seconds: int, lang: str) -> str:
    t = _T.get(lang, _T["en"])
    if seconds % 3600 == 0:
        n = seconds // 3600
        return t["hour"] if n == 1 else t["hours"].format(n=n)
    n = max(1, round(seconds / 60))
    return t["minute"] if n == 1 else t["minutes"].format(n=n)


def clock_text(ts: float, now: float, tz: tzinfo | None = None) -> str:
    """HH:MM, with the date in front when it is not ``now``'s day (local time or ``tz``)."""
    when = datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts).astimezone()
    today = datetime.fromtimestamp(now, tz) if tz else datetime.fromtimestamp(now).astimezone()
    return when.strftime("%H:%M" if when.date() == today.date() else "%Y-%m-%d %H:%M")


def pick_lang(*choices: str | None, accept_language: str | None = None) -> str:
    """The first known language among ``choices``, else the browser's, else English."""
    for c in choices:
        if c is not None and c in LANGUAGES:
            return c
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        bits = part.strip().split(";")
        code = bits[0].strip().lower()[:2]
        q = 1.0
        for b in bits[1:]:
            if b.strip().startswith("q="):
                try:
                    q = float(b.strip()[2:])
                except ValueError:
                    q = 0.0
        if code in LANGUAGES and q > 0:
            ranked.append((-q, i, code))
    return min(ranked)[2] if ranked else "en"


_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>netwatch: {title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:32em;margin:2em auto;padding:0 1em;
line-height:1.45;color:#111;background:#fff}}
h1{{font-size:1.4em}} .note{{color:#444}}
.warn{{background:#fff3cd;padding:.6em;border-radius:.3em}}
button{{font-size:1.2em;padding:.7em 1.4em;border-radius:.4em;border:0;color:#fff;
background:{colour};cursor:pointer}}
</style></head>
<body><h1>{title}</h1>
{body}
<p class="note"><small>netwatch</small></p>
</body></html>
"""


def page(lang: str, title: str, body: str, colour: str = "#1a5fb4") -> bytes:
    """A complete HTML page (``title`` and ``body`` are already escaped HTML)."""
    return _PAGE.format(lang=lang, title=title, body=body, colour=colour).encode("utf-8")


def confirm_page(req: ActionRequest, lang: str, now: float, tz: tzinfo | None = None) -> bytes:
    device = req.device or text(lang, "unknown_device")
    detail = text(lang, "detail", device=device, session=req.session_id, alert=req.alert_id)
    lines = [f"<p>{detail}</p>"]
    if req.action == "block":
        title = text(lang, "q_block")
        lines.append(f"<p>{text(lang, 'note_block')}</p>")
        button, colour = text(lang, "btn_block"), "#c01c28"
    else:
        dur = duration_text(req.duration_s or 0, lang)
        title = text(lang, "q_allow", dur=dur)
        lines.append(f"<p>{text(lang, 'note_allow', dur=dur)}</p>")
        button, colour = text(lang, "btn_allow", dur=dur), "#26a269"
    lines.append('<form method="post"><p><button type="submit">'
                 f"{button}</button></p></form>")
    lines.append('<p class="note">' + text(lang, "sent_to", carer=req.carer,
                                           time=clock_text(req.expires_at, now, tz)) + "</p>")
    return page(lang, title, "\n".join(lines), colour)


def outcome_page(out: Outcome, lang: str, now: float, dry_run: bool,
                 tz: tzinfo | None = None) -> tuple[int, bytes]:
    req, rec = out.request, out.record
    device = req.device or text(lang, "unknown_device")
    until = clock_text(rec.until, now, tz) if rec.until is not None else ""
    if out.outcome == "refused":
        reason = str(out.event.get("block", {}).get("reason", ""))
        return 409, page(lang, text(lang, "t_not_done"),
                         f"<p>{text(lang, 'nd_refused', reason=reason)}</p>")
    if out.outcome == "failed":
        return 500, page(lang, text(lang, "t_not_done"), f"<p>{text(lang, 'nd_failed')}</p>")
    if dry_run:
        key = "rec_block" if req.action == "block" else "rec_allow"
        body = [f"<p>{text(lang, key, device=device, time=until)}</p>",
                f'<p class="warn">{text(lang, "dry_run")}</p>']
        if req.action == "block":
            body.append(f"<p><strong>{text(lang, 'advice')}</strong></p>")
        return 200, page(lang, text(lang, "t_recorded"), "\n".join(body))
    if req.action == "block":
        return 200, page(lang, text(lang, "t_done_block"),
                         f"<p>{text(lang, 'done_block', device=device)}</p>")
    return 200, page(lang, text(lang, "t_done_allow"),
                     f"<p>{text(lang, 'done_allow', device=device, time=until)}</p>")


def refusal_page(r: ActionRefused, lang: str, now: float,
                 tz: tzinfo | None = None) -> tuple[int, bytes]:
    if r.reason_code == "expired" and r.expires_at is not None:
        msg = text(lang, "r_expired", time=clock_text(r.expires_at, now, tz))
    elif r.reason_code == "used" and r.used_at is not None:
        msg = text(lang, "r_used", time=clock_text(r.used_at, now, tz))
    elif r.reason_code == "tampered":
        msg = text(lang, "r_tampered")
    else:
        msg = text(lang, "r_malformed")
    return r.http_status, page(lang, text(lang, "t_refused"), f"<p>{msg}</p>", "#444")


# --------------------------------------------------------------------------- HTTP

_ACTION_PATH = re.compile(r"(?:^|/)a/([^/]*)$")
_LONG_RUN = re.compile(r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{8,}|[A-Za-z0-9_-]{40,}")


def redact(message: str) -> str:
    """A log line without tokens: ``/a/<token>`` becomes ``/a/#<ref>``."""
    message = re.sub(r"/a/([^\s\"'?#]+)", lambda m: "/a/#" + token_ref(unquote(m.group(1))),
                     message)
    return _LONG_RUN.sub("[redacted]", message)


_HEADERS = (
    ("Cache-Control", "no-store, max-age=0"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("X-Robots-Tag", "noindex, nofollow"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
)


# Bounds against slow and many clients (slowloris). A carer's phone sends a request of a
# few hundred bytes at once and opens one or two connections; a browser opens up to six per
# host. Apache's mod_reqtimeout reads headers within 20-40 s at 500 B/s; nginx closes after
# 60 s without a header read. Here a request must be complete within REQUEST_DEADLINE_S in
# all, however it trickles: a dripped byte every few seconds restarts no timer.
MAX_CONNECTIONS = 64  # open at once (one thread each), from everyone
MAX_PER_CLIENT = 8  # open at once from one address: a browser's six, and some room
REQUEST_DEADLINE_S = 10.0  # to send the request line, headers and body, in all
READ_TIMEOUT_S = 5.0  # for each read of it
LISTEN_BACKLOG = 128  # socketserver's 5 drops connections in a burst; Linux's old SOMAXCONN
REFUSAL_LOG_EVERY_S = 60.0  # refused connections are logged as a count, this often


@dataclass(slots=True)
class _Connection:
    client: str
    opened: float  # time.monotonic()
    reading: bool = True  # still sending its request
    cut: bool = False


class ControlHTTPServer(ThreadingHTTPServer):
    """The endpoint's server: a thread per connection, with the bounds above. Over
    ``max_per_client`` a new connection is closed at once; at ``max_connections`` the
    oldest one still sending its request makes room (else the new one is closed); a
    request not complete within ``request_deadline_s`` is cut."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], service: ControlService, *,
                 clock: Callable[[], float] = time.time, tz: tzinfo | None = None,
                 max_connections: int = MAX_CONNECTIONS, max_per_client: int = MAX_PER_CLIENT,
                 request_deadline_s: float = REQUEST_DEADLINE_S):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ControlHandler)
        self.service = service
        self.clock = clock
        self.tz = tz
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.request_deadline_s = request_deadline_s
        self._open: dict[Any, _Connection] = {}
        self._open_lock = threading.Lock()
        self.refused = 0  # connections closed at once by the caps, since the start
        self.cut = 0  # connections cut for not sending their request in time
        self._logged = (0, 0, time.monotonic())

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        now = time.monotonic()
        with self._open_lock:
            mine = sum(1 for c in self._open.values() if c.client == client)
            room = mine < self.max_per_client
            if room and len(self._open) >= self.max_connections:
                slow = [(c.opened, r) for r, c in self._open.items() if c.reading and not c.cut]
                room = bool(slow)
                if slow:
                    self._cut(min(slow, key=lambda x: x[0])[1])
            if room:
                self._open[request] = _Connection(client, now)
            else:
                self.refused += 1
        if not room:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(request, None)

    def request_read(self, request: Any) -> None:
        """The handler has the whole request: the deadline no longer applies."""
        with self._open_lock:
            conn = self._open.get(request)
            if conn is not None:
                conn.reading = False

    def _cut(self, request: Any) -> None:
        """End a connection's blocked read at once (called with the lock held)."""
        self._open[request].cut = True
        self.cut += 1
        try:
            request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def service_actions(self) -> None:
        # Called by serve_forever's loop at least every poll interval.
        now = time.monotonic()
        with self._open_lock:
            for request, conn in list(self._open.items()):
                if conn.reading and not conn.cut and \
                        now - conn.opened > self.request_deadline_s:
                    self._cut(request)
        refused, cut, at = self._logged
        if (self.refused, self.cut) != (refused, cut) and now - at >= REFUSAL_LOG_EVERY_S:
            log.warning("control: %d connection(s) refused (over %d open, or %d from one "
                        "address) and %d cut (request not sent within %g s) since the start",
                        self.refused, self.max_connections, self.max_per_client, self.cut,
                        self.request_deadline_s)
            self._logged = (self.refused, self.cut, now)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        e = sys.exc_info()[1]
        if isinstance(e, OSError) and self._open.get(request, _Connection("", 0)).cut:
            return  # cut by the deadline: counted, not an error
        log.error("control: error while answering %s: %s: %s", client_address[0],
                  type(e).__name__, redact(str(e)))


class ControlHandler(BaseHTTPRequestHandler):
    server: ControlHTTPServer
    server_version = "netwatch-control"
    sys_version = ""
    timeout = READ_TIMEOUT_S  # each read; the whole request: REQUEST_DEADLINE_S

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok and self.command != "POST":  # a POST has its body still to come
            self.server.request_read(self.request)
        return ok

    def version_string(self) -> str:
        return self.server_version

    # -- logging: never the token, never to stderr directly

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.info("control: %s %s", self.client_address[0], shown(redact(format % args)))

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        log.warning("control: %s %s", self.client_address[0], shown(redact(format % args)))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = redact(urlsplit(getattr(self, "path", "")).path)
        log.info("control: %s %s %s -> %s", self.client_address[0],
                 shown(getattr(self, "command", None) or "-"), shown(path or "-"), code)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # The stdlib's error page quotes the request line (the token); ours does not.
        self.log_error("code %d, message %s", code, message)
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._send(code, page("en", f"{code} {html.escape(phrase)}", "", "#444"))

    # -- answers

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in _HEADERS:
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _token(self) -> str | None:
        m = _ACTION_PATH.search(urlsplit(self.path).path)
        return unquote(m.group(1)) if m else None

    def _lang(self, token: str, req: ActionRequest | None = None) -> str:
        return pick_lang(req.lang if req else None, peek_lang(token),
                         accept_language=self.headers.get("Accept-Language"))

    def _not_found(self) -> None:
        lang = pick_lang(accept_language=self.headers.get("Accept-Language"))
        self._send(404, page(lang, text(lang, "t_not_found"),
                             f"<p>{text(lang, 'not_found')}</p>", "#444"))

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        if path.endswith("/healthz") or path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
            return
        token = self._token()
        if token is None:
            self._not_found()
            return
        now = self.server.clock()
        try:
            req = self.server.service.check(token, now)
        except ActionRefused as r:
            status, body = refusal_page(r, self._lang(token, r.request), now, self.server.tz)
            self._send(status, body)
            return
        self._send(200, confirm_page(req, self._lang(token, req), now, self.server.tz))

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._drain()
        self.server.request_read(self.request)
        token = self._token()
        if token is None:
            self._not_found()
            return
        now = self.server.clock()
        client = self.client_address[0]
        fwd = self.headers.get("X-Forwarded-For")
        if fwd:
            client += f" (forwarded for {fwd.strip()[:100]})"
        ua = self.headers.get("User-Agent") or ""
        service = self.server.service
        try:
            out = service.act(token, now, client=client, user_agent=ua)
        except ActionRefused as r:
            log.info("control: %s refused %s link: %s", shown(client), "#" + token_ref(token),
                     r.reason_code)
            status, body = refusal_page(r, self._lang(token, r.request), now, self.server.tz)
            self._send(status, body)
            return
        status, body = outcome_page(out, self._lang(token, out.request), now, service.dry_run,
                                    self.server.tz)
        self._send(status, body)

    def _drain(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8787`` for IPv6) into a bind address."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{listen!r} is not HOST:PORT, like {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def make_server(service: ControlService, host: str = "127.0.0.1", port: int = 8787, *,
                clock: Callable[[], float] = time.time, tz: tzinfo | None = None,
                max_connections: int = MAX_CONNECTIONS, max_per_client: int = MAX_PER_CLIENT,
                request_deadline_s: float = REQUEST_DEADLINE_S) -> ControlHTTPServer:
    """A bound (not yet serving) control server; ``port`` 0 picks a free one."""
    return ControlHTTPServer((host, port), service, clock=clock, tz=tz,
                             max_connections=max_connections, max_per_client=max_per_client,
                             request_deadline_s=request_deadline_s)


def serve(server: ControlHTTPServer, stop: threading.Event) -> None:
    """Serve until ``stop`` is set (e.g. by a SIGTERM handler), then close."""
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="netwatch-control", daemon=True)
    t.start()
    try:
        while not stop.wait(0.5):
            if not t.is_alive():
                break
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)
