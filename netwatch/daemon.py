"""``netwatch run``: the live daemon.

One process assembles the same parts as ``netwatch replay`` (the ``Pipeline`` with its
``SessionTracker`` and ``Policy``, the household, the ``Notifier`` and its outbox) and feeds
them from a live source (netwatch.sources). Beside the loop that polls the source, threads
deliver alerts (the outbox's retries and rate limits), serve the control endpoint (the
"Block now" links) and serve the metrics.

Time: the packets bring their own (the kernel's clock); between them the loop moves the
pipeline on with the wall clock (``Pipeline.advance``), so idle flows and sessions end,
reminders go out and help windows open and close on time on a quiet network. The clock is
passed in, so tests drive it.

Blocking: one ``BlockLayer`` (netwatch.block) on the state folder carries out the
household's block policies (``pipe.blocker``) and the carers' "Block now" (the control
endpoint's blocker); ``block_backend`` picks nftables, the dry run or none. At start
``reconcile`` puts back the blocks still in force and removes stale ones; the loop lets
expired blocks go from the state every few seconds (the kernel's set timeouts have already
lifted them).

Signals: SIGHUP reloads the household and the signatures (a bad file keeps the old one in
force, and the log says why; the blocking layer gets the new devices and safety rules) and
reopens the event log for logrotate; SIGTERM and SIGINT stop: the event log gets its final
``stats`` event, the state is saved, the source closes (nflog removes its capture chains)
and the exit code is 0. Blocks in force are left in the kernel on purpose: a scammer's
session must not come back because the box restarted or was upgraded; each lifts itself at
its own timeout, and the next start reconciles them with the state folder.

State that survives a restart lives in the state folder: the outbox and the control store
(SQLite, written before acting), the signing key, and ``history.json``: ended sessions (for
"this tool came back"), recent downloads, the next session id and the learned DNS names.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import LIVE_SOURCES, OFF, Settings, parse_listen
from .eventlog import EventLog, default_host
from .flows import Limits
from .pipeline import Pipeline, StageTimes
from .sources import LiveSource

log = logging.getLogger("netwatch")

HISTORY_FILE = "history.json"
# The longest the loop waits for a packet before it moves the clock on and looks at its
# signals: a stop is answered within this, and a help window opens at most this late.
POLL_S = 0.25
# The history is written this often besides at exit, so a power cut loses at most this much.
SAVE_EVERY_S = 300.0
# systemd's status line is refreshed this often.
STATUS_EVERY_S = 30.0
# Threads are given this long to finish at exit; the whole stop stays under 5 s.
JOIN_S = 1.5
# Expired blocks leave the state this often (the kernel lifted them already; this only
# keeps ``netwatch block list``, the metrics and the event log's ``expire`` events true).
EXPIRE_EVERY_S = 5.0


class StartError(Exception):
    """Something the daemon needs cannot be had (a file, a port, the capture)."""


# ------------------------------------------------------------------ sources


def open_source(s: Settings, pipe: Pipeline) -> LiveSource:
    """The live source the settings name, opened and ready to poll."""
    if s.source == "af_packet":
        from .sources.afpacket import BLOCK_SIZE, AfPacketSource, SourceError

        assert s.interface is not None
        try:
            return AfPacketSource(s.interface, promiscuous=s.promiscuous,
                                  block_nr=max(1, s.ring_mib * (1 << 20) // BLOCK_SIZE))
        except SourceError as e:
            raise StartError(str(e)) from None
    try:
        if s.source == "pcap":
            from .sources.capture import CaptureError
            from .sources.pcap import PcapSource

            assert s.pcap is not None
            try:
                return PcapSource(s.pcap, speed=s.pcap_speed)
            except CaptureError as e:
                raise StartError(f"{s.pcap}: {e}") from None
        if s.source == "dnslog":
            from .sources.dnslog import DnsLogSource

            assert s.dnslog is not None
            return DnsLogSource(s.dnslog, resolver=s.resolver,
                                tz=getattr(pipe.household, "tz", None))
        if s.source == "nflog":
            # Built by its own module (netwatch.sources.nflog) with the shape
            # netwatch.sources describes; it needs the pipeline's flows for conntrack.
            mod = importlib.import_module(".sources.nflog", __package__)
            try:
                src = mod.NflogSource(group=s.nflog_group,
                                      on_counters=getattr(pipe, "flow_counters", None))
                return src.start()
            except mod.SourceError as e:
                raise StartError(f"nflog: {e}") from None
    except ModuleNotFoundError:
        raise StartError(f"the {s.source} source is not in this build of netwatch") from None
    except OSError as e:
        raise StartError(f"{s.source}: {e.strerror or e}") from None
    raise StartError(f"unknown source {s.source!r}")


def open_event_log(s: Settings) -> EventLog:
    """The daemon's event log in its live mode: appended to, never started anew (a restart
    loses nothing), each alert written at once, the rest flushed after each turn of the
    loop, reopened on SIGHUP, moved to PATH.1 past ``eve_max_mib``; every event names the
    box (EVE's ``host``)."""
    return EventLog(s.eve_log, live=True, host=s.host or default_host(),
                    max_mib=s.eve_max_mib)


FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")


def routes() -> bool:
    """Whether this box forwards packets (it is the router or gateway): else its nftables
    rules see only its own connections, and a household device's session never crosses
    them (a Pi on a mirror port). /proc/sys/net is the reader's network namespace's."""
    for path in FORWARDING:
        try:
            if Path(path).read_text(encoding="ascii").strip() == "1":
                return True
        except OSError:
            continue
    return False


def open_blocker(s: Settings, household: Any, clock: Callable[[], float]) -> Any:
    """The blocking layer the settings ask for (None: ``block_backend: off``). ``auto`` is
    nftables where ``nft`` may be used, the source sits on the live traffic (af_packet,
    nflog) and the box routes; otherwise the dry run: a capture played back, a resolver's
    log or a mirror port never changes the network, and no alert claims a cut that did
    not happen."""
    if s.block_backend == OFF:
        return None
    from .block import BlockLayer, make_backend

    kind = s.block_backend
    if kind == "auto" and (s.source not in LIVE_SOURCES or not routes()):
        kind = "dry-run"
        log.info("blocks: a dry run (%s)", "this box does not route the household's "
                 "traffic" if s.source in LIVE_SOURCES else
                 f"the {s.source} source does not sit on the live traffic")
    try:
        return BlockLayer(s.state_dir, make_backend(kind, clock), household=household,
                          clock=clock)
    except OSError as e:
        raise StartError(f"blocking: cannot use {s.state_dir}: {e.strerror or e}") from None


# ------------------------------------------------------------------ metrics


def build_metrics(pipe: Pipeline, s: Settings, source: LiveSource) -> tuple[Any, Any]:
    """The ``/metrics`` and ``/healthz`` server (netwatch.metrics), bound but not started,
    and the text-file writer; each None when the settings leave it out. A capture played
    back (the pcap source) is not live: its silences are not a broken capture. With a
    blocking layer, the blocks in force are counted at each scrape
    (``netwatch_blocks_active``)."""
    if s.metrics_listen == OFF and not s.metrics_textfile:
        return None, None
    from . import metrics

    pipe.stage_times = StageTimes()
    registry, _collector = metrics.make_registry(pipe, state_dir=s.state_dir,
                                                 blocks_active=lambda: _blocks_in_force(pipe))
    textfile = metrics.TextfileWriter(registry, s.metrics_textfile) \
        if s.metrics_textfile else None
    where = parse_listen(s.metrics_listen)
    if where is None:  # "off"
        return None, textfile
    health = metrics.Health(pipe, live=lambda: s.source != "pcap")
    try:
        return metrics.MetricsServer(registry, where[0], where[1], health=health), textfile
    except OSError as e:
        raise StartError(f"cannot listen on {s.metrics_listen} for metrics: "
                         f"{e.strerror or e}") from None


def _blocks_in_force(pipe: Pipeline) -> int:
    """The blocking layer's blocks in force; 0 when the pipeline has no blocking layer."""
    return len(pipe.blocker.list_blocks()) if pipe.blocker is not None else 0


def _ids(user: str) -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


# ------------------------------------------------------------------ alert delivery


class Delivery:
    """Sends the outbox's messages from a thread of its own, woken at once for each new
    alert and otherwise when the next retry or held message is due."""

    IDLE_S = 30.0  # nothing due: look again after this long anyway (another writer)

    def __init__(self, state_dir: str, clock: Callable[[], float] = time.time,
                 senders: Any = None):
        self.state_dir = state_dir
        self.clock = clock
        self.senders = senders
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="netwatch-deliver",
                                       daemon=True)
        self.passes = 0

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        from .outbox import Outbox
        from .senders import Senders

        senders = self.senders or Senders()
        with Outbox(self.state_dir) as box:  # an Outbox belongs to one thread
            while not self.stopping.is_set():
                self.wake.clear()
                try:
                    report = box.deliver_due(self.clock(), senders,
                                             stop=self.stopping.is_set)
                except Exception:
                    log.exception("alerts: delivery pass failed")
                    report = None
                self.passes += 1
                if report:
                    log.info("alerts: %s", report.summary())
                wait = self.IDLE_S
                if report is not None and report.busy:
                    wait = 1.0
                elif report is not None and report.next_due is not None:
                    wait = min(max(report.next_due - self.clock(), 0.05), self.IDLE_S)
                self.wake.wait(wait)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(JOIN_S)


# ------------------------------------------------------------------ the daemon


class Daemon:
    """The assembled daemon. ``start()`` opens everything (in the order privileges need),
    ``run()`` loops until stopped; ``step()`` is one turn of the loop, for tests."""

    def __init__(self, s: Settings, *, clock: Callable[[], float] = time.time,
                 source: LiveSource | None = None, senders: Any = None,
                 notify: Any = None):
        self.s = s
        self.clock = clock
        self.source: LiveSource | None = source
        self.senders = senders
        self.notify = notify
        self.household: Any = None
        self.pipe: Pipeline | None = None
        self.log: EventLog | None = None
        self.notifier: Any = None
        self.delivery: Delivery | None = None
        self.control: Any = None
        self.metrics: Any = None
        self.blocker: Any = None  # netwatch.block.BlockLayer, or None (block_backend: off)
        self.textfile: Any = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._reload = False
        self._next_save = 0.0
        self._next_status = 0.0
        self._next_watchdog = 0.0
        self._next_expire = 0.0
        self._source_failing = False
        self.started = False
        self.alerts = 0

    # -------------------------------------------------------------- start

    def start(self) -> None:
        s = self.s
        from .household import HouseholdError, load_household

        sigs = self._signatures()
        try:
            self.household = load_household(s.household)
        except HouseholdError as e:
            raise StartError("household file: " + " | ".join(e.problems)) from None
        for w in self.household.warnings:
            log.warning("household: %s", w)
        try:
            os.makedirs(s.state_dir, mode=0o700, exist_ok=True)
            self.log = open_event_log(s)
        except OSError as e:
            raise StartError(f"cannot write {e.filename}: {e.strerror}") from None
        pipe = self.pipe = Pipeline(sigs, self.log, household=self.household, limits=Limits(
            max_flows=s.max_flows, max_inspecting=s.max_inspecting))
        self._restore_history()
        self.blocker = pipe.blocker = open_blocker(s, self.household, self.clock)
        self._reconcile()  # as root: nft and conntrack need CAP_NET_ADMIN
        from .notify import Notifier

        self.notifier = Notifier(self.household, s.state_dir, s.control_url)
        pipe.on_alert.append(self._on_alert)
        if self.source is None:
            self.source = open_source(s, pipe)  # needs CAP_NET_RAW / CAP_NET_ADMIN
        # What the metrics and the event log say of the source: its counters, its name,
        # the interface (EVE's in_iface).
        pipe.source, pipe.source_name, pipe.in_iface = (self.source, self.source.name,
                                                         self.source.iface)
        self.control = self._control_server()
        self.metrics, self.textfile = build_metrics(pipe, s, self.source)
        if s.user and os.geteuid() == 0:
            self._load_before_dropping_root()
            self._become_user(s.user)
        self.delivery = Delivery(s.state_dir, self.clock, self.senders)
        self.delivery.start()
        if self.control is not None:
            t = threading.Thread(target=self.control.serve_forever,
                                 kwargs={"poll_interval": 0.2}, name="netwatch-control",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        if self.metrics is not None:
            self.metrics.start()
        self.started = True

    def _signatures(self) -> Any:
        from .recognisers import load_all
        from .signatures import DEFAULT_DIR, SignatureError, load_dir

        try:
            return load_dir(self.s.signatures or DEFAULT_DIR, load_all())
        except SignatureError as e:
            raise StartError("signature files are invalid: " + str(e).replace("\n", " | ")
                             ) from None

    def _control_server(self) -> Any:
        if self.s.control_listen == OFF:
            return None
        from .actions import load_or_create_secret
        from .control import ControlService, ControlStore, DryRunBlocker, make_server

        where = parse_listen(self.s.control_listen)
        assert where is not None
        secret = load_or_create_secret(self.s.state_dir)
        # "Block now" goes through the same blocking layer as the policy's blocks (one state
        # folder, one set of safety rules); with blocking off, it answers as a dry run.
        blocker = self.blocker if self.blocker is not None else DryRunBlocker()
        service = ControlService(secret, ControlStore(self.s.state_dir), blocker,
                                 eve_log=self.s.eve_log)
        recovered = service.recover(self.clock())
        if recovered:
            log.info("control: handed on %d action(s) recorded before a restart", recovered)
        try:
            return make_server(service, where[0], where[1], tz=self.household.tz)
        except OSError as e:
            raise StartError(f"cannot listen on {self.s.control_listen} for the control "
                             f"endpoint: {e.strerror or e}") from None

    def _load_before_dropping_root(self) -> None:
        """Read now what the daemon may need after it has given up root. Once it runs as an
        unprivileged user, the installation's folders may be closed to it (a virtual
        environment under a private home, a checkout in a 0700 folder), and a lazy import or
        the first read of a message catalogue would fail at the first alert."""
        from . import actions, control, messages, notify, outbox, policy, senders  # noqa: F401

        for language in messages.LANGUAGES:
            messages.catalogue(language)
        if self.blocker is not None:
            importlib.import_module(".block.nftables", __package__)

    def _become_user(self, user: str) -> None:
        from .service import CAP_NET_ADMIN, CAP_NET_RAW, PrivilegeError, chown_tree, drop_privileges

        keep = [CAP_NET_RAW]
        if self.s.source == "nflog" or (self.blocker is not None and not self.blocker.dry_run):
            # nflog's rules are removed at exit; a block runs nft and deletes conntrack
            # entries.
            keep.append(CAP_NET_ADMIN)
        try:
            chown_tree(self.s.state_dir, user)
            if self.s.eve_log and self.s.eve_log != "-":
                # The log is moved to PATH.1 at its size cap and made anew after logrotate:
                # the user needs its folder too, when the folder is netwatch's own
                # (/var/log/netwatch), never a shared one like /var/log.
                folder = os.path.dirname(os.path.abspath(self.s.eve_log))
                if "netwatch" in os.path.basename(folder):
                    os.chown(folder, *_ids(user))
                chown_tree(self.s.eve_log, user)
            drop_privileges(user, keep)
        except (PrivilegeError, KeyError, OSError) as e:
            raise StartError(f"cannot run as {user}: {e}") from None
        log.info("running as %s with %s only", user,
                 " and ".join("CAP_NET_RAW" if c == CAP_NET_RAW else "CAP_NET_ADMIN"
                              for c in keep))

    # -------------------------------------------------------------- the loop

    def ready_line(self) -> str:
        src = self.source
        assert src is not None
        what = f"capturing on {src.iface} ({src.name}"
        if getattr(src, "ring", False):
            what += ", kernel ring"
        elif getattr(src, "ring_problem", None):
            what += f", plain reads: no ring ({getattr(src, 'ring_problem', '')})"
        parts = [what + ")", f"event log {self.s.eve_log or 'off'}",
                 "blocking " + ("off" if self.blocker is None else self.blocker.backend.name)]
        if self.metrics is not None:
            parts.append(f"metrics {self.metrics.url}/metrics")
        if self.control is not None:
            host, port = self.control.server_address[:2]
            parts.append(f"control http://{host}:{port}")
        return "ready: " + "; ".join(parts)

    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())

    def request_reload(self) -> None:
        self._reload = True

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        # What start-up built (signatures, recognisers, message catalogues, modules) lives
        # as long as the process: frozen out of the garbage collector's generations, a full
        # collection no longer walks it, and its pauses stay short while the capture ring
        # fills (gc.freeze, Python 3.7+).
        gc.collect()
        gc.freeze()
        log.info(self.ready_line())
        if self.notify is not None:
            self.notify.send("READY=1", f"STATUS={self.status()}")
        while not self._stop.is_set():
            self.step(POLL_S)
        self.shutdown()
        return 0

    def step(self, timeout_s: float = 0.0) -> int:
        """One turn: what the source has (waiting up to ``timeout_s``), then the clock,
        a pending reload, the log, the periodic chores. Returns the items fed."""
        pipe, src = self.pipe, self.source
        assert pipe is not None and src is not None and self.log is not None
        # A source that walks its own buffers in place (the af_packet ring) hands its frames
        # straight to the pipeline's fast path, with no list of frames in between.
        in_place = getattr(src, "in_place", False)
        items: list[Any] = []
        ready = False
        fed = 0
        try:
            if in_place:
                ready = src.wait(timeout_s)  # type: ignore[attr-defined]
            else:
                items = src.poll(timeout_s)
        except OSError as e:
            # The interface went down or away: say so once, keep the clock and the rest
            # going, and read again when it is back.
            if not self._source_failing:
                log.error("source %s on %s: %s", src.name, src.iface, e.strerror or e)
            self._source_failing = True
            self._stop.wait(timeout_s)
            in_place = ready = False
        else:
            if self._source_failing:
                log.info("source %s on %s: reading again", src.name, src.iface)
            self._source_failing = False
        if items or (in_place and ready):
            t0 = time.perf_counter()
            if in_place:
                fed = pipe.feed_walk(src.walk)  # type: ignore[attr-defined]
            elif getattr(src, "kind", "frames") == "lookups":
                pipe.feed_lookups(items)
            else:
                pipe.feed(items)
            if pipe.stage_times is not None:
                pipe.stage_times.add("batch", time.perf_counter() - t0)
        now = self.clock()
        pipe.advance(now)
        if self._reload:
            self._reload = False
            self.reload()
        self.log.flush()
        if self.blocker is not None and now >= self._next_expire:
            self._next_expire = now + EXPIRE_EVERY_S
            self._expire_blocks(now)
        if self.textfile is not None and self.textfile.due(now):
            self.textfile.write(now)
        if now >= self._next_save:
            self._next_save = now + SAVE_EVERY_S
            self._save_history()
        if self.notify is not None:
            if self.notify.watchdog_s and now >= self._next_watchdog:
                self._next_watchdog = now + self.notify.watchdog_s
                self.notify.send("WATCHDOG=1")
            if now >= self._next_status:
                self._next_status = now + STATUS_EVERY_S
                self.notify.send(f"STATUS={self.status()}")
        return fed or len(items)

    def status(self) -> str:
        assert self.pipe is not None
        c = self.pipe.c
        return (f"{c.packets} packets, {len(self.pipe.live)} flows, "
                f"{len(self.pipe.sessions.open)} sessions open, {self.alerts} alerts")

    def _on_alert(self, alert: dict[str, Any]) -> None:
        """An alert from the policy: in the log at once, queued for the carers, and the
        delivery thread woken."""
        self.alerts += 1
        body = alert["alert"]
        log.info("alert %s: %s: %s", body["id"], body.get("level", body["severity"]),
                 body["title"])
        assert self.log is not None
        self.log.flush()
        if self.notifier is not None:
            try:
                self.notifier.handle(alert)
            except Exception:
                log.exception("alerts: could not queue alert %s", body["id"])
        if self.delivery is not None:
            self.delivery.wake.set()

    # -------------------------------------------------------------- reload, stop

    def reload(self) -> None:
        """SIGHUP: the household and signatures again, the event log reopened. A file with
        mistakes keeps the one in force; the log says why."""
        from .household import HouseholdError, load_household

        assert self.pipe is not None
        try:
            sigs = self._signatures()
        except StartError as e:
            log.error("reload: keeping the signatures in force: %s", e)
            sigs = None
        try:
            household = load_household(self.s.household)
        except HouseholdError as e:
            log.error("reload: keeping the household in force: %s", " | ".join(e.problems))
            household = None
        self.pipe.reload(sigs, household)
        if household is not None:
            self.household = household
            if self.notifier is not None:
                self.notifier.h = household
            if self.blocker is not None:
                self.blocker.set_household(household)
        if self.log is not None:
            self.log.reopen()  # after logrotate moved it away
        log.info("reloaded: %s%s", "signatures, " if sigs is not None else "",
                 "household" if household is not None else "household unchanged")

    def shutdown(self) -> None:
        """Flush, save, close: the final ``stats`` event, then every part in turn."""
        if self.notify is not None:
            self.notify.send("STOPPING=1")
        pipe = self.pipe
        if self.delivery is not None:
            self.delivery.stop()
        if self.control is not None:
            if self._threads:  # serving (shutdown() would wait forever otherwise)
                self.control.shutdown()
            self.control.server_close()
        if self.metrics is not None:
            self.metrics.stop()
        if pipe is not None and self.log is not None and self.started:
            pipe.advance(self.clock())
            stats = pipe.stats_event()
            if self.source is not None:
                # The source's counters beside the pipeline's (the schema's stats are whole
                # numbers): source_packets, source_dropped (kernel drops) …
                for key, value in self.source.stats().items():
                    if type(value) is int:
                        stats["stats"][f"source_{key}"] = value
            self.log.write(stats)
            self._save_history()
            if self.textfile is not None:
                self.textfile.write()
        if self.log is not None:
            self.log.close()
        if self.source is not None:
            self.source.close()  # nflog: its capture chains only; the block sets stay
        if self.blocker is not None and self.started and not self.blocker.dry_run:
            try:
                left = self.blocker.list_blocks()
            except OSError:
                left = []
            if left:
                log.info("blocks: %d left in force; each lifts itself at its own time "
                         "(netwatch block list)", len(left))
        log.info("stopped")

    # -------------------------------------------------------------- blocks

    def _reconcile(self) -> None:
        """At start: the blocks still in force put back in the kernel (after a reboot), the
        expired and stale ones removed; each change in the log and said on standard error."""
        if self.blocker is None:
            return
        try:
            events = self.blocker.reconcile(self.clock())
        except OSError as e:
            log.error("blocks: cannot reconcile with %s: %s", self.s.state_dir, e)
            return
        self._block_events(events)
        log.info("blocks: %s backend; %s", self.blocker.backend.name,
                 f"{len(events)} change(s) after the restart" if events
                 else "nothing to put right")

    def _expire_blocks(self, now: float) -> None:
        assert self.blocker is not None
        try:
            self._block_events(self.blocker.expire(now))
        except OSError as e:
            log.warning("blocks: cannot read the state: %s", e)

    def _block_events(self, events: list[dict[str, Any]]) -> None:
        assert self.log is not None
        for ev in events:
            b = ev["block"]
            log.info("block %s: %s %s: %s", b["action"], b["id"], b["target"], b["reason"])
            self.log.write(ev)

    # -------------------------------------------------------------- state

    def _history_path(self) -> Path:
        return Path(self.s.state_dir) / HISTORY_FILE

    def _save_history(self) -> None:
        pipe = self.pipe
        if pipe is None:
            return
        data = {"saved": self.clock(), "sessions": pipe.sessions.snapshot(),
                "names": pipe.names.entries(self.clock())}
        path = self._history_path()
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            log.warning("state: cannot save %s: %s", path, e.strerror or e)

    def _restore_history(self) -> None:
        assert self.pipe is not None
        path = self._history_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.pipe.sessions.restore(data.get("sessions", {}))
            self.pipe.names.restore([(str(a), str(n), float(x)) for a, n, x in
                                     data.get("names", [])], self.clock())
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("state: %s unreadable, starting without it: %s", path, e)
