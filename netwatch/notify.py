"""From alert events to messages in the outbox: who is told, in which language, with which
buttons.

For each ``alert`` event the policy writes with ``notify`` set, every carer who looks after
the device's person gets one message, rendered from the catalogue in the carer's language,
with signed links to the local control endpoint ("Block now", "It's fine: allow for 2 h").
The message is written to the outbox (SQLite, write-ahead) before anything is sent; the
delivery worker (``netwatch alert deliver``) sends it, retries, merges updates. During the
household's quiet hours, ``info`` alerts (expected help) are not sent; warnings and critical
alerts always are.

A state directory that is read-only or full stops only the queueing: the notifier says so
once (``warn``), keeps the messages it could not write in memory (the newest
``MAX_UNQUEUED``), and writes them first, oldest first, as soon as the outbox takes rows
again. Detection and the event log never wait for it.
"""

from __future__ import annotations

import os
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from . import messages
from .actions import links_for_alert, load_or_create_secret
from .outbox import Outbox

LINK_TTL_S = 24 * 3600.0
# Messages kept in memory while the outbox cannot take them: a day of a busy household's
# alerts for a few carers; beyond it the oldest are dropped (and counted).
MAX_UNQUEUED = 1000


def _why(folder: Path, e: BaseException) -> str:
    """Why ``folder`` takes no rows, in words a person can act on (SQLite only says it is
    "unable to open database file")."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        fs = None
    if fs is not None and fs.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if fs is not None and fs.f_bavail == 0:
        return "no space left on the device"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return str(e) or type(e).__name__


class Notifier:
    """Turns alert events into outbox rows for the household's carers."""

    def __init__(self, household: Any, state_dir: str | Path, control_url: str | None = None,
                 outbox: Outbox | None = None, warn: Callable[[str], None] | None = None):
        self.h = household
        self.state_dir = Path(state_dir)
        self.control_url = control_url.rstrip("/") if control_url else None
        self.warn = warn or (lambda _line: None)
        self.queued = 0
        self.held_quiet = 0
        self.dropped = 0  # not queued, and pushed out of memory by newer ones
        self.problem: str | None = None  # why the outbox cannot take rows now
        self._unqueued: deque[tuple[messages.Message, Sequence[str]]] = deque()
        self._secret: bytes | None = None
        self.outbox: Outbox | None = outbox
        if outbox is None:
            self._open()

    @property
    def unqueued_count(self) -> int:
        """Messages waiting in memory for the outbox to take them."""
        return len(self._unqueued)

    def _open(self) -> Outbox | None:
        """The outbox, opened (and the state directory made, private) when it is not."""
        if self.outbox is None:
            try:
                # The outbox holds notification tokens: the folder is the owner's alone.
                self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.outbox = Outbox(self.state_dir)
            except (OSError, sqlite3.Error) as e:
                self._failing(e)
        return self.outbox

    def _failing(self, e: BaseException) -> None:
        why = _why(self.state_dir, e)
        if self.problem is None:
            self.warn(f"alerts: cannot queue in {self.state_dir}: {why}; detection and "
                      "the event log go on, the messages wait in memory")
        self.problem = why
        if self.outbox is not None:
            try:
                self.outbox.close()
            except sqlite3.Error:
                pass
            self.outbox = None  # opened again for the next message

    def _links_secret(self) -> bytes | None:
        if self._secret is None and self.control_url:
            try:
                self._secret = load_or_create_secret(self.state_dir)
            except (OSError, ValueError):
                return None  # no signing key yet: this message goes without buttons
        return self._secret

    def _enqueue(self, msg: messages.Message, targets: Sequence[str]) -> list[int]:
        """Queue one message, after any that wait in memory; [] when it cannot."""
        self._unqueued.append((msg, targets))
        if len(self._unqueued) > MAX_UNQUEUED:
            self._unqueued.popleft()
            self.dropped += 1
        return self.flush()

    def flush(self) -> list[int]:
        """Queue the messages waiting in memory, oldest first; the rows written."""
        rows: list[int] = []
        while self._unqueued:
            box = self._open()
            if box is None:
                break
            msg, targets = self._unqueued[0]
            try:
                rows += box.enqueue(msg, targets)
            except (OSError, sqlite3.Error) as e:
                self._failing(e)
                break
            self._unqueued.popleft()
            if self.problem is not None:
                self.warn(f"alerts: queueing again in {self.state_dir} ({self.problem} "
                          "is over); the held messages go first")
                self.problem = None
        self.queued += len(rows)
        return rows

    def handle(self, event: dict[str, Any]) -> list[int]:
        """Queue the messages one alert event causes; returns the outbox row ids (those of
        messages held earlier first, when the outbox takes rows again)."""
        alert = event["alert"]
        if not alert.get("notify", True):
            return []
        if alert["level"] == "info" and self.h.is_quiet(
                datetime.fromisoformat(event["timestamp"])):
            # Quiet hours: expected help is not worth waking anyone for; it stays in the
            # event log. Warnings and critical alerts are always sent.
            self.held_quiet += 1
            return []
        device = self.h.device_for(event["src_ip"]) if event.get("src_ip") else None
        person = self.h.person_of(device) if device is not None else None
        now = messages.event_time(event)
        rows: list[int] = []
        for carer in self.h.carers_for(person):
            if not carer.notify:
                continue
            links: list[tuple[str, str]] = []
            secret = self._links_secret() if alert.get("actions") else None
            if self.control_url and secret:
                links = links_for_alert(secret, self.control_url, alert, carer.name, now,
                                        LINK_TTL_S, lang=carer.language)
            msg = messages.render(event, carer.name, carer.language, self.h.tz,
                                  person.country if person else None, links)
            rows += self._enqueue(msg, carer.notify)
        return rows
