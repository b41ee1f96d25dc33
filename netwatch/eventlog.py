"""The event log: one JSON object per line, in the shape of Suricata's EVE.

Field names follow Suricata's EVE where a counterpart exists (timestamp, event_type, flow_id,
community_id, in_iface, host, src_ip, src_port, dest_ip, dest_port, proto, pcap_filename, and
the ``alert`` object's signature fields), so the tools that read EVE (Filebeat's Suricata
module, Vector, Loki, Splunk) read netwatch's log without a mapping. The contract is in
../shared/design/architecture.md and the README, the JSON Schema in
netwatch/schema/eve.schema.json.

Two ways to write it:

- replay (``EventLog(path)``): the file is truncated at start and written in batches of
  ``BATCH_EVENTS`` and at close;
- live (``EventLog(path, live=True)``): opened for append (never truncated), alerts written
  at once (``flush_now``), reopened after logrotate (``reopen``, or ``request_reopen`` from
  a signal handler), and rotated to ``PATH.1`` when it grows past its own size cap.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import struct
import sys
import time
from datetime import datetime
from typing import IO, Any

try:
    # CPython's own SHA-1: hashlib would load OpenSSL's libcrypto, 3.5 MiB more memory for a
    # replay (the benchmark's peak RSS) just to hash a few flows.
    from _sha1 import sha1
except ImportError:  # another Python
    from hashlib import sha1

# Events are kept in memory and written this many at a time (and always at close), so the
# log costs one write call per batch rather than per event.
BATCH_EVENTS = 256
# A live log is moved to PATH.1 (replacing the previous one) once it is over this size. The
# log holds detections, sessions and alerts, not flows: a household writes a few MiB a month,
# so 16 MiB (twice that on disk with PATH.1) keeps months on a router whose /tmp is RAM.
DEFAULT_MAX_MIB = 16.0

# flow_id is bounded to 51 bits as Suricata does (src/flow.h, FlowGetId: "reduce to 51 bits
# as JavaScript and even JSON often seem to max out there"): readers that parse JSON numbers
# as doubles keep every id exact.
FLOW_ID_MASK = (1 << 51) - 1
# Community ID v1 (github.com/corelight/community-id-spec, README "Pseudo code"): a 16-bit
# seed, 0 unless the operator sets one to keep sensors' ids apart.
COMMUNITY_ID_SEED = 0
# The last second the event log's timestamps can spell (9999-12-31T23:59:59).
MAX_EVENT_TS = 253402300799.0

# Characters a JSON encoder may leave raw that some line readers split on (U+0085 NEL, U+2028
# LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR: Python's str.splitlines, JavaScript before
# ES2019) or that reorder what a person sees in a terminal or viewer (the bidirectional
# embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, as in CVE-2021-42574
# "Trojan Source"). They only occur inside JSON strings, where \uXXXX is the same text.
_UNSAFE = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029, *range(0x202A, 0x202F),
                                      *range(0x2066, 0x206A))}

_PORTS = struct.Struct("!HH").pack
_FLOW_KEY = struct.Struct("!Bq").pack


# ---------------------------------------------------------------------- fields


_second_cache: list[Any] = [None, ""]


def iso_timestamp(ts: float) -> str:
    """Epoch seconds as Suricata writes them: 2024-03-05T15:01:30.123456+0000 (UTC).

    Called once per event: the text up to the second is kept from the previous call, since
    the events of a burst share their second."""
    # A time no calendar reaches (a live source's corrupt clock; capture files skip such
    # records) is written as the nearest one there is.
    ts = min(max(ts, 0.0), MAX_EVENT_TS)
    frac, whole = math.modf(ts)
    sec = int(whole)
    us = round(frac * 1e6)  # as datetime.fromtimestamp rounds
    if us >= 1_000_000:
        sec += 1
        us -= 1_000_000
    elif us < 0:
        sec -= 1
        us += 1_000_000
    cache = _second_cache
    if cache[0] != sec:
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        cache[0] = sec
    return f"{cache[1]}.{us:06d}+0000"


def eve_datetime(dt: datetime) -> str:
    """An aware datetime (a help window's start, in the household's time zone) in the same
    form, with its own offset: 2024-03-05T16:00:00.000000+0100."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")


def flow_id(proto: int, client_ip: bytes, client_port: int, server_ip: bytes,
            server_port: int, first_ts: float) -> int:
    """The flow's EVE ``flow_id``: a hash of its 5-tuple and its first packet's time (in
    microseconds), so the same flow has the same id in every run and two runs never hand out
    the same small numbers. Bounded to 51 bits like Suricata's; never 0."""
    digest = sha1(_FLOW_KEY(proto, round(first_ts * 1e6)) + client_ip + server_ip
                  + _PORTS(client_port, server_port)).digest()
    return int.from_bytes(digest[:8], "big") & FLOW_ID_MASK or 1


def community_id(proto: int, ip_a: bytes, port_a: int, ip_b: bytes, port_b: int,
                 seed: int = COMMUNITY_ID_SEED) -> str:
    """Community ID v1 of a TCP or UDP flow (github.com/corelight/community-id-spec):
    "1:" + base64(sha1(seed . saddr . daddr . proto . 0 . sport . dport)), 16-bit seed and
    ports in network byte order, the endpoints ordered so the smaller address (then port)
    comes first, whichever side opened the flow."""
    if (ip_b, port_b) < (ip_a, port_a):
        ip_a, port_a, ip_b, port_b = ip_b, port_b, ip_a, port_a
    digest = sha1(struct.pack("!H", seed) + ip_a + ip_b + bytes((proto, 0))
                  + _PORTS(port_a, port_b)).digest()
    return "1:" + binascii.b2a_base64(digest, newline=False).decode("ascii")


def eve_line(event: dict[str, Any]) -> str:
    """One event as a log line (without its newline): compact JSON, UTF-8 as is, except the
    characters that could break a line reader or mislead a person (``_UNSAFE``)."""
    line = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    if not line.isascii():
        line = line.translate(_UNSAFE)
    return line


def default_host() -> str:
    """The box's name for the ``host`` field (Suricata's ``sensor-name`` defaults to it)."""
    return os.uname().nodename


# ---------------------------------------------------------------------- the log


class EventLog:
    """Writes events to a file path, to standard output ("-"), or nowhere (None).

    ``host``, when given, is added to every event (EVE's ``host``, the sensor's name).
    ``live`` selects the daemon's behaviour (append, alerts at once, reopen, size cap of
    ``max_mib``, 0 for none); without it, replay's (truncate, batches). Live, events other
    than alerts still wait for a batch of ``BATCH_EVENTS``: the daemon calls ``flush()``
    after each batch of packets it feeds (or once a second), so a reader is never far
    behind. One thread writes; ``request_reopen`` is the only call safe from elsewhere.
    """

    def __init__(self, target: str | None, *, live: bool = False, host: str | None = None,
                 max_mib: float = DEFAULT_MAX_MIB):
        self.target = target
        self.live = live
        self.host = host
        self.max_bytes = int(max_mib * 1024 * 1024) if live and max_mib > 0 else 0
        self._fh: IO[str] | None = None
        self._buf: list[str] = []
        self._reopen = False
        self.written = 0
        self.rotations = 0
        if target == "-":
            self._fh = sys.stdout
        elif target:
            self._open("a" if live else "w")

    def _open(self, mode: str) -> None:
        assert self.target
        self._fh = open(self.target, mode, encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, event: dict[str, Any]) -> None:
        if self._fh is None:
            return
        if self.host is not None:
            event["host"] = self.host
        self._buf.append(eve_line(event))
        if len(self._buf) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (and, live, reopen or rotate when due)."""
        if self._fh is None:
            return
        if self._reopen:
            self._reopen = False
            self._reopen_file()
        if self._buf:
            self._fh.write("\n".join(self._buf) + "\n")
            self.written += len(self._buf)
            self._buf.clear()
            self._fh.flush()
            if self.max_bytes and self._fh.tell() > self.max_bytes:
                self._rotate()

    def flush_now(self) -> None:
        """An alert was just written: live, it goes to the file at once (a reader tailing
        the log sees it within the second); in replay it waits for its batch."""
        if self.live:
            self.flush()

    def request_reopen(self) -> None:
        """Safe from a signal handler (SIGHUP): the file is reopened at the next flush."""
        self._reopen = True

    def reopen(self) -> None:
        """Close and open the path again, for append: after logrotate moved the file away,
        the log goes on in a new file under the old name."""
        self._reopen = False
        self._reopen_file()
        self.flush()

    def _reopen_file(self) -> None:
        if self._fh is None or self._fh is sys.stdout or not self.target:
            return
        self._fh.close()
        self._open("a")

    def _rotate(self) -> None:
        """Over the size cap: the file becomes PATH.1 (replacing the previous one)."""
        if self._fh is None or self._fh is sys.stdout or not self.target:
            return
        self._fh.close()
        os.replace(self.target, self.target + ".1")
        self.rotations += 1
        self._open("a")

    def close(self) -> None:
        self.flush()
        if self._fh is not None and self._fh is not sys.stdout:
            self._fh.close()
        self._fh = None
