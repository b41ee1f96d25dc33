"""Prometheus metrics and the health check of the live daemon.

Nothing here runs per packet. ``PipelineCollector`` is a custom collector on an explicit
``CollectorRegistry``: at each scrape it reads what the pipeline already counts (its
``Counters``, its flow table, the session tracker, the per-event tallies of detections and
alerts, the ``StageTimes`` the daemon fills), the source's kernel counters, the outbox's
SQLite file and the blocking layer's count. ``MetricsServer`` serves ``/metrics`` and
``/healthz`` from a thread, on 127.0.0.1:9731 unless told otherwise.

Names follow Prometheus's conventions (prometheus.io/docs/practices/naming): the ``netwatch_``
prefix, base units in the name (``_seconds``, ``_bytes``), ``_total`` on counters, and labels
with few values: tool, role, source, state, a household device's *name* (never an address).

``netwatch replay`` never imports this module, so prometheus-client adds nothing to its
start-up. Without prometheus-client (OpenWrt's feed has none) the same text comes from
``netwatch.promtext``; ``TextfileWriter`` writes it to a file for the text-file collector of
the node exporter already on the box (OpenWrt's prometheus-node-exporter-lua reads
``/var/prometheus/*.prom``).
"""

from __future__ import annotations

import logging
import platform
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector
except ImportError:  # a router build without prometheus-client: the same text, our own
    from .promtext import (  # type: ignore[assignment]
        CONTENT_TYPE,
        CollectorRegistry,
        CounterMetricFamily,
        GaugeMetricFamily,
        InfoMetricFamily,
        Metric,
        generate_latest,
    )
    Collector = object  # type: ignore[assignment,misc]
else:
    try:
        # The text format every Prometheus reads (Debian 12's 2.42 too); newer clients call
        # version 1.0.0 "latest", which differs only for names outside [a-zA-Z0-9_:].
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
    except ImportError:  # older clients, whose latest is 0.0.4
        from prometheus_client.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE

from . import __version__
from .policy import LIVE_STATES

log = logging.getLogger("netwatch.metrics")

# 127.0.0.1: the metrics name the household's devices and tools; a Prometheus elsewhere on the
# LAN is given access on purpose (--metrics-listen), not by default.
DEFAULT_HOST = "127.0.0.1"
# In Prometheus's exporter range (9100-9999, its wiki's "Default port allocations"), away from
# what runs on a Pi or an OpenWrt router beside netwatch (node_exporter and OpenWrt's
# prometheus-node-exporter-lua on 9100) and from netwatch's control endpoint (8787); no
# service in /etc/services uses it.
DEFAULT_PORT = 9731
# /healthz says unhealthy when a live source has brought no packet for this long. A home
# network with anything switched on talks every few minutes (DNS, NTP, phones' push
# connections); 15 minutes of silence means the capture is broken, not the night quiet.
DEFAULT_MAX_SILENCE_S = 900.0
# The outbox is read at scrape time; a busy writer makes the read wait at most this long.
OUTBOX_READ_TIMEOUT_S = 1.0
UNKNOWN_DEVICE = "unknown"  # a LAN address the household file does not name

# Counters fields by what the metrics call them (netwatch.pipeline.Counters).
DECODE_ERRORS = {"malformed": "malformed", "unsupported_link": "unsupported_link",
                 "dns_malformed": "dns_malformed"}
SKIPPED = {"fragment": "fragments", "non_ip": "non_ip", "other_l4": "other_l4"}
# What the bounds of netwatch.flows.Limits cut short, by what was cut.
BOUNDED = {"flow_evicted_undecided": "flows_evicted_undecided",
           "flow_evicted_protected": "flows_evicted_protected",
           "inspection_stopped_one_sided": "inspect_stopped_one_sided",
           "finding_dropped": "findings_dropped", "session_peer_dropped": "session_peers_dropped"}
OUTBOX_STATUSES = ("pending", "sent", "failed")


class PipelineCollector(Collector):
    """Reads the pipeline's state when Prometheus scrapes.

    ``pipeline``: a netwatch.pipeline.Pipeline (reassign ``.pipeline`` if the daemon builds
    a new one). Its ``source`` may have ``stats()`` returning cumulative ``received`` and
    ``dropped`` packet counts from the kernel (PACKET_STATISTICS resets on each read: the
    source adds them up). ``state_dir``: where the outbox lives. ``blocks_active``: how many
    blocks are in force now.
    """

    def __init__(self, pipeline: Any, *, state_dir: str | Path | None = None,
                 blocks_active: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.time):
        self.pipeline = pipeline
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.blocks_active = blocks_active
        self.started = clock()

    def describe(self) -> Iterable[Metric]:
        return []  # no collision check needed: the names are all netwatch_*

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
        c = p.c
        source = p.source_name
        info = InfoMetricFamily("netwatch_build", "netwatch's version and Python's.")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info
        yield _gauge("netwatch_start_time_seconds", "When this netwatch process started "
                     "(Unix time).", self.started)
        yield _counter("netwatch_packets_total", "Packets read from the source.",
                       {"source": source}, c.packets)
        yield _counter("netwatch_bytes_total", "Bytes of the packets read from the source "
                       "(as captured).", {"source": source}, c.bytes)
        stats = _source_stats(p.source)
        if stats is not None:
            yield _counter("netwatch_kernel_received_packets_total", "Packets the kernel "
                           "queued for netwatch's socket.", {"source": source},
                           stats.get("received", 0))
            yield _counter("netwatch_kernel_dropped_packets_total", "Packets the kernel "
                           "dropped because netwatch's socket was full.", {"source": source},
                           stats.get("dropped", 0))
        yield _gauge("netwatch_last_packet_timestamp_seconds", "Time of the last packet "
                     "read (Unix time; the packet's own).", p.last_packet_ts)
        yield _gauge("netwatch_flows_tracked", "Flows in the flow table now.", len(p.live))
        yield _counter("netwatch_flows_total", "Flows seen.", {}, c.flows)
        yield _counter("netwatch_flows_evicted_total", "Flows finished early because the "
                       "flow table was full.", {}, c.flows_evicted)
        yield _labelled(CounterMetricFamily, "netwatch_bounded_total", "What a table's bound "
                        "cut short, by what: flows evicted from the pool of undecided ones "
                        "or with a session or detection, inspections stopped, findings and "
                        "session peers not kept.", ["what"],
                        {(k,): getattr(c, f) for k, f in BOUNDED.items()})
        yield _labelled(CounterMetricFamily, "netwatch_decode_errors_total", "Packets or DNS "
                        "answers that could not be decoded, by reason.", ["reason"],
                        {(k,): getattr(c, f) for k, f in DECODE_ERRORS.items()})
        yield _labelled(CounterMetricFamily, "netwatch_packets_skipped_total", "Packets "
                        "netwatch does not read (later IP fragments, non-IP frames, "
                        "transports other than TCP and UDP), by reason.", ["reason"],
                        {(k,): getattr(c, f) for k, f in SKIPPED.items()})
        yield _labelled(CounterMetricFamily, "netwatch_detections_total", "remote_access "
                        "events written, by tool and role.", ["tool", "role"],
                        dict(p.detections))
        yield _labelled(GaugeMetricFamily, "netwatch_sessions_open", "Sessions of a "
                        "remote-access tool open now, by tool, household device name and "
                        "state.", ["tool", "device", "state"], _sessions(p))
        yield _labelled(GaugeMetricFamily, "netwatch_sessions_outside_window", "Sessions "
                        "of a remote-access tool live now (connecting or active) outside "
                        "every help window, as the policy last judged them, by tool and "
                        "household device name.", ["tool", "device"], _outside(p))
        yield _labelled(CounterMetricFamily, "netwatch_alerts_total", "Alerts written, by "
                        "level (info, warning, critical).", ["level"],
                        {(k,): n for k, n in dict(p.alert_levels).items()})
        yield _counter("netwatch_events_total", "Events written to the event log.", {},
                       c.events)
        times = p.stage_times
        if times is not None:
            yield _labelled(CounterMetricFamily, "netwatch_stage_seconds_total", "Time spent "
                            "in each stage: batch (a source's batch through the pipeline), "
                            "inspect (recognisers), dns (DNS answers), events (event log and "
                            "policy); they nest: batch holds the others, inspect the events "
                            "its detections cause.", ["stage"],
                            {(k,): v for k, v in dict(times.seconds).items()})
            yield _labelled(CounterMetricFamily, "netwatch_stage_calls_total", "Times each "
                            "stage ran.", ["stage"],
                            {(k,): v for k, v in dict(times.calls).items()})
        yield _gauge("netwatch_signatures_loaded", "Tools with a signature loaded.",
                     len(p.sigs.by_tool))
        if self.blocks_active is not None:
            yield _gauge("netwatch_blocks_active", "Blocks in force now.", self.blocks_active())
        yield from self._outbox()

    def _outbox(self) -> Iterator[Metric]:
        if self.state_dir is None:
            return
        from .outbox import DB_NAME

        path = self.state_dir / DB_NAME
        if not path.is_file():
            return
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                 timeout=OUTBOX_READ_TIMEOUT_S)
            try:
                counts = dict.fromkeys(OUTBOX_STATUSES, 0)
                counts.update(db.execute(
                    "SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
                retrying = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending' "
                                      "AND hold = 'retry'").fetchone()[0]
                oldest = db.execute("SELECT MIN(created) FROM outbox "
                                    "WHERE status = 'pending'").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error as e:
            log.warning("metrics: cannot read the outbox %s: %s", path, e)
            return
        yield _labelled(GaugeMetricFamily, "netwatch_outbox_messages", "Messages to carers "
                        "in the outbox, by delivery result: pending (not delivered yet), sent, "
                        "failed (given up); sent ones are kept a week.", ["status"],
                        {(k,): v for k, v in counts.items()})
        yield _gauge("netwatch_outbox_retrying_messages", "Pending messages waiting to be "
                     "tried again after a failed delivery.", retrying)
        if oldest is not None:
            yield _gauge("netwatch_outbox_oldest_pending_timestamp_seconds", "When the "
                         "oldest pending message was queued (Unix time).", oldest)


def _counter(name: str, doc: str, labels: dict[str, str], value: float) -> Metric:
    m = CounterMetricFamily(name, doc, labels=list(labels))
    m.add_metric(list(labels.values()), value)
    return m


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(kind: Any, name: str, doc: str, labels: list[str],
              values: dict[tuple[str, ...], float]) -> Metric:
    m = kind(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        m.add_metric(list(key), value)
    return m


def _source_stats(source: Any) -> dict[str, int] | None:
    stats = getattr(source, "stats", None)
    if stats is None:
        return None
    try:
        return dict(stats())
    except OSError as e:
        log.warning("metrics: the source's kernel counters cannot be read: %s", e)
        return None


def _sessions(p: Any) -> dict[tuple[str, ...], float]:
    """Open sessions by tool, device name and state; a device the household does not name
    is "unknown" (addresses never become labels)."""
    h = p.household
    out: dict[tuple[str, ...], float] = {}
    for s in list(p.sessions.open.values()):  # a copy: the pipeline's thread changes it
        dev = h.device_for(s.device_ip) if h is not None else None
        key = (s.tool, dev.name if dev is not None else UNKNOWN_DEVICE, s.state)
        out[key] = out.get(key, 0) + 1
    return out


def _outside(p: Any) -> dict[tuple[str, ...], float]:
    """Live sessions the policy judged outside every help window, by tool and device name.
    A session of a trusted rule is never judged (no alert), so it is not counted."""
    policy = getattr(p, "policy", None)
    if policy is None:
        return {}
    h = p.household
    out: dict[tuple[str, ...], float] = {}
    for v in list(policy.sessions.values()):
        if v.in_window is not False or v.state not in LIVE_STATES:
            continue
        dev = h.device_for(v.device_ip) if h is not None else None
        key = (v.tool, dev.name if dev is not None else UNKNOWN_DEVICE)
        out[key] = out.get(key, 0) + 1
    return out


def make_registry(pipeline: Any, **collector_args: Any) -> tuple[CollectorRegistry,
                                                                  PipelineCollector]:
    """A registry holding only netwatch's collector (no process or platform collectors: the
    names stay netwatch's own, and nothing reads /proc at each scrape)."""
    registry = CollectorRegistry()
    collector = PipelineCollector(pipeline, **collector_args)
    registry.register(collector)
    return registry, collector


# ---------------------------------------------------------------------- text file


class TextfileWriter:
    """The metrics as a file, for a node exporter's text-file collector, when netwatch serves
    no /metrics of its own (a router without prometheus-client, or one port fewer open).

    ``write()`` renders the registry and replaces the file in one rename, so the collector
    never reads half a file; ``due(now)`` says when it is time again (every ``every_s``)."""

    def __init__(self, registry: Any, path: str | Path, every_s: float = 15.0):
        self.registry = registry
        self.path = Path(path)
        self.every_s = every_s
        self._next = 0.0
        self._failing = False  # said once until a write works again

    def due(self, now: float) -> bool:
        return now >= self._next

    def write(self, now: float = 0.0) -> None:
        self._next = now + self.every_s
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_bytes(generate_latest(self.registry))
            tmp.replace(self.path)
        except OSError as e:
            if not self._failing:
                log.warning("metrics: cannot write %s: %s (said once until it works)",
                            self.path, e.strerror or e)
            self._failing = True
        else:
            self._failing = False


# ---------------------------------------------------------------------- health


class Health:
    """``/healthz``: unhealthy when a live source has brought no packet for
    ``max_silence_s`` (the packet's own time, which a live source takes from the kernel's
    clock); healthy otherwise, and always while the source is not live (a capture played
    back). Returns ``(healthy, one line saying why)``."""

    def __init__(self, pipeline: Any, *, live: Callable[[], bool],
                 max_silence_s: float = DEFAULT_MAX_SILENCE_S,
                 clock: Callable[[], float] = time.time):
        self.pipeline = pipeline
        self.live = live
        self.max_silence_s = max_silence_s
        self.clock = clock
        self.started = clock()

    def __call__(self) -> tuple[bool, str]:
        if not self.live():
            return True, "ok: the source is not live"
        last = self.pipeline.last_packet_ts
        since = self.clock() - (last if last else self.started)
        if since > self.max_silence_s:
            what = "the last packet" if last else "start"
            return False, f"unhealthy: no packet for {since:.0f} s since {what} " \
                          f"(limit {self.max_silence_s:.0f} s)"
        return True, f"ok: last packet {max(since, 0.0):.0f} s ago" if last else \
            "ok: waiting for the first packet"


# ---------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsHTTPServer
    server_version = "netwatch-metrics"
    sys_version = ""
    timeout = 10  # seconds a client may take to send its request

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = generate_latest(self.server.registry)
            self._send(200, CONTENT_TYPE, body)
        elif path == "/healthz":
            ok, why = self.server.health() if self.server.health else (True, "ok")
            self._send(200 if ok else 503, "text/plain; charset=utf-8",
                       (why + "\n").encode("utf-8"))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("metrics: %s " + format, self.address_string(), *args)


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: CollectorRegistry
    health: Callable[[], tuple[bool, str]] | None


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP from a thread of its own.

    Bound when made (a busy port fails here, before the daemon says it is ready); ``port``
    0 picks a free one (``.port`` says which). ``start()`` serves, ``stop()`` ends it."""

    def __init__(self, registry: CollectorRegistry, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, *,
                 health: Callable[[], tuple[bool, str]] | None = None):
        cls = type("MetricsHTTPServer", (_MetricsHTTPServer,),
                   {"address_family": _family(host)})
        self.httpd = cls((host, port), _Handler)
        self.httpd.registry = registry
        self.httpd.health = health
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="netwatch-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Health", "MetricsServer", "PipelineCollector",
           "TextfileWriter", "make_registry"]
