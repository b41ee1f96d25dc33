"""The ``dnslog`` source: a box that is only the LAN's DNS server reads its resolver's log.

dnsmasq with ``log-queries`` (and Pi-hole, whose pihole.log is dnsmasq's log) writes a line
for each step of a lookup. Facts this module relies on, from dnsmasq's source and manual:

- ``log_query`` in src/cache.c writes every DNS line as ``<source> <name> <verb> <dest>``:
  ``query[A] name from 192.168.1.23`` (verb ``from``, the client), ``forwarded name to
  1.1.1.1`` (verb ``to``), and answers with verb ``is`` whose source says where the answer
  came from: ``reply`` (upstream), ``cached``, ``config`` (``address=``), ``DHCP``, or the
  hosts file's path (``/etc/hosts``); the destination is an address, ``<CNAME>`` (the next
  lines follow the chain), ``NXDOMAIN``, ``NODATA``/``NODATA-IPv4``/``NODATA-IPv6`` or an
  rcode such as ``SERVFAIL``. Pi-hole adds its own sources (``gravity blocked name is
  0.0.0.0``, ``regex blacklisted``, ``Pi-hole hostname``), in the same shape.
- ``my_syslog`` in src/log.c, logging to a file (``log-facility=/path``), starts each line
  with ``ctime()``'s 15 characters (``Dec  7 00:21:17``: local time, no year) and
  ``dnsmasq[pid]: ``; a message is at most 1024 bytes (MAX_MESSAGE, after RFC 3164). Through
  syslog the same message gets the syslog daemon's timestamp and host name, with a year in
  the RFC 3339 form (``2024-03-05T15:01:30.123456+01:00 pi dnsmasq[412]: ...``, rsyslog's
  default on current Debian) or as ``2024-03-05 15:01:30``.
- ``log-queries=extra`` (dnsmasq manual, -q) puts a serial number and the requestor's
  address and port before each message (``12 192.168.1.23/41234 query[A] ...``), tying the
  lines of one query together; without it, answers are matched to queries by name.
- dnsmasq reopens its log file on SIGUSR2 (logrotate's ``postrotate``), so rotation is a
  rename and a new file; Pi-hole rotates pihole.log with ``copytruncate``. The follower
  here handles both, as ``tail -F`` does.

A line that fits none of this is counted, never fatal. The parser is sans I/O (lines and
the time in, lookups out); ``LogFollower`` reads the file; ``DnsLogSource`` puts them
together for the daemon.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

# dnsmasq's MAX_MESSAGE (src/log.c, after RFC 3164) plus the timestamp, host and tag: a line
# longer than this without a newline is not dnsmasq's; it is dropped and counted.
MAX_LINE = 2048
# Bytes read from the log per poll: a busy home resolver logs a few hundred lines a second.
READ_CHUNK = 1 << 16
# A query still without an answer after this is handed on without one: a stub resolver
# gives up on a server after 5 s (RES_TIMEOUT in resolv.h, resolv.conf(5) "timeout").
ANSWER_WAIT_S = 5.0
# Queries waiting for their answer lines; a home network has a handful in flight.
MAX_PENDING = 1024
# A line without a year is from within the last year: one stamped more than a day ahead of
# the clock was written last year (a "Dec 31" line read on 1 January).
FUTURE_SLACK_S = 86400.0
# How long a poll waits between looks at the file when nothing new is there.
POLL_STEP_S = 0.05

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
# Timestamps: ctime()'s "Mmm dd hh:mm:ss" (no year), or a date with a year: "YYYY-MM-DD
# hh:mm:ss[.frac]" or RFC 3339 "YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm)".
_TS_NO_YEAR = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) ")
_TS_YEAR = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)? ")
# After the time: an optional host name (syslog), then the program's tag. dnsmasq-dhcp and
# dnsmasq-tftp lines carry no lookups.
_TAG = re.compile(r"(?:(\S+) )?(dnsmasq|pihole-FTL)(-[a-z]+)?(?:\[\d+\])?: ")
# log-queries=extra: "<serial> <requestor>/<port> " before the message.
_EXTRA = re.compile(r"(\d+) ([0-9A-Fa-f:.]+)/(\d+) ")
# "<source> <name> <verb> <dest...>": the name is the word before the verb; the source may
# be several words (Pi-hole's "gravity blocked") or a path.
_MESSAGE = re.compile(r"(.+?) (\S+) (from|to|is) (\S+)")
NEGATIVE = ("NXDOMAIN", "NODATA", "NODATA-IPv4", "NODATA-IPv6", "SERVFAIL", "REFUSED")
NOT_ANSWERS = ("validation",)  # DNSSEC results: "validation name is SECURE"


@dataclass(slots=True)
class DnsLookup:
    """One device's lookup of a name, with what the resolver answered."""

    ts: float
    client: str
    qname: str
    qtype: str
    answers: list[str] = field(default_factory=list)  # addresses
    chain: list[str] = field(default_factory=list)  # CNAME targets, in order
    outcome: str = "no answer"  # "answered", "negative", "blocked" or "no answer"
    source: str = ""  # where the answer came from: reply, cached, config, a hosts file...
    resolver: str = "127.0.0.1"


@dataclass(slots=True)
class ParseStats:
    lines: int = 0
    queries: int = 0
    answers: int = 0
    lookups: int = 0
    other: int = 0  # dnsmasq's lines that are no lookup (start-up, DHCP, forwarded...)
    unmatched: int = 0  # answers to a query not seen (logged before netwatch started)
    junk: int = 0  # not a dnsmasq log line at all, or a query with no valid client
    dropped: int = 0  # queries pushed out of the pending table


@dataclass(slots=True)
class _Pending:
    lookup: DnsLookup
    clients: list[str]
    seq: int  # the order queries were logged in (stamps have one-second steps)
    seen: float  # the clock when the query was read (the log's own time may be skewed)
    answered: bool = False


class DnsmasqLog:
    """dnsmasq's query log, line by line, into lookups (sans I/O: lines and time in)."""

    def __init__(self, resolver: str = "127.0.0.1", tz: tzinfo | None = None,
                 clock_time: bool = False):
        self.resolver = resolver
        # The zone the resolver stamps its lines in when they carry no offset: dnsmasq uses
        # its own process's (ctime), so None, the box's own, when it runs here.
        self.tz = tz
        # Lines read as they are written take the clock's time: the stamps have one-second
        # steps, no year, and the zone of whoever wrote them; the clock has none of that.
        self.clock_time = clock_time
        self.st = ParseStats()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._ready: list[_Pending] = []  # answered, then asked again before being taken
        self._chain_of: dict[str, str] = {}  # CNAME target -> the pending key it answers
        self._last_cname: str | None = None
        self._now = 0.0

    def feed(self, line: str, now: float) -> None:
        """One line (without its newline); ``now`` is the clock, for lines without a year."""
        self._now = now
        st = self.st
        st.lines += 1
        parsed = self._frame(line, now)
        if parsed is None:
            st.junk += 1
            return
        ts, tag_suffix, msg = parsed
        if self.clock_time:
            ts = now
        if tag_suffix:
            st.other += 1
            self._last_cname = None
            return
        serial = None
        m = _EXTRA.match(msg)
        if m is not None:
            serial = m.group(1)
            msg = msg[m.end():]
        m = _MESSAGE.fullmatch(msg) or _MESSAGE.match(msg)
        if m is None:
            st.other += 1
            return
        source, name, verb, dest = m.groups()
        name = name.lower().rstrip(".")
        if verb == "is" and source not in NOT_ANSWERS:
            self._answer(serial, source, name, dest)
            return
        self._last_cname = None  # a CNAME's chain is the answer lines right after it
        if source.startswith("query[") and verb == "from":
            self._query(ts, serial, source[6:-1], name, dest)
        else:
            st.other += 1

    def take(self, now: float) -> list[DnsLookup]:
        """The lookups that are complete (answered, or waited for long enough), in the
        order they were asked. Called after each batch of lines: an answer's lines come
        in one burst."""
        done, self._ready = self._ready, []
        for key in list(self._pending):
            p = self._pending[key]
            if p.answered or now - p.seen >= ANSWER_WAIT_S:
                del self._pending[key]
                done.append(p)
        if not self._pending:
            self._chain_of.clear()
            self._last_cname = None
        elif len(self._chain_of) > MAX_PENDING:
            self._chain_of.clear()
        done.sort(key=lambda p: p.seq)
        out = [lk for p in done for lk in self._per_client(p)]
        self.st.lookups += len(out)
        return out

    def flush(self) -> list[DnsLookup]:
        """Everything still waiting (end of input)."""
        return self.take(float("inf"))

    # ------------------------------------------------------------------ lines

    def _frame(self, line: str, now: float) -> tuple[float, str, str] | None:
        """(time, tag suffix such as "-dhcp", message) of a log line; None if it is none."""
        if len(line) > MAX_LINE:
            return None
        m = _TS_NO_YEAR.match(line)
        try:
            if m is not None:
                ts = self._no_year(m, now)
            else:
                m = _TS_YEAR.match(line)
                if m is None:
                    return None
                ts = self._with_year(m)
        except (ValueError, OverflowError):
            return None  # a 31 February, an hour 25
        t = _TAG.match(line, m.end())
        if t is None:
            return None
        return ts, t.group(3) or "", line[t.end():]

    def _no_year(self, m: re.Match[str], now: float) -> float:
        mon = _MONTHS.get(m.group(1))
        if mon is None:
            raise ValueError("no such month")
        day, hh, mm, ss = (int(x) for x in m.group(2, 3, 4, 5))
        year = datetime.fromtimestamp(now, self.tz).year
        ts = self._local(year, mon, day, hh, mm, ss)
        if ts - now > FUTURE_SLACK_S:
            ts = self._local(year - 1, mon, day, hh, mm, ss)
        return ts

    def _with_year(self, m: re.Match[str]) -> float:
        y, mo, d, hh, mm, ss = (int(x) for x in m.group(1, 2, 3, 4, 5, 6))
        frac = float(m.group(7)) if m.group(7) else 0.0
        off = m.group(8)
        if off is None:
            return self._local(y, mo, d, hh, mm, ss) + frac
        dt = datetime.fromisoformat(f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}"
                                    f"{'+00:00' if off == 'Z' else off}")
        return dt.timestamp() + frac

    def _local(self, y: int, mo: int, d: int, hh: int, mm: int, ss: int) -> float:
        return datetime(y, mo, d, hh, mm, ss, tzinfo=self.tz).timestamp()

    def _query(self, ts: float, serial: str | None, qtype: str, name: str, client: str) -> None:
        try:
            ipaddress.ip_address(client)
        except ValueError:
            self.st.junk += 1
            return
        key = serial or name
        p = self._pending.get(key)
        if p is not None and not p.answered:
            self.st.queries += 1
            if client not in p.clients:
                p.clients.append(client)  # the same name asked by another device meanwhile
            return
        if p is not None:  # answered but not yet taken: it is complete
            del self._pending[key]
            self._ready.append(p)
        self.st.queries += 1
        self._pending[key] = _Pending(DnsLookup(ts, client, name, qtype,
                                                resolver=self.resolver), [client],
                                      self.st.queries, self._now)
        if len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
            self.st.dropped += 1

    def _answer(self, serial: str | None, source: str, name: str, dest: str) -> None:
        key = serial if serial is not None else name
        p = self._pending.get(key)
        if p is None and serial is None:
            owner = self._chain_of.get(name) or self._last_cname
            p = self._pending.get(owner) if owner is not None else None
            if p is not None and owner is not None:
                self._chain_of[name] = owner
                key = owner
        if p is None:
            self.st.unmatched += 1
            self._last_cname = None
            return
        self.st.answers += 1
        lk = p.lookup
        if name != lk.qname and name not in lk.chain:
            lk.chain.append(name)
        p.answered = True
        lk.source = lk.source or source
        if dest == "<CNAME>":
            self._last_cname = key
            return
        self._last_cname = None
        if dest in NEGATIVE:
            if lk.outcome == "no answer":
                lk.outcome = "negative"
            return
        try:
            addr = ipaddress.ip_address(dest)
        except ValueError:
            if lk.outcome == "no answer":
                lk.outcome = "answered"  # another type's answer (<HTTPS>, <SRV>, text)
            return
        if addr.is_unspecified or source.endswith(("blocked", "blacklisted", "denied")):
            lk.outcome = "blocked"  # a blocker's answer is no address of the name
            return
        lk.outcome = "answered"
        if str(addr) not in lk.answers:
            lk.answers.append(str(addr))

    @staticmethod
    def _per_client(p: _Pending) -> list[DnsLookup]:
        first = p.lookup
        out = [first]
        for c in p.clients[1:]:
            out.append(DnsLookup(first.ts, c, first.qname, first.qtype, list(first.answers),
                                 list(first.chain), first.outcome, first.source,
                                 first.resolver))
        return out


# ---------------------------------------------------------------------- following the file

@dataclass(slots=True)
class FollowStats:
    opened: int = 0
    rotations: int = 0  # renamed away and a new file in its place
    truncations: int = 0  # cut short in place (copytruncate)
    bytes: int = 0
    overlong: int = 0  # lines dropped for running past MAX_LINE
    errors: int = 0  # reads that failed


class LogFollower:
    """Reads the lines appended to a file, across rotation, like ``tail -F``.

    A rename (logrotate's default, dnsmasq reopening on SIGUSR2) is noticed when the path
    names another file: the old one is read to its end first, then the new one from its
    start. A file cut shorter than what was read (copytruncate) is read again from its
    start; one cut and refilled past that point between two reads cannot be told from one
    that grew (``tail -F`` has the same blind spot), so poll more often than the log fills.
    A last line without its newline waits for the rest."""

    def __init__(self, path: str, from_start: bool = False):
        self.path = path
        self.st = FollowStats()
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._pos = 0
        self._part = b""
        self._from_start = from_start
        self._first = True

    def read_lines(self) -> list[str]:
        """The complete lines written since the last call (maybe none)."""
        if self._fd is None and not self._open(first=self._first):
            self._first = False  # a file that appears later is new: read it whole
            return []
        self._first = False
        lines = self._drain()
        try:
            now = os.stat(self.path)
        except OSError:
            return lines  # rotated away, the new file not there yet: keep the old one
        assert self._fd is not None
        if (now.st_dev, now.st_ino) != self._ino:
            lines += self._drain()  # whatever reached the old file before it was renamed
            if self._part:
                lines.append(self._part.decode("utf-8", "replace"))
                self._part = b""
            self.st.rotations += 1
            self._close()
            if self._open(first=False):
                lines += self._drain()
        return lines

    def close(self) -> None:
        self._close()

    def _open(self, first: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return False
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)
        # A daemon starting on an existing log does not replay it; a new file is read whole.
        self._pos = st.st_size if first and not self._from_start else 0
        self._part = b""
        self.st.opened += 1
        return True

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def _drain(self) -> list[str]:
        fd = self._fd
        assert fd is not None
        try:
            size = os.fstat(fd).st_size
            if size < self._pos:  # truncated in place: start again at its beginning
                self.st.truncations += 1
                self._pos = 0
                self._part = b""
            chunks = []
            while True:
                data = os.pread(fd, READ_CHUNK, self._pos)
                if not data:
                    break
                self._pos += len(data)
                chunks.append(data)
        except OSError:
            self.st.errors += 1
            return []
        if not chunks:
            return []
        data = self._part + b"".join(chunks)
        self.st.bytes += len(data) - len(self._part)
        *done, self._part = data.split(b"\n")
        if len(self._part) > MAX_LINE:
            self.st.overlong += 1
            self._part = b""
        return [ln.decode("utf-8", "replace") for ln in done]


# ---------------------------------------------------------------------- the live source

class DnsLogSource:
    """The resolver's log as a live source for ``netwatch run``.

    Like the packet sources it is polled (``poll(timeout_s)``; ``stats()``, ``close()``,
    ``name``, ``iface``), but what it yields are lookups, not frames: ``kind`` says so, and
    the daemon hands them to ``Pipeline.feed_lookups``."""

    name = "dnslog"
    kind = "lookups"

    def __init__(self, path: str, resolver: str = "127.0.0.1", tz: tzinfo | None = None,
                 from_start: bool = False, clock: Callable[[], float] = time.time):
        self.iface = path
        self.follower = LogFollower(path, from_start)
        # Following live, a lookup's time is when its line was read (within a poll of being
        # written), whatever zone the log's stamps are in; an old log read from its start
        # (``from_start``) keeps the stamps, read in ``tz`` (None: the box's own zone).
        self.parser = DnsmasqLog(resolver, tz, clock_time=not from_start)
        self.clock = clock

    def poll(self, timeout_s: float) -> list[DnsLookup]:
        """The lookups completed by the lines written so far; waits up to ``timeout_s`` for
        new lines when there are none (empty on timeout)."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            lines = self.follower.read_lines()
            now = self.clock()
            for line in lines:
                self.parser.feed(line, now)
            out = self.parser.take(now)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(POLL_STEP_S, max(deadline - time.monotonic(), 0.0)))

    def stats(self) -> dict[str, int]:
        """Counters as plain numbers. What it hands over are lookups, so ``packets`` counts
        those and ``bytes`` the log read; the rest say what the lines were."""
        p, f = self.parser.st, self.follower.st
        return {"packets": p.lookups, "lines": p.lines, "lookups": p.lookups, "queries": p.queries,
                "answers": p.answers, "other_lines": p.other, "unmatched_answers": p.unmatched,
                "junk_lines": p.junk, "pending_dropped": p.dropped, "bytes": f.bytes,
                "rotations": f.rotations, "truncations": f.truncations,
                "overlong_lines": f.overlong, "read_errors": f.errors}

    def close(self) -> None:
        self.follower.close()


def read_log(path: str, resolver: str = "127.0.0.1", tz: tzinfo | None = None,
             now: float | None = None) -> tuple[list[DnsLookup], ParseStats]:
    """Every lookup in a whole log file, in the order they were asked (for one-off checks
    and tests); ``now`` dates the lines without a year (default: the clock)."""
    parser = DnsmasqLog(resolver, tz)
    clock = time.time() if now is None else now
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parser.feed(line.rstrip("\n"), clock)
    return parser.flush(), parser.st
