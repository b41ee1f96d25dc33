"""The alert outbox: every message to a carer is written down before it is sent, and sent
until a service has taken it.

``<state_dir>/outbox.sqlite`` (SQLite, WAL journal but a rollback one on JFFS2 flash,
``synchronous=FULL``) holds one row per (message, target address). ``enqueue`` commits the
rows before anything is sent (write-ahead), so a crash or a power cut loses no alert;
``deliver_due(now, senders)`` sends the rows that are due, oldest first, and marks a row
``sent`` only after its sender returned success.

**At least once.** When the process dies between a successful send and the mark, the row
is sent again after the restart. The second copy carries the same identity as the first —
``X-Netwatch-Id: <row>.<revision>@<outbox instance>`` (ntfy, JSON webhook) or the e-mail's
``Message-ID`` derived from the same three — and ``X-Netwatch-Key`` names the conversation
(``<session_id>:<carer>``), so a receiver that keeps the ids it has seen drops the
duplicate. A row sent while it was in flight when the previous process died is listed in
``DeliveryReport.resent``.

**Once per alert.** A message handed over again — ``replay --notify`` run a second time over
the same capture after a crash, the same alert for the same address — is not queued again
(the ``queued`` table keeps a digest of each message's conversation, alert, time and words,
links left out, per address, as long as its row is kept): queued twice, it would reach the
carer twice under two ids, or push an older state over a newer one.

**One conversation per session and carer**, not a hundred messages:

- a message whose ``key`` already has a pending row for the same target replaces that
  row's content (``revision`` goes up): the carer gets the newest state, once;
- after a delivery for a key, later messages for it within ``min_interval_s`` are held
  (``hold = 'interval'``) and merged; the newest is sent when the interval has passed;
- a message of a higher severity than the last one delivered for its key is never held;
- a target gets at most ``max_per_hour`` deliveries in any hour; beyond that rows are
  held (``hold = 'hourly'``) until the hour allows — never dropped.

**Failures** are retried with exponential backoff (1 s, 2 s, 4 s … capped at
``backoff_cap_s``), shortened by up to a fifth by a jitter computed from the row id (no
randomness), with the error text (addresses masked) kept in ``last_error``. After
``max_attempts`` attempts a row ends ``failed`` and keeps its last error. When a target
fails, its other due rows are not tried again in the same pass (a hung service costs one
timeout per pass, not one per row); the failure counts as an attempt for each of them.

Every row thus ends ``sent``, or stays ``pending`` with a ``next_try``, or ends ``failed``.

Time is passed in (``now``, epoch seconds); the outbox never reads the clock. A row due
more than a few hours in the future (the clock was set back) is treated as due.

Target addresses hold tokens and passwords: they are stored (the outbox must be able to
send), the state directory is made private (0700, the database 0600), and they only ever
leave this module masked (``netwatch.household.mask_url``): in logs, errors, ``pending()``
and ``stats()``.

Concurrency: several processes may enqueue at once (SQLite transactions); deliveries are
serialised by a lock file (``outbox.lock``): while one process delivers, ``deliver_due`` in
another returns at once with ``busy=True``. An ``Outbox`` object belongs to one thread; in a
pass, the sends to different targets run side by side on threads of their own (a slow or
dripping receiver holds back only its own rows, and each send has its deadline, see
netwatch/senders.py), while the rows are read and written by the owning thread alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .household import mask_url
from .messages import Action, Message
from .senders import DeliveryId, Sender, SendError, Senders, scrub

DB_NAME = "outbox.sqlite"
LOCK_NAME = "outbox.lock"
SCHEMA_VERSION = 1
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
HOUR_S = 3600.0
DEFAULT_KEEP_SENT_S = 7 * 24 * 3600.0
# Targets sent to at once: a household has a handful of carers with an address or two each;
# eight threads keep a pass short without letting a long queue open dozens of connections.
MAX_PARALLEL_TARGETS = 8
STOP_POLL_S = 0.1  # how often a pass waiting for its sends asks whether to stop
STOP_GRACE_S = 1.0  # what sends in flight get to finish once told to stop

log = logging.getLogger("netwatch.outbox")


# --- messages as stored ------------------------------------------------------------------


def message_to_json(message: Any) -> str:
    """A message (``netwatch.messages.Message``, or a dataclass with its fields) as JSON."""
    data = dataclasses.asdict(message)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def message_digest(message: Any) -> str:
    """What makes a message the same one again: its conversation, alert, time and words,
    without its action links (their tokens carry a fresh nonce each time they are made)."""
    body = message.body
    for action in message.actions:
        body = body.replace(action.url, "")
    text = json.dumps([message.key, message.alert_id, message.created, message.severity,
                       message.title, body], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_from_json(text: str) -> Message:
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(Message)}
    data = {k: v for k, v in data.items() if k in names}
    data["actions"] = [Action(kind=a.get("kind", ""), label=a.get("label", ""),
                              url=a.get("url", "")) for a in data.get("actions", [])]
    data["tags"] = list(data.get("tags", []))
    return Message(**data)


# --- the journal ----------------------------------------------------------------------------


# Filesystems whose files cannot be mapped shared and writable, which SQLite's WAL needs for
# its -shm index: JFFS2, the flash filesystem under an OpenWrt router's overlay.
NO_SHARED_MMAP = ("jffs2",)
MOUNTINFO = "/proc/self/mountinfo"


def _fs_type(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount holding ``path`` (the longest mount point above
    it), from /proc/self/mountinfo's text (proc(5): field 5 the mount point, the type after
    the " - " separator)."""
    best, kind = "", None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        parts = left.split()
        if not sep or len(parts) < 5 or not right:
            continue
        point = parts[4].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, right.split()[0]
    return kind


def journal_mode(folder: str | os.PathLike[str], mountinfo: str | None = None) -> str:
    """WAL, unless the folder is on flash that cannot hold it: then TRUNCATE (a rollback
    journal, emptied rather than deleted after each write: fewer flash erases than DELETE).
    An OpenWrt overlay counts as the filesystem under /overlay, its upper layer."""
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8") as fh:
                mountinfo = fh.read()
        except OSError:
            return "WAL"
    kind = _fs_type(os.path.realpath(folder), mountinfo)
    if kind == "overlay":
        kind = _fs_type("/overlay", mountinfo)
    return "TRUNCATE" if kind in NO_SHARED_MMAP else "WAL"


# --- rows and reports -----------------------------------------------------------------------


@dataclass(slots=True)
class OutboxRow:
    """One (message, target) row as ``pending()`` and ``rows()`` show it. ``target`` is the
    secret address, kept out of ``repr``; ``masked_target`` is the one to show."""

    id: int
    key: str
    masked_target: str
    alert_id: str
    severity: str
    title: str
    status: str             # pending | sent | failed
    revision: int           # content version: 1, +1 per merged newer message
    created: float          # the first merged message's ``created``
    updated: float          # the newest merged message's ``created``
    next_try: float
    hold: str | None        # why next_try is later: interval | hourly | retry
    attempts: int
    last_error: str | None  # masked
    sent_at: float | None
    message: Message = field(repr=False)
    target: str = field(repr=False)


@dataclass(slots=True)
class DeliveryReport:
    """What one ``deliver_due`` pass did (row ids)."""

    sent: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)      # failed now, will be tried again
    failed: list[int] = field(default_factory=list)     # gave up: max_attempts reached
    held: list[int] = field(default_factory=list)       # due, but held by a rate limit
    resent: list[int] = field(default_factory=list)     # were in flight when a process died
    errors: dict[int, str] = field(default_factory=dict)  # row id -> masked error
    busy: bool = False      # another process was delivering: nothing done
    next_due: float | None = None  # the earliest next_try still pending

    def __bool__(self) -> bool:
        return bool(self.sent or self.retry or self.failed or self.held)

    def summary(self) -> str:
        parts = [f"{len(self.sent)} sent"]
        if self.retry:
            parts.append(f"{len(self.retry)} to retry")
        if self.failed:
            parts.append(f"{len(self.failed)} given up")
        if self.held:
            parts.append(f"{len(self.held)} held by rate limits")
        if self.resent:
            parts.append(f"{len(self.resent)} sent again after a restart")
        return ", ".join(parts)


def backoff_s(attempts: int, row_id: int, cap: float = 300.0) -> float:
    """Delay after the ``attempts``-th failure of a row: 1, 2, 4 … s capped at ``cap``, less
    up to 20 % from a hash of the row id, so rows that failed together spread out."""
    base = min(cap, 2.0 ** min(max(attempts - 1, 0), 30))
    frac = ((row_id * 2654435761) % 2**32) / 2**32  # Knuth's multiplicative hash
    return base * (1.0 - 0.2 * frac)


# --- the outbox -----------------------------------------------------------------------------


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL,
    target     TEXT NOT NULL,
    alert_id   TEXT NOT NULL,
    severity   TEXT NOT NULL,
    message    TEXT NOT NULL,
    revision   INTEGER NOT NULL DEFAULT 1,
    created    REAL NOT NULL,
    updated    REAL NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'sent', 'failed')),
    next_try   REAL NOT NULL DEFAULT 0,
    hold       TEXT CHECK (hold IN ('interval', 'hourly', 'retry')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_try   REAL,
    sending    INTEGER NOT NULL DEFAULT 0,
    sent_at    REAL,
    sent_revision INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_try);
CREATE INDEX IF NOT EXISTS outbox_conversation ON outbox (key, target, status);
CREATE TABLE IF NOT EXISTS deliveries (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    row_id   INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    revision INTEGER NOT NULL,
    severity TEXT NOT NULL,
    sent_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_row ON deliveries (row_id);
CREATE TABLE IF NOT EXISTS queued (
    digest TEXT NOT NULL,
    target TEXT NOT NULL,
    row_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    PRIMARY KEY (digest, target)
);
CREATE INDEX IF NOT EXISTS queued_row ON queued (row_id);
CREATE INDEX IF NOT EXISTS deliveries_time ON deliveries (sent_at);
"""

_COLUMNS = ("id, key, target, alert_id, severity, message, revision, created, updated, "
            "status, next_try, hold, attempts, last_error, sent_at, sending")


class Outbox:
    def __init__(self, state_dir: str | os.PathLike[str], *, min_interval_s: float = 300.0,
                 max_per_hour: int = 12, max_attempts: int = 50,
                 backoff_cap_s: float = 300.0, keep_sent_s: float = DEFAULT_KEEP_SENT_S):
        self.state_dir = Path(state_dir)
        self.min_interval_s = float(min_interval_s)
        self.max_per_hour = int(max_per_hour)
        self.max_attempts = int(max_attempts)
        self.backoff_cap_s = float(backoff_cap_s)
        self.keep_sent_s = float(keep_sent_s)
        # Longest legitimate wait: a row due later than now + this means the clock went back.
        self.horizon_s = max(HOUR_S, self.min_interval_s, self.backoff_cap_s) + 600.0
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.state_dir / DB_NAME
        self.lock_path = self.state_dir / LOCK_NAME
        fresh = not self.path.exists()
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if fresh:
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
        self.db.execute(f"PRAGMA journal_mode={journal_mode(self.state_dir)}")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=30000")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                            (str(SCHEMA_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('instance', ?)",
                            (os.urandom(4).hex(),))
        self.instance = self._meta("instance")

    # -- plumbing

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction, taken at once (no upgrade deadlocks between processes)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _meta(self, name: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else ""

    @contextlib.contextmanager
    def _delivery_lock(self) -> Iterator[bool]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- writing

    def enqueue(self, message: Any, targets: Sequence[str]) -> list[int]:
        """Write ``message`` for each target address, committed before anything is sent.
        Returns the row ids, one per distinct target (a merged message keeps its row's id).
        """
        if message.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {message.severity!r}: "
                             f"one of {', '.join(SEVERITY_RANK)}")
        text = message_to_json(message)
        digest = message_digest(message)
        ids: list[int] = []
        seen: set[str] = set()
        with self._tx():
            for target in targets:
                if target in seen:
                    continue
                seen.add(target)
                ids.append(self._enqueue_one(message, text, digest, target))
        return ids

    def _enqueue_one(self, message: Any, text: str, digest: str, target: str) -> int:
        """One target's row for ``message``, inside ``enqueue``'s transaction."""
        # Queued before (a replay run again after a crash, an alert handed over twice): not
        # again. Merging it would send it once more under a new revision's id.
        again = self.db.execute("SELECT row_id FROM queued WHERE digest = ? AND target = ?",
                                (digest, target)).fetchone()
        if again is not None:
            log.debug("outbox: %s for %s queued before (row %d)", message.key,
                      mask_url(target), again[0])
            return int(again[0])
        row_id = self._insert_or_merge(message, text, target)
        self.db.execute("INSERT INTO queued (digest, target, row_id) VALUES (?, ?, ?)",
                        (digest, target, row_id))
        return row_id

    def _insert_or_merge(self, message: Any, text: str, target: str) -> int:
        row = self.db.execute(
            "SELECT id, severity, hold FROM outbox WHERE key = ? AND target = ? "
            "AND status = 'pending' ORDER BY id DESC LIMIT 1",
            (message.key, target)).fetchone()
        if row is None:
            cur = self.db.execute(
                "INSERT INTO outbox (key, target, alert_id, severity, message, "
                "created, updated, next_try) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (message.key, target, message.alert_id, message.severity, text,
                 message.created, message.created))
            assert cur.lastrowid is not None
            log.debug("outbox: row %d queued for %s (%s)", cur.lastrowid,
                      mask_url(target), message.key)
            return cur.lastrowid
        # The carer gets the newest state once: replace the waiting content. A row held by
        # a rate limit is looked at again in the next pass (the new content may be more
        # severe); a row waiting for a retry keeps its backoff.
        self.db.execute(
            "UPDATE outbox SET alert_id = ?, severity = ?, message = ?, "
            "revision = revision + 1, updated = ?, "
            "next_try = CASE WHEN hold = 'retry' THEN next_try ELSE 0 END "
            "WHERE id = ?",
            (message.alert_id, message.severity, text, message.created, row["id"]))
        log.debug("outbox: row %d updated for %s (%s)", row["id"], mask_url(target),
                  message.key)
        return int(row["id"])

    def requeue_failed(self) -> int:
        """Give the rows that ended ``failed`` another round of attempts; returns how many."""
        with self._tx():
            cur = self.db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_try = 0, hold = NULL "
                "WHERE status = 'failed'")
        return cur.rowcount

    def prune(self, now: float) -> int:
        """Forget rows sent more than ``keep_sent_s`` ago (their deliveries with them)."""
        with self._tx():
            cur = self.db.execute("DELETE FROM outbox WHERE status = 'sent' AND sent_at < ?",
                                  (now - self.keep_sent_s,))
        return cur.rowcount

    # -- delivering

    def deliver_due(self, now: float, senders: Sender | None = None, *,
                    stop: Callable[[], bool] | None = None) -> DeliveryReport:
        """Send every due pending row, oldest first within each target.

        Targets are served side by side (up to ``MAX_PARALLEL_TARGETS`` sends at once, each
        on its own thread; the database is only touched here), so a slow receiver holds
        back its own rows only. ``stop`` is asked between sends: once it says so no new
        send starts, sends in flight get ``STOP_GRACE_S`` to finish and are then left
        unrecorded (their rows are sent again, with the same identity, by the next pass).
        """
        senders = senders or Senders()
        report = DeliveryReport()
        with self._delivery_lock() as mine:
            if not mine:
                report.busy = True
                report.next_due = self._next_due()
                return report
            self.prune(now)
            queues: dict[str, deque[int]] = {}
            for row_id, target in self.db.execute(
                    "SELECT id, target FROM outbox WHERE status = 'pending' "
                    "AND (next_try <= ? OR next_try > ?) ORDER BY created, id",
                    (now, now + self.horizon_s)):
                queues.setdefault(target, deque()).append(int(row_id))
            self._deliver_queues(queues, now, senders, stop, report)
            report.next_due = self._next_due()
        return report

    def _deliver_queues(self, queues: dict[str, deque[int]], now: float, senders: Sender,
                        stop: Callable[[], bool] | None, report: DeliveryReport) -> None:
        done: queue.Queue[tuple[str, sqlite3.Row, BaseException | None]] = queue.Queue()
        down: dict[str, str] = {}  # target -> error, for targets that failed this pass
        waiting = deque(queues)  # targets with rows and no send in flight
        in_flight = 0
        stopped_at: float | None = None

        def send(target: str, row: sqlite3.Row, message: Message,
                 delivery: DeliveryId) -> None:
            try:
                senders.send(target, message, delivery)
            except BaseException as e:  # noqa: BLE001 - handed to the owning thread
                done.put((target, row, e))
            else:
                done.put((target, row, None))

        while True:
            if stopped_at is None and stop is not None and stop():
                stopped_at = time.monotonic()
            while stopped_at is None and waiting and in_flight < MAX_PARALLEL_TARGETS:
                target = waiting.popleft()
                rows = queues[target]
                while rows:
                    started = self._start_row(rows.popleft(), now, down, report)
                    if started is not None:
                        row, message, delivery = started
                        threading.Thread(target=send, args=(target, row, message, delivery),
                                         name="netwatch-send", daemon=True).start()
                        in_flight += 1
                        break
            if in_flight == 0:
                return
            wait = STOP_POLL_S if stopped_at is None else \
                stopped_at + STOP_GRACE_S - time.monotonic()
            if wait <= 0:
                log.info("outbox: stopping with %d send(s) unfinished; they are sent again "
                         "by the next pass", in_flight)
                return
            try:
                target, row, error = done.get(timeout=wait)
            except queue.Empty:
                continue
            in_flight -= 1
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: the process is going away
            self._finish_row(row, now, error, down, report)
            if queues[target]:
                waiting.append(target)

    def _start_row(self, row_id: int, now: float, down: dict[str, str],
                   report: DeliveryReport) -> tuple[sqlite3.Row, Message, DeliveryId] | None:
        """Gate a due row and mark it in flight; what to send, or None when it is not sent
        now (held by a rate limit, its target down this pass, or no longer pending)."""
        # Read again: another process may have merged newer content in meanwhile.
        row = self.db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?",
                              (row_id,)).fetchone()
        if row is None or row["status"] != "pending":
            return None
        target: str = row["target"]
        held = self._gate(row, now)
        if held is not None:
            reason, until = held
            with self._tx():
                self.db.execute("UPDATE outbox SET next_try = ?, hold = ? WHERE id = ?",
                                (until, reason, row_id))
            report.held.append(row_id)
            log.debug("outbox: row %d held (%s) until %.0f", row_id, reason, until)
            return None
        if target in down:
            self._failed(row, now, down[target], report)
            return None
        if row["sending"]:
            # In flight when a previous process died: it may have arrived already. Sent again
            # with the same identity, so the receiver can drop the copy.
            report.resent.append(row_id)
        with self._tx():
            self.db.execute("UPDATE outbox SET sending = 1, last_try = ? WHERE id = ?",
                            (now, row_id))
        message = message_from_json(row["message"])
        return row, message, DeliveryId(row_id, int(row["revision"]), self.instance, row["key"])

    def _finish_row(self, row: sqlite3.Row, now: float, error: BaseException | None,
                    down: dict[str, str], report: DeliveryReport) -> None:
        row_id, target = int(row["id"]), str(row["target"])
        if error is not None:  # SendError, or a sender's bug: a failure either way
            text = str(error) if isinstance(error, SendError) else \
                f"{type(error).__name__}: {error}"
            down[target] = scrub(text, target) or type(error).__name__
            self._failed(row, now, down[target], report)
            return
        with self._tx():
            self.db.execute(
                "INSERT INTO deliveries (row_id, revision, severity, sent_at) "
                "VALUES (?, ?, ?, ?)", (row_id, row["revision"], row["severity"], now))
            # Only the content that went out is marked sent: newer content merged in during
            # the send stays pending (it goes out as an update, rate limits permitting).
            cur = self.db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, sent_revision = revision, "
                "sending = 0, hold = NULL, last_error = NULL WHERE id = ? AND revision = ?",
                (now, row_id, row["revision"]))
            if cur.rowcount == 0:
                self.db.execute("UPDATE outbox SET sending = 0, next_try = 0, hold = NULL "
                                "WHERE id = ?", (row_id,))
        report.sent.append(row_id)
        log.info("outbox: row %d (%s, %s) delivered to %s", row_id, row["key"],
                 row["severity"], mask_url(target))

    def _failed(self, row: sqlite3.Row, now: float, error: str,
                report: DeliveryReport) -> None:
        row_id = int(row["id"])
        attempts = int(row["attempts"]) + 1
        report.errors[row_id] = error
        with self._tx():
            if attempts >= self.max_attempts:
                self.db.execute(
                    "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?, "
                    "sending = 0, hold = NULL WHERE id = ?", (attempts, error, row_id))
            else:
                self.db.execute(
                    "UPDATE outbox SET attempts = ?, last_error = ?, next_try = ?, "
                    "hold = 'retry', sending = 0 WHERE id = ?",
                    (attempts, error,
                     now + backoff_s(attempts, row_id, self.backoff_cap_s), row_id))
        if attempts >= self.max_attempts:
            report.failed.append(row_id)
            log.error("outbox: row %d to %s given up after %d attempts: %s", row_id,
                      mask_url(row["target"]), attempts, error)
        else:
            report.retry.append(row_id)
            log.warning("outbox: row %d to %s failed (attempt %d): %s", row_id,
                        mask_url(row["target"]), attempts, error)

    def _gate(self, row: sqlite3.Row, now: float) -> tuple[str, float] | None:
        """Why this due row must wait, and until when; None when it may go now."""
        # Deliveries "after now" were recorded before the clock was set back: ignored.
        last = self.db.execute(
            "SELECT d.sent_at, d.severity FROM deliveries d JOIN outbox o ON o.id = d.row_id "
            "WHERE o.key = ? AND o.target = ? AND d.sent_at <= ? "
            "ORDER BY d.sent_at DESC, d.id DESC LIMIT 1",
            (row["key"], row["target"], now)).fetchone()
        if last is not None and (SEVERITY_RANK.get(row["severity"], 0)
                                 > SEVERITY_RANK.get(last["severity"], 0)):
            return None  # worse than what the carer last heard: never held
        if last is not None and now < last["sent_at"] + self.min_interval_s:
            return "interval", float(last["sent_at"]) + self.min_interval_s
        if self.max_per_hour > 0:
            times = [float(r[0]) for r in self.db.execute(
                "SELECT d.sent_at FROM deliveries d JOIN outbox o ON o.id = d.row_id "
                "WHERE o.target = ? AND d.sent_at > ? AND d.sent_at <= ? ORDER BY d.sent_at",
                (row["target"], now - HOUR_S, now))]
            if len(times) >= self.max_per_hour:
                return "hourly", times[len(times) - self.max_per_hour] + HOUR_S
        return None

    def _next_due(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(next_try) FROM outbox WHERE status = 'pending'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- looking

    def rows(self, status: str | None = None) -> list[OutboxRow]:
        """The rows (of one status), oldest first."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        return [self._row(r) for r in self.db.execute(
            f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY created, id", args)]

    def pending(self) -> list[OutboxRow]:
        return self.rows("pending")

    def deliveries(self) -> list[dict[str, Any]]:
        """Every recorded delivery, in order: row, revision, severity, sent_at, key."""
        return [dict(r) for r in self.db.execute(
            "SELECT d.row_id, d.revision, d.severity, d.sent_at, o.key FROM deliveries d "
            "JOIN outbox o ON o.id = d.row_id ORDER BY d.sent_at, d.id")]

    def stats(self) -> dict[str, Any]:
        counts = {"pending": 0, "sent": 0, "failed": 0}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"):
            counts[status] = n
        holds = dict.fromkeys(("interval", "hourly", "retry"), 0)
        for hold, n in self.db.execute("SELECT hold, COUNT(*) FROM outbox "
                                       "WHERE status = 'pending' AND hold IS NOT NULL "
                                       "GROUP BY hold"):
            holds[hold] = n
        oldest = self.db.execute("SELECT MIN(created) FROM outbox "
                                 "WHERE status = 'pending'").fetchone()[0]
        error = self.db.execute(
            "SELECT last_error FROM outbox WHERE status != 'sent' AND last_error IS NOT NULL "
            "ORDER BY COALESCE(last_try, 0) DESC, id DESC LIMIT 1").fetchone()
        return {**counts, "held": holds["interval"] + holds["hourly"],
                "retrying": holds["retry"],
                "deliveries": self.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0],
                "oldest_pending": oldest, "next_due": self._next_due(),
                "last_error": error[0] if error else None}

    def _row(self, r: sqlite3.Row) -> OutboxRow:
        message = message_from_json(r["message"])
        return OutboxRow(id=r["id"], key=r["key"], masked_target=mask_url(r["target"]),
                         alert_id=r["alert_id"], severity=r["severity"], title=message.title,
                         status=r["status"], revision=r["revision"], created=r["created"],
                         updated=r["updated"], next_try=r["next_try"], hold=r["hold"],
                         attempts=r["attempts"], last_error=r["last_error"],
                         sent_at=r["sent_at"], message=message, target=r["target"])
