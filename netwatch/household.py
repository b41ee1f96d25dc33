"""The household: who lives here, their devices, who looks after them, and when help is
expected.

A son or daughter writes it by hand as YAML (``deploy/household.example.yaml`` explains every
field). It is read from PyYAML's node tree rather than from loaded Python values, for two
reasons: every problem can name its line, the way a compiler does, and scalars keep the text
that was typed (PyYAML would turn an unquoted ``10:00`` into the integer 600 and some MAC
addresses into sexagesimal numbers, YAML 1.1 section 10.3).

The query methods never read the clock: the time is always passed in, so replays and tests
are deterministic. All times in the file are wall-clock times of the household's time zone,
resolved with ``zoneinfo`` for the day in question, so daylight saving time is right.
"""

from __future__ import annotations

import difflib
import heapq
import http.client
import ipaddress
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from .shown import shown

LANGUAGES = ("en", "nl", "fr", "de")
COUNTRIES = ("be", "nl", "fr", "de", "uk")
POLICIES = ("observe", "alert", "block-outside-windows", "block")
DEFAULT_POLICY = "alert"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_GROUPS = {"every day": tuple(range(7)), "everyday": tuple(range(7)), "daily": tuple(range(7)),
              "weekdays": (0, 1, 2, 3, 4), "weekend": (5, 6)}
PAYMENTS = "payments"
EXTRA = "extra"
BANKING_DIR = Path(__file__).resolve().parent / "data" / "banking"
# A calendar download that takes longer than this is given up: check-config is run by a person
# waiting at a terminal.
FETCH_TIMEOUT_S = 10.0
# Names ``Household.banking`` remembers its answer for (forgotten all at once when full).
BANKING_NAMES = 4096
# next_windows looks this far ahead at most: a help window rarer than once a year is not
# "coming up", and an endless weekly rule must not make the search endless.
LOOKAHEAD = timedelta(days=400)
FIRST_LOOK = timedelta(days=8)
MASK = "****"
QUOTE_MAX = 60  # characters of a wrong value quoted in a problem
PROBLEM_MAX = 400  # characters of one problem line, whatever it quotes
# Starts of one help window a day that a calendar rule may ask for: one every half hour is
# already beyond any household's meaning; the bound keeps an expansion small (a rule firing
# every second made check-config take 50 s and gigabytes).
MAX_STARTS_PER_DAY = 48

TOP_FIELDS = ("timezone", "people", "carers", "devices", "dhcp_leases", "help_windows",
              "quiet_hours", "trusted", "never_block", "banking", "sessions")
# The session tracker's thresholds a household may change (netwatch/sessions.py,
# docs/sessions.md), with the unit each is written in.
SESSION_FIELDS = {"active_bytes_per_s": "bytes per second", "input_bytes_per_s":
                  "bytes per second", "connect_bytes_per_s": "bytes per second",
                  "active_after_s": "seconds", "quiet_after_s": "seconds",
                  "return_window_days": "days", "download_window_minutes": "minutes"}
PERSON_FIELDS = ("name", "language", "country")
CARER_FIELDS = ("name", "language", "notify", "for")
DEVICE_FIELDS = ("name", "person", "macs", "ips", "hostnames", "policy")
WINDOW_FIELDS = ("name", "days", "start", "end", "people", "devices", "tools", "ics", "ics_url")
QUIET_FIELDS = ("start", "end")
TRUST_FIELDS = ("tool", "device", "peer", "peer_name", "note")
NEVER_BLOCK_FIELDS = ("peer", "device", "note")
BANKING_FIELDS = ("countries", "extra")

_NULL_TAG = "tag:yaml.org,2002:null"
_TIME = re.compile(r"^(\d{1,2})[:.h](\d{2})$")
_MAC = re.compile(r"^[0-9a-f]{2}([:-])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}$")
_MAC_DOTTED = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)


class HouseholdError(Exception):
    """Problems in a household file; ``problems`` lists them, each
    ``FILE:LINE: field.path: message``."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class HouseholdUnreadable(HouseholdError):
    """The file could not be read at all (missing, a folder, not UTF-8 text)."""


# --- records -------------------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    name: str
    language: str
    country: str | None = None


@dataclass(slots=True)
class Carer:
    name: str
    language: str
    notify: list[str]
    for_people: list[str]

    @property
    def masked_notify(self) -> list[str]:
        return [mask_url(u) for u in self.notify]

    def __repr__(self) -> str:
        # The URLs carry tokens and passwords: they never reach a log through repr/str.
        return (f"Carer(name={self.name!r}, language={self.language!r}, "
                f"notify={self.masked_notify!r}, for_people={self.for_people!r})")


@dataclass(slots=True)
class Device:
    name: str
    person: str
    macs: list[str]
    ips: list[str]
    hostnames: list[str]
    policy: str = DEFAULT_POLICY


@dataclass(slots=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(slots=True)
class TrustRule:
    """A connection the family agrees is fine. Each given field must match; a missing one
    matches anything."""

    tool: str | None = None
    device: str | None = None
    peer: str | None = None
    peer_name: str | None = None
    note: str = ""
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = field(default=None,
                                                                         repr=False)

    def matches(self, device: Device | None, tool: str, peer_ip: str | None,
                peer_name: str | None) -> bool:
        if self.tool is not None and self.tool != tool:
            return False
        if self.device is not None and (device is None or device.name != self.device):
            return False
        if self.network is not None:
            ip = _ip(peer_ip) if peer_ip else None
            if ip is None or ip.version != self.network.version or ip not in self.network:
                return False
        if self.peer_name is not None:
            name = _dns_name(peer_name) if peer_name else ""
            if name != self.peer_name and not name.endswith("." + self.peer_name):
                return False
        return True


@dataclass(slots=True)
class NeverBlock:
    """An address, network or device that blocking must never cut (the household's
    ``never_block`` list; netwatch/block/safety.py applies it)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    device: str | None = None
    note: str = ""


@dataclass(slots=True)
class WindowHit:
    """One occurrence of a help window: ``start``/``end`` are aware, in the household's time
    zone; ``summary`` is the calendar event's title for calendar windows."""

    name: str
    start: datetime
    end: datetime
    summary: str = ""
    window: HelpWindow | None = field(default=None, repr=False, compare=False)

    def contains(self, when: datetime) -> bool:
        return self.start.astimezone(UTC) <= when.astimezone(UTC) < self.end.astimezone(UTC)


@dataclass(slots=True, kw_only=True)
class HelpWindow:
    """When help is expected. ``people``/``devices`` empty: everyone; ``tools`` empty: any."""

    name: str
    people: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)

    def applies_to(self, device: Device | None) -> bool:
        if not self.people and not self.devices:
            return True
        if device is None:
            return False
        return device.name in self.devices or device.person in self.people

    def allows_tool(self, tool: str | None) -> bool:
        return not self.tools or tool in self.tools

    def occurrences(self, start: datetime, end: datetime, tz: zoneinfo.ZoneInfo
                    ) -> Iterator[WindowHit]:
        """The occurrences overlapping ``[start, end)``, in no particular order."""
        raise NotImplementedError


@dataclass(slots=True, kw_only=True)
class WeeklyWindow(HelpWindow):
    days: tuple[int, ...]  # date.weekday() numbers: 0 is Monday
    start: time
    end: time  # when end <= start the window ends on the next day ("24:00" is 00:00)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def occurrences(self, start: datetime, end: datetime, tz: zoneinfo.ZoneInfo
                    ) -> Iterator[WindowHit]:
        lo, hi = start.astimezone(UTC), end.astimezone(UTC)
        # The day before too: its window may run past midnight into the asked range.
        day = start.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date()
        while day <= last:
            if day.weekday() in self.days:
                s = _local(day, self.start, tz)
                e = _local(day + timedelta(days=1) if self.crosses_midnight else day,
                           self.end, tz)
                if s.astimezone(UTC) < hi and e.astimezone(UTC) > lo:
                    yield WindowHit(self.name, s, e, window=self)
            day += timedelta(days=1)


@dataclass(slots=True, kw_only=True)
class CalendarWindow(HelpWindow):
    """Occurrences of the events of an iCalendar file (RRULE, EXDATE, RECURRENCE-ID
    honoured). All-day events cover their days from local midnight to midnight; events
    without a time zone (floating) are taken in the household's."""

    source: str  # the file read: the ics path, or the cache of ics_url
    url: str | None = field(default=None, repr=False)
    query: Any = field(default=None, repr=False, compare=False)

    @property
    def masked_url(self) -> str | None:
        return mask_url(self.url) if self.url else None

    def occurrences(self, start: datetime, end: datetime, tz: zoneinfo.ZoneInfo
                    ) -> Iterator[WindowHit]:
        if self.query is None:
            return
        lo, hi = start.astimezone(UTC), end.astimezone(UTC)
        # Asked a day wider on both sides, in the household zone, because floating and
        # all-day events are only placed in time once converted below.
        pad = timedelta(days=1)
        for ev in self.query.between((start - pad).astimezone(tz), (end + pad).astimezone(tz)):
            if str(ev.get("STATUS", "")).upper() == "CANCELLED":
                continue
            s, e = _event_time(ev.start, tz), _event_time(ev.end, tz)
            if s.astimezone(UTC) < hi and e.astimezone(UTC) > lo and e > s:
                yield WindowHit(self.name, s, e, summary=str(ev.get("SUMMARY", "")), window=self)


# --- the household -------------------------------------------------------------------------


@dataclass(slots=True)
class Household:
    path: str
    tz: zoneinfo.ZoneInfo
    people: dict[str, Person]
    carers: list[Carer]
    devices: list[Device]
    windows: list[HelpWindow]
    quiet: QuietHours | None
    trusted: list[TrustRule]
    banking_domains: dict[str, str]  # domain -> country code, "payments" or "extra"
    banking_countries: list[str] = field(default_factory=list)
    dhcp_leases: str | None = None
    warnings: list[str] = field(default_factory=list)
    sessions: dict[str, float] = field(default_factory=dict)  # SESSION_FIELDS given
    never_block: list[NeverBlock] = field(default_factory=list)
    _by_mac: dict[str, Device] = field(default_factory=dict, repr=False)
    _by_ip: dict[str, Device] = field(default_factory=dict, repr=False)
    _by_hostname: dict[str, Device] = field(default_factory=dict, repr=False)
    _leases: LeaseTable | None = field(default=None, repr=False)
    # Names already looked at by ``banking`` (a DNS answer's name comes again and again).
    _banking_names: dict[str, tuple[str, str] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for d in self.devices:
            for m in d.macs:
                self._by_mac.setdefault(m, d)
            for ip in d.ips:
                self._by_ip.setdefault(ip, d)
            for h in d.hostnames:
                self._by_hostname.setdefault(h, d)
        if self.dhcp_leases and self._leases is None:
            self._leases = LeaseTable(self.dhcp_leases)

    # -- devices and people

    def device_for(self, ip: str, mac: str | None = None) -> Device | None:
        """The device with this MAC, else the one given this IP in the file, else the one the
        DHCP leases file gives it to (matched by MAC or hostname). The leases file is re-read
        when its modification time or size changed."""
        if mac:
            m = normalise_mac(mac)
            if m and m in self._by_mac:
                return self._by_mac[m]
        addr = _ip(ip)
        if addr is None:
            return None
        d = self._by_ip.get(str(addr))
        if d is not None or self._leases is None:
            return d
        lease = self._leases.lookup(str(addr))
        if lease is None:
            return None
        return self._by_mac.get(lease.mac) or (
            self._by_hostname.get(lease.hostname) if lease.hostname else None)

    def person_of(self, device: Device | None) -> Person | None:
        return self.people.get(device.person) if device is not None else None

    def carers_for(self, person: Person | None) -> list[Carer]:
        """The carers who look after ``person``; for an unknown person (a device the household
        does not know), every carer."""
        if person is None:
            return list(self.carers)
        return [c for c in self.carers if person.name in c.for_people]

    # -- time

    def window_at(self, when: datetime, device: Device | None = None,
                  tool: str | None = None) -> WindowHit | None:
        """The help window open at ``when`` for this device and tool, if any.

        ``device=None`` is a device the household does not know: only windows for everyone
        apply. ``tool=None`` is an unknown tool: only windows allowing any tool apply. When
        several are open, the one that ends last is returned."""
        _need_aware(when)
        hits = [h for w in self.windows if w.applies_to(device) and w.allows_tool(tool)
                for h in w.occurrences(when, when + timedelta(microseconds=1), self.tz)
                if h.contains(when)]
        if not hits:
            return None
        return max(hits, key=lambda h: (h.end.astimezone(UTC), h.name))

    def next_windows(self, now: datetime, count: int = 5,
                     device: Device | None = None) -> list[WindowHit]:
        """The next ``count`` help windows that end after ``now`` (one open at ``now`` comes
        first), earliest first, for ``device`` (None: every window, for display)."""
        _need_aware(now)
        windows = [w for w in self.windows if device is None or w.applies_to(device)]
        if count <= 0 or not windows:
            return []
        span = FIRST_LOOK
        while True:
            hits = {(h.start.astimezone(UTC), h.end.astimezone(UTC), h.name, h.summary): h
                    for w in windows for h in w.occurrences(now, now + span, self.tz)}
            if len(hits) >= count or span >= LOOKAHEAD:
                return [hits[k] for k in heapq.nsmallest(count, hits)]
            span = min(span * 4, LOOKAHEAD)

    def is_quiet(self, when: datetime) -> bool:
        _need_aware(when)
        return self.quiet is not None and self.quiet.contains(
            when.astimezone(self.tz).time().replace(tzinfo=None))

    # -- trust and banking

    def trusted_rule(self, device: Device | None, tool: str, peer_ip: str | None,
                     peer_name: str | None) -> TrustRule | None:
        for rule in self.trusted:
            if rule.matches(device, tool, peer_ip, peer_name):
                return rule
        return None

    def banking(self, name: str) -> tuple[str, str] | None:
        """The banking domain ``name`` (a DNS or SNI name) is, or is under, with its list."""
        seen = self._banking_names
        try:
            return seen[name]
        except KeyError:
            pass
        found = None
        domain = _dns_name(name)
        get = self.banking_domains.get
        while True:
            cc = get(domain)
            if cc is not None:
                found = (domain, cc)
                break
            dot = domain.find(".")
            if dot < 0:
                break
            domain = domain[dot + 1:]  # the name's parent
        if len(seen) >= BANKING_NAMES:
            seen.clear()
        seen[name] = found
        return found


# --- DHCP leases ---------------------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    mac: str
    ip: str
    hostname: str | None


class LeaseTable:
    """A dnsmasq/OpenWrt leases file (``/tmp/dhcp.leases``), one lease a line:
    ``<expiry-epoch> <mac> <ip> <hostname|*> <client-id|*>``. The expiry is not checked
    (that would need the clock); dnsmasq drops expired leases from the file itself."""

    def __init__(self, path: str):
        self.path = path
        self.by_ip: dict[str, Lease] = {}
        self.bad_lines: list[int] = []
        self.readable = False
        self._stamp: tuple[int, int] | None = None
        self.refresh()

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            self.by_ip, self._stamp, self.readable = {}, None, False
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            self.by_ip, self._stamp, self.readable = {}, None, False
            return
        self.by_ip, self.bad_lines = parse_leases(text)
        self._stamp, self.readable = stamp, True

    def lookup(self, ip: str) -> Lease | None:
        self.refresh()
        return self.by_ip.get(ip)


def parse_leases(text: str) -> tuple[dict[str, Lease], list[int]]:
    """Leases by IP, and the numbers of the lines that were not leases."""
    out: dict[str, Lease] = {}
    bad: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        # A "duid ..." line carries the server's DHCPv6 identity, not a lease.
        if parts[0] == "duid":
            continue
        mac = normalise_mac(parts[1]) if len(parts) >= 4 else None
        ip = _ip(parts[2]) if len(parts) >= 4 else None
        if mac is None or ip is None or not parts[0].isdigit():
            bad.append(n)
            continue
        host = parts[3].lower() if parts[3] != "*" else None
        out[str(ip)] = Lease(mac, str(ip), host)
    return out, bad


# --- helpers -------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """An Apprise URL with its secrets hidden: the scheme and a host name are kept, the rest
    (user, password, path, query) becomes ``****``. Many Apprise services put the token where
    a host would be (``tgram://123:ABC/``, ``ntfy://topic``): a "host" that is not a dotted
    name or an IP address is masked too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK
    authority, _, tail = rest.partition("/")
    query = ""
    for mark in ("?", "#"):
        if mark in authority:
            authority, _, q = authority.partition(mark)
            query = query or q or mark
    user, at, hostport = authority.rpartition("@")
    host = hostport
    port = ""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
    shown = _looks_like_host(host)
    out = f"{scheme.lower()}://"
    if at:
        out += MASK + "@"
    if shown:
        out += f"[{host}]" if ":" in host else host
        if port.isdigit():
            out += ":" + port
        elif port:
            out += ":" + MASK
    else:
        out += MASK
    if (tail or query) and shown:
        out += "/" + MASK
    return out


def _shown(value: str) -> str:
    """A wrong value as a problem may quote it: masked when it looks like a URL, in case a
    notification address was typed in the wrong field; its first QUOTE_MAX characters
    only (a value of megabytes is not echoed whole), control characters escaped."""
    return shown(mask_url(value) if _URL.match(value[:QUOTE_MAX * 4]) else value, QUOTE_MAX)


def _looks_like_host(host: str) -> bool:
    if not host:
        return False
    if _ip(host) is not None:
        return True
    labels = host.lower().split(".")
    return (len(labels) >= 2 and all(_LABEL.match(x) for x in labels)
            and labels[-1].isalpha())


def normalise_mac(text: str) -> str | None:
    t = text.strip().lower()
    if _MAC_DOTTED.match(t):
        t = t.replace(".", "")
        return ":".join(t[i:i + 2] for i in range(0, 12, 2))
    if _MAC.match(t):
        return t.replace("-", ":")
    return None


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _dns_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _local(day: date, t: time, tz: zoneinfo.ZoneInfo) -> datetime:
    """Wall-clock ``t`` on ``day`` in ``tz``. A time that the spring change skips becomes the
    same instant written after the change (02:30 -> 03:30); one that the autumn change
    repeats is its first occurrence (PEP 495, fold=0)."""
    return datetime.combine(day, t, tzinfo=tz).astimezone(UTC).astimezone(tz)


def _event_time(value: date | datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return _local(value.date(), value.time(), tz)
        return value.astimezone(tz)
    return _local(value, time(0), tz)


def _need_aware(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed, got {when!r}")


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _suggest(word: str, choices: Iterable[str]) -> str:
    if len(word) > QUOTE_MAX:
        return ""  # nothing that long is a typo of a short name (and difflib is quadratic)
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "calendar"


def calendar_cache_path(yaml_path: str, window_name: str) -> str:
    """Where ``check-config --fetch`` keeps an ``ics_url`` window's calendar: beside the YAML
    file, ``.<window name as a slug>.ics.cache``."""
    folder = os.path.dirname(os.path.abspath(yaml_path))
    return os.path.join(folder, f".{_slug(window_name)}.ics.cache")


def system_timezone() -> str:
    """The IANA name of the system's time zone, else ``UTC``."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        with open("/etc/timezone", encoding="utf-8") as f:
            candidates.append(f.readline().strip())
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name and _zone(name) is not None:
            return name
    return "UTC"


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def load_banking_lists(folder: Path = BANKING_DIR) -> dict[str, list[str]]:
    """The bundled lists: file stem (country code or ``payments``) -> domains."""
    out: dict[str, list[str]] = {}
    for f in sorted(folder.glob("*.txt")):
        domains = []
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip().lower()
            if line:
                domains.append(line)
        out[f.stem] = domains
    return out


_TOOLS_CACHE: dict[str, str] | None = None


def known_tool_names() -> dict[str, str] | None:
    """Every spelling of every tool the signatures know (id, name, aliases, squashed to
    lower-case letters and digits) -> tool id; None when the signatures cannot be loaded."""
    global _TOOLS_CACHE
    if _TOOLS_CACHE is None:
        from .recognisers import load_all
        from .signatures import SignatureError, load_dir

        try:
            sigs = load_dir(known_recognisers=load_all())
        except SignatureError:
            return None
        index: dict[str, str] = {}
        for tool, s in sigs.by_tool.items():  # curated first: they win a shared spelling
            for spelling in (tool, s.name, *s.aliases):
                index.setdefault(_squash(spelling), tool)
        _TOOLS_CACHE = index
    return _TOOLS_CACHE


# --- reading the file ----------------------------------------------------------------------



class _Reader:
    """Walks the composed YAML tree, collecting problems and warnings with their lines."""

    def __init__(self, path: str, tools: Mapping[str, str] | None):
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.problems: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []
        self.tools = tools
        # A list or a set of fields starts on the line after its key; a problem with the whole
        # of it is shown on the key's line.
        self.key_of: dict[int, Node] = {}

    # -- reporting

    def line(self, node: Node | None) -> int:
        if isinstance(node, yaml.CollectionNode) and id(node) in self.key_of:
            node = self.key_of[id(node)]
        return _line(node)

    def fail(self, node: Node | None, where: str, msg: str) -> None:
        n = self.line(node)
        if len(msg) > PROBLEM_MAX:
            msg = msg[:PROBLEM_MAX] + "…"
        self.problems.append((n, f"{self.path}:{n}: {where}: {msg}"))

    def warn(self, node: Node | None, where: str, msg: str) -> None:
        n = self.line(node)
        self.warnings.append((n, f"{self.path}:{n}: {where}: {msg}"))

    # -- shapes

    def mapping(self, node: Node, where: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = (), example: str = "") -> dict[str, Node] | None:
        """The mapping's values by key (empty values left out); unknown, repeated and missing
        keys reported."""
        if not isinstance(node, yaml.MappingNode):
            hint = f", like {example}" if example else ""
            self.fail(node, where, f"must be a set of 'field: value' lines{hint}")
            return None
        out: dict[str, Node] = {}
        seen: set[str] = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or not k.value:
                self.fail(k, where, "a field name must be plain text")
                continue
            key = k.value
            sub = f"{where}.{key}" if where else key
            if key not in allowed:
                self.fail(k, sub, "unknown field" + _suggest(key, allowed))
                continue
            if key in seen:
                self.fail(k, sub, "given twice")
                continue
            seen.add(key)
            self.key_of[id(v)] = k
            if not _is_null(v):
                out[key] = v
        for key in required:
            if key not in out:
                msg = "is empty" if key in seen else "missing (required)"
                self.fail(node, f"{where}.{key}" if where else key, msg)
        return out

    def text(self, node: Node, where: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, where, "must be a single value, not a list or a set of fields")
            return None
        value = node.value.strip()
        if not value:
            self.fail(node, where, "is empty")
            return None
        return value

    def items(self, node: Node, where: str, single_ok: bool = True) -> list[Node]:
        """The items of a list; a single value stands for a list of one when allowed."""
        if isinstance(node, yaml.SequenceNode):
            return [n for n in node.value if not _is_null(n)]
        if single_ok and isinstance(node, yaml.ScalarNode):
            return [node]
        self.fail(node, where, "must be a list (lines starting with '- ', or [a, b])")
        return []

    def texts(self, node: Node, where: str) -> list[tuple[Node, str, str]]:
        """The values of a list (or of a single value) with their field paths."""
        out = []
        for i, n in enumerate(self.items(node, where)):
            sub = f"{where}[{i}]" if isinstance(node, yaml.SequenceNode) else where
            t = self.text(n, sub)
            if t is not None:
                out.append((n, t, sub))
        return out

    def choice(self, node: Node, where: str, choices: Iterable[str]) -> str | None:
        t = self.text(node, where)
        if t is None:
            return None
        options = tuple(choices)
        if t.lower() in options:
            return t.lower()
        self.fail(node, where, f"{_shown(t)!r} is not one of {', '.join(options)}" + _suggest(
            t.lower(), options))
        return None

    def clock(self, node: Node, where: str, allow_24: bool = False) -> time | None:
        t = self.text(node, where)
        if t is None:
            return None
        m = _TIME.match(t)
        if m:
            h, mi = int(m.group(1)), int(m.group(2))
            if allow_24 and (h, mi) == (24, 0):
                return time(0)
            if h < 24 and mi < 60:
                return time(h, mi)
        self.fail(node, where, f"{_shown(t)!r} is not a time: write it as HH:MM, like \"10:00\"")
        return None

    def reference(self, node: Node, where: str, names: Iterable[str], what: str) -> str | None:
        """A name that must be one of ``names``, matched without regard to case."""
        t = self.text(node, where)
        if t is None:
            return None
        by_lower = {n.lower(): n for n in names}
        if t.lower() in by_lower:
            return by_lower[t.lower()]
        known = ", ".join(sorted(by_lower.values())) or "none"
        self.fail(node, where, f"{_shown(t)!r} is not one of the {what} ({known})"
                  + _suggest(t, by_lower.values()))
        return None

    def tool(self, node: Node, where: str) -> str | None:
        t = self.text(node, where)
        if t is None:
            return None
        if self.tools is None:
            return t.lower()
        tool = self.tools.get(_squash(t))
        if tool is None:
            ids = sorted(set(self.tools.values()))
            self.fail(node, where, f"{_shown(t)!r} is not a tool netwatch knows "
                      "(see 'netwatch signatures list')" + _suggest(t.lower(), ids))
        return tool


def _is_24(node: Node) -> bool:
    m = _TIME.match(node.value.strip()) if isinstance(node, yaml.ScalarNode) else None
    return m is not None and int(m.group(1)) == 24


def _line(node: Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _is_null(node: Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def read_text(path: str, unreadable: Callable[[list[str]], Exception]) -> str:
    """A settings file's text; ``unreadable([problem])`` is raised when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise unreadable([f"{path}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise unreadable([f"{path}: cannot read: not UTF-8 text (byte {e.start})"]) from None


def yaml_problem(path: str, e: yaml.YAMLError) -> str:
    """A YAML syntax error as one ``FILE:LINE: yaml: what`` line."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(x for x in (e.context, e.problem) if x)
        return f"{path}:{line}: yaml: {what}"
    return f"{path}:1: yaml: {e}"


# libyaml's parser when PyYAML has it: the same nodes and marks, about ten times faster on a
# big file (20,000 devices: the pure-Python scanner alone took 25 s).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_household(path: str, known_tools: Mapping[str, str] | Iterable[str] | None = None
                   ) -> Household:
    """Read and check a household file. Raises ``HouseholdUnreadable`` when it cannot be
    read and ``HouseholdError`` with every problem found otherwise. ``known_tools``: the tool
    ids (or a spelling -> id map) that ``tools`` fields may name; default: the installed
    signatures' tools."""
    text = read_text(path, HouseholdUnreadable)
    warnings: list[str] = []
    if known_tools is None:
        tools = known_tool_names()
        if tools is None:
            warnings.append(f"{path}:1: tools: not checked: the signature files are invalid "
                            "(see 'netwatch signatures check')")
    elif isinstance(known_tools, Mapping):
        tools = {_squash(k): v for k, v in known_tools.items()}
    else:
        tools = {_squash(t): t for t in known_tools}
    r = _Reader(path, tools)
    try:
        root = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        raise HouseholdError([yaml_problem(path, e)]) from None
    if root is None or _is_null(root):
        raise HouseholdError([f"{path}:1: (file): is empty: it needs at least 'people:'"])
    h = _build(r, root)
    r.problems.sort(key=lambda p: p[0])
    if r.problems:
        raise HouseholdError([p for _, p in r.problems])
    assert h is not None
    r.warnings.sort(key=lambda p: p[0])
    h.warnings = warnings + [w for _, w in r.warnings]
    return h


def _build(r: _Reader, root: Node) -> Household | None:
    top = r.mapping(root, "", TOP_FIELDS, required=("people",),
                    example="'people:' and 'devices:'")
    if top is None:
        return None
    tz = _read_timezone(r, top.get("timezone"))
    people = _read_people(r, top["people"]) if "people" in top else {}
    carers = _read_carers(r, top.get("carers"), people)
    devices = _read_devices(r, top.get("devices"), people)
    leases = _read_leases(r, top.get("dhcp_leases"))
    windows = _read_windows(r, top.get("help_windows"), people, devices)
    quiet = _read_quiet(r, top["quiet_hours"]) if "quiet_hours" in top else None
    trusted = _read_trusted(r, top.get("trusted"), devices)
    never_block = _read_never_block(r, top.get("never_block"), devices)
    countries, domains = _read_banking(r, top.get("banking"), people)
    sessions = _read_sessions(r, top["sessions"]) if "sessions" in top else {}
    if r.problems:
        return None
    return Household(path=r.path, tz=tz, people=people, carers=carers, devices=devices,
                     windows=windows, quiet=quiet, trusted=trusted, banking_domains=domains,
                     banking_countries=countries,
                     dhcp_leases=leases.path if leases else None, _leases=leases,
                     sessions=sessions, never_block=never_block)


def _read_timezone(r: _Reader, node: Node | None) -> zoneinfo.ZoneInfo:
    if node is None:
        return zoneinfo.ZoneInfo(system_timezone())
    name = r.text(node, "timezone")
    if name is None:
        return zoneinfo.ZoneInfo("UTC")
    if name.upper() == "UTC":
        return zoneinfo.ZoneInfo("UTC")
    tz = _zone(name)
    if tz is not None and "/" not in name:
        # "GMT" or "CET" would stay in winter time all summer; a place's zone follows it.
        r.fail(node, "timezone", f"{_shown(name)!r} is not a place: give the zone of the "
               "place, like 'Europe/London' or 'Europe/Brussels', so summer time is right")
        return zoneinfo.ZoneInfo("UTC")
    if tz is None:
        r.fail(node, "timezone", f"{_shown(name)!r} is not a time zone name like 'Europe/Brussels'"
               + _suggest(name, sorted(zoneinfo.available_timezones())))
        return zoneinfo.ZoneInfo("UTC")
    return tz


def _read_people(r: _Reader, node: Node) -> dict[str, Person]:
    people: dict[str, Person] = {}
    example = "'Maria: {language: nl, country: be}'"
    if isinstance(node, yaml.MappingNode):
        entries: list[tuple[Node, str | None, Node]] = [
            (k, k.value if isinstance(k, yaml.ScalarNode) else None, v) for k, v in node.value]
    elif isinstance(node, yaml.SequenceNode):
        entries = []
        for i, item in enumerate(node.value):
            m = r.mapping(item, f"people[{i}]", PERSON_FIELDS, required=("name", "language"))
            if m is not None and "name" in m:
                entries.append((m["name"], r.text(m["name"], f"people[{i}].name"), item))
    else:
        r.fail(node, "people", f"must list each person with their language, like {example}")
        return people
    for key_node, name, value in entries:
        if not name:
            r.fail(key_node, "people", "a person needs a name")
            continue
        where = f"people.{name}"
        if name.lower() in {p.lower() for p in people}:
            r.fail(key_node, where, "this person is listed twice")
            continue
        if isinstance(value, yaml.ScalarNode) and not _is_null(value):
            lang = r.choice(value, f"{where}.language", LANGUAGES)
            country = None
        else:
            m = r.mapping(value, where, PERSON_FIELDS, required=("language",), example=example)
            if m is None:
                continue
            lang = r.choice(m["language"], f"{where}.language", LANGUAGES) \
                if "language" in m else None
            country = r.choice(m["country"], f"{where}.country", COUNTRIES) \
                if "country" in m else None
        # Kept even when its fields are wrong, so references to it raise no second problem
        # (and the file is refused anyway).
        people[name] = Person(name, lang or "", country)
    if not entries:
        r.fail(node, "people", f"list at least one person, like {example}")
    return people


def _read_carers(r: _Reader, node: Node | None, people: dict[str, Person]) -> list[Carer]:
    carers: list[Carer] = []
    if node is None:
        r.warn(None, "carers", "no carer is given: nobody will be told of an alert")
        return carers
    for i, item in enumerate(r.items(node, "carers", single_ok=False)):
        where = f"carers[{i}]"
        m = r.mapping(item, where, CARER_FIELDS, required=("name", "language"))
        if m is None:
            continue
        name = r.text(m["name"], f"{where}.name") if "name" in m else None
        lang = r.choice(m["language"], f"{where}.language", LANGUAGES) \
            if "language" in m else None
        notify: list[str] = []
        for j, n in enumerate(r.items(m["notify"], f"{where}.notify") if "notify" in m else []):
            sub = f"{where}.notify[{j}]" if isinstance(m["notify"], yaml.SequenceNode) \
                else f"{where}.notify"
            url = r.text(n, sub)
            # Never echo the URL itself: it holds the token or password.
            if url is not None and not _URL.match(url):
                r.fail(n, sub, "is not an Apprise URL such as ntfy://ntfy.sh/your-topic "
                       "(scheme://...)")
            elif url is not None:
                notify.append(url)
        if "for" in m:
            looked_after = [p for n, _, sub in r.texts(m["for"], f"{where}.for")
                            if (p := r.reference(n, sub, people, "people"))]
        else:
            looked_after = list(people)
        if name and name.lower() in {c.name.lower() for c in carers}:
            r.fail(m["name"], f"{where}.name", f"carer {_shown(name)!r} is listed twice")
            continue
        if name and lang:
            carers.append(Carer(name, lang, notify, looked_after))
    if not any(c.notify for c in carers):
        r.warn(node, "carers", "no carer has a 'notify' address: nobody will be told of an "
               "alert")
    return carers


def _read_devices(r: _Reader, node: Node | None, people: dict[str, Person]) -> list[Device]:
    devices: list[Device] = []
    if node is None:
        return devices
    owner: dict[str, tuple[str, str]] = {}  # identifier -> (kind, device) seen first
    names: set[str] = set()  # lower-case names of the devices kept so far
    for i, item in enumerate(r.items(node, "devices", single_ok=False)):
        where = f"devices[{i}]"
        m = r.mapping(item, where, DEVICE_FIELDS, required=("name", "person"))
        if m is None:
            continue
        name = r.text(m["name"], f"{where}.name") if "name" in m else None
        person = r.reference(m["person"], f"{where}.person", people, "people") \
            if "person" in m else None
        policy = r.choice(m["policy"], f"{where}.policy", POLICIES) \
            if "policy" in m else DEFAULT_POLICY
        if name and name.lower() in names:
            r.fail(m["name"], f"{where}.name", f"device {_shown(name)!r} is listed twice")
            name = None
        macs, ips, hosts = [], [], []
        for n, t, sub in r.texts(m["macs"], f"{where}.macs") if "macs" in m else []:
            mac = normalise_mac(t)
            if mac is None:
                r.fail(n, sub, f"{_shown(t)!r} is not a MAC address like 3c:22:fb:11:22:33")
            else:
                macs.append((n, mac))
        for n, t, sub in r.texts(m["ips"], f"{where}.ips") if "ips" in m else []:
            ip = _ip(t)
            if ip is None:
                r.fail(n, sub, f"{_shown(t)!r} is not an IP address like 192.168.1.23")
            else:
                ips.append((n, str(ip)))
        for n, t, sub in r.texts(m["hostnames"], f"{where}.hostnames") \
                if "hostnames" in m else []:
            host = _dns_name(t)
            if not all(_LABEL.match(x) for x in host.split(".")):
                r.fail(n, sub, f"{_shown(t)!r} is not a host name")
            else:
                hosts.append((n, host))
        if "macs" not in m and "ips" not in m and "hostnames" not in m:
            r.fail(item, where, "give at least one of macs, ips or hostnames, so netwatch can "
                   "tell which traffic is this device's")
        for kind, values in (("macs", macs), ("ips", ips), ("hostnames", hosts)):
            for n, v in values:
                first = owner.setdefault(f"{kind}:{v}", (kind, name or where))
                if first[1] != (name or where):
                    r.fail(n, f"{where}.{kind}",
                           f"{_shown(v)} is already device {_shown(first[1])!r}'s")
        if name:  # kept when other fields are wrong: see _read_people
            names.add(name.lower())
            devices.append(Device(name, person or "", [v for _, v in macs],
                                  [v for _, v in ips], [v for _, v in hosts],
                                  policy or DEFAULT_POLICY))
    return devices


def _read_leases(r: _Reader, node: Node | None) -> LeaseTable | None:
    if node is None:
        return None
    t = r.text(node, "dhcp_leases")
    if t is None:
        return None
    path = os.path.join(r.folder, os.path.expanduser(t))
    table = LeaseTable(path)
    if not table.readable:
        r.warn(node, "dhcp_leases", f"cannot read {path} yet: addresses from DHCP are unknown "
               "until it exists")
    elif table.bad_lines:
        lines = ", ".join(map(str, table.bad_lines[:5]))
        r.warn(node, "dhcp_leases", f"{path}: skipped what is not a lease ('<expiry> <mac> "
               f"<ip> <hostname> <client-id>') on line(s) {lines}")
    return table


def _read_windows(r: _Reader, node: Node | None, people: dict[str, Person],
                  devices: list[Device]) -> list[HelpWindow]:
    windows: list[HelpWindow] = []
    if node is None:
        return windows
    device_names = [d.name for d in devices]
    for i, item in enumerate(r.items(node, "help_windows", single_ok=False)):
        where = f"help_windows[{i}]"
        m = r.mapping(item, where, WINDOW_FIELDS, required=("name",))
        if m is None:
            continue
        name = r.text(m["name"], f"{where}.name") if "name" in m else None
        who = [p for n, _, sub in (r.texts(m["people"], f"{where}.people")
                                   if "people" in m else [])
               if (p := r.reference(n, sub, people, "people"))]
        which = [d for n, _, sub in (r.texts(m["devices"], f"{where}.devices")
                                     if "devices" in m else [])
                 if (d := r.reference(n, sub, device_names, "devices"))]
        tools = [x for n, _, sub in (r.texts(m["tools"], f"{where}.tools")
                                     if "tools" in m else [])
                 if (x := r.tool(n, sub))]
        calendar_keys = [k for k in ("ics", "ics_url") if k in m]
        weekly_keys = [k for k in ("days", "start", "end") if k in m]
        if len(calendar_keys) == 2:
            r.fail(m["ics_url"], f"{where}.ics_url", "give either ics or ics_url, not both")
            continue
        if calendar_keys:
            for k in weekly_keys:
                r.fail(m[k], f"{where}.{k}", f"not used with {calendar_keys[0]}: the calendar "
                       "says when")
            if name is None:
                continue
            w: HelpWindow | None = _read_calendar_window(r, m, where, calendar_keys[0], name)
        else:
            for k in ("days", "start", "end"):
                if k not in m:
                    r.fail(item, f"{where}.{k}", "missing (required): a help window needs "
                           "days, start and end, or an ics calendar")
            if len(weekly_keys) < 3 or name is None:
                continue
            w = _read_weekly_window(r, m, where, name)
        if w is not None:
            w.people, w.devices, w.tools = who, which, tools
            windows.append(w)
    return windows


def _read_weekly_window(r: _Reader, m: dict[str, Node], where: str, name: str
                        ) -> WeeklyWindow | None:
    days: set[int] = set()
    bad = False
    for n, t, sub in r.texts(m["days"], f"{where}.days"):
        low = t.lower()
        if low in DAY_GROUPS:
            days.update(DAY_GROUPS[low])
        elif low in DAYS:
            days.add(DAYS.index(low))
        elif low in FULL_DAYS:
            days.add(FULL_DAYS.index(low))
        else:
            bad = True
            r.fail(n, sub, f"{_shown(t)!r} is not a day: use mon, tue, wed, thu, fri, sat, "
                   "sun (or the full names, weekdays, weekend, every day)"
                   + _suggest(low, DAYS + FULL_DAYS))
    start = r.clock(m["start"], f"{where}.start")
    end = r.clock(m["end"], f"{where}.end", allow_24=True)
    if start is not None and end is not None and start == end and not _is_24(m["end"]):
        r.fail(m["end"], f"{where}.end", "is the same as start: the window would be empty "
               "(for a whole day write start \"00:00\" and end \"24:00\")")
        return None
    if not days and not bad:
        r.fail(m["days"], f"{where}.days", "list at least one day, like [sun]")
    if bad or not days or start is None or end is None:
        return None
    return WeeklyWindow(name=name, days=tuple(sorted(days)), start=start, end=end)


def _read_calendar_window(r: _Reader, m: dict[str, Node], where: str, kind: str, name: str
                          ) -> CalendarWindow | None:
    node = m[kind]
    value = r.text(node, f"{where}.{kind}")
    if value is None:
        return None
    if kind == "ics":
        source = os.path.join(r.folder, os.path.expanduser(value))
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as e:
            r.fail(node, f"{where}.ics", f"cannot read calendar file {source}: "
                   f"{e.strerror or e}")
            return None
        query, error = _parse_calendar(data)
        if error:
            r.fail(node, f"{where}.ics", f"{source} is not a usable iCalendar file: {error}")
            return None
        return CalendarWindow(name=name, source=source, query=query)
    if not value.lower().startswith(("http://", "https://", "webcal://")):
        r.fail(node, f"{where}.ics_url", "must be an http://, https:// or webcal:// address")
        return None
    source = calendar_cache_path(r.path, name)
    query = None
    if os.path.exists(source):
        try:
            with open(source, "rb") as f:
                query, error = _parse_calendar(f.read())
        except OSError as e:
            error = str(e.strerror or e)
        if error:
            r.warn(node, f"{where}.ics_url", f"the downloaded copy {source} is not usable "
                   f"({error}): run 'netwatch check-config --fetch' again")
    else:
        r.warn(node, f"{where}.ics_url", "not downloaded yet: run 'netwatch check-config "
               "--fetch FILE'; until then this window never opens")
    return CalendarWindow(name=name, source=source, url=value, query=query)


def _unfolded(data: bytes) -> Iterator[tuple[int, str]]:
    """The content lines of an iCalendar file with the line each starts on (RFC 5545
    3.1: a line beginning with a space or a tab continues the one before)."""
    start, parts = 0, list[str]()
    for n, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if raw[:1] in (" ", "\t") and parts:
            parts.append(raw[1:])
            continue
        if parts:
            yield start, "".join(parts)
        start, parts = n, [raw]
    if parts:
        yield start, "".join(parts)


def _rule_problem(value: str) -> str | None:
    """Why an event's RRULE (RFC 5545 3.3.10) cannot be meant for a help window, or None."""
    parts: dict[str, list[str]] = {}
    for item in value.split(";"):
        key, _, v = item.partition("=")
        parts[key.strip().upper()] = [x for x in v.split(",") if x.strip()]
    freq = (parts.get("FREQ") or [""])[0].strip().upper()
    if freq in ("SECONDLY", "MINUTELY"):
        every = "second" if freq == "SECONDLY" else "minute"
        return (f"FREQ={freq} starts the window again every {every}, which no help window "
                "means; use FREQ=DAILY or WEEKLY (with BYHOUR for the hours)")
    interval = (parts.get("INTERVAL") or ["1"])[0].strip()
    if not interval.isdigit() or int(interval) < 1:
        return f"INTERVAL must be 1 or more, not {shown(interval, QUOTE_MAX)}"
    hours = len(parts["BYHOUR"]) if "BYHOUR" in parts else \
        -(-24 // int(interval)) if freq == "HOURLY" else 1
    starts = hours * len(parts.get("BYMINUTE") or [0]) * len(parts.get("BYSECOND") or [0])
    if starts > MAX_STARTS_PER_DAY:
        return (f"the rule starts the window {starts} times a day; at most "
                f"{MAX_STARTS_PER_DAY} can be meant")
    return None


def _recurrence_problem(data: bytes) -> str | None:
    """The first event recurrence rule that cannot be meant, with its line in the file."""
    in_event = False
    for n, line in _unfolded(data):
        head = line[:16].upper()
        if head.startswith("BEGIN:VEVENT"):
            in_event = True
        elif head.startswith("END:VEVENT"):
            in_event = False
        elif in_event and head.startswith(("RRULE", "EXRULE")):
            problem = _rule_problem(line.partition(":")[2])
            if problem:
                return f"line {n}: {problem}"
    return None


def _parse_calendar(data: bytes) -> tuple[Any, str | None]:
    """The expanded-occurrence query of an iCalendar file, or why there is none. Building
    the series parses every event's dates and rules, so a broken one shows up here; rules
    that cannot be meant are refused before anything is expanded."""
    problem = _recurrence_problem(data)
    if problem:
        return None, problem
    try:
        # Only calendar windows need these two; a router build may leave them out.
        import icalendar
        import recurring_ical_events
    except ImportError as e:
        return None, (f"calendar windows need the Python package {e.name!r}, which is not "
                      "installed (a router build may leave it out: use weekly windows)")
    try:
        cal = icalendar.Calendar.from_ical(data)
        query = recurring_ical_events.of(cal)
        _ = query.series  # builds (and so checks) every event's series
    except Exception as e:  # icalendar and recurring-ical-events raise many kinds
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, first
    if not any(True for _ in cal.walk("VEVENT")):
        return None, "it has no events (VEVENT)"
    return query, None


def _read_sessions(r: _Reader, node: Node) -> dict[str, float]:
    """Optional thresholds of the session tracker: positive numbers."""
    m = r.mapping(node, "sessions", tuple(SESSION_FIELDS), required=(),
                  example="'active_bytes_per_s: 2000'")
    out: dict[str, float] = {}
    for key, value_node in (m or {}).items():
        where = f"sessions.{key}"
        text = r.text(value_node, where)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            r.fail(value_node, where, f"{_shown(text)!r} is not a number of {SESSION_FIELDS[key]}")
            continue
        if not 0 < value < math.inf:  # nan compares false: refused with the rest
            r.fail(value_node, where, f"must be a number more than 0, not {_shown(text)}")
            continue
        out[key] = value
    return out


def _read_quiet(r: _Reader, node: Node) -> QuietHours | None:
    m = r.mapping(node, "quiet_hours", QUIET_FIELDS, required=QUIET_FIELDS,
                  example="'start: \"22:00\"' and 'end: \"07:00\"'")
    if m is None or len(m) < 2:
        return None
    start = r.clock(m["start"], "quiet_hours.start")
    end = r.clock(m["end"], "quiet_hours.end", allow_24=True)
    if start is None or end is None:
        return None
    if start == end:
        r.fail(m["end"], "quiet_hours.end", "is the same as start")
        return None
    return QuietHours(start, end)


def _read_trusted(r: _Reader, node: Node | None, devices: list[Device]) -> list[TrustRule]:
    rules: list[TrustRule] = []
    if node is None:
        return rules
    device_names = [d.name for d in devices]
    for i, item in enumerate(r.items(node, "trusted", single_ok=False)):
        where = f"trusted[{i}]"
        m = r.mapping(item, where, TRUST_FIELDS)
        if m is None:
            continue
        if not ({"tool", "peer", "peer_name"} & m.keys()):
            r.fail(item, where, "give a tool, a peer or a peer_name: a rule without one would "
                   "trust every connection (use a device's policy: observe for that)")
            continue
        ok = True
        tool = device = peer = peer_name = None
        network = None
        if "tool" in m:
            tool = r.tool(m["tool"], f"{where}.tool")
            ok = ok and tool is not None
        if "device" in m:
            device = r.reference(m["device"], f"{where}.device", device_names, "devices")
            ok = ok and device is not None
        if "peer" in m:
            peer = r.text(m["peer"], f"{where}.peer")
            try:
                network = ipaddress.ip_network(peer or "", strict=False)
            except ValueError:
                r.fail(m["peer"], f"{where}.peer", f"{_shown(peer or '')!r} is not an IP "
                       "address or network like 203.0.113.5 or 203.0.113.0/24")
                ok = False
        if "peer_name" in m:
            t = r.text(m["peer_name"], f"{where}.peer_name")
            peer_name = _dns_name(t) if t else None
            if peer_name is None or not all(_LABEL.match(x) for x in peer_name.split(".")):
                r.fail(m["peer_name"], f"{where}.peer_name", f"{_shown(t or '')!r} is not a "
                       "host name like office.example.org")
                ok = False
        note = (r.text(m["note"], f"{where}.note") or "") if "note" in m else ""
        if ok:
            rules.append(TrustRule(tool, device, peer, peer_name, note, network))
    return rules


def _read_never_block(r: _Reader, node: Node | None, devices: list[Device]
                      ) -> list[NeverBlock]:
    """``never_block``: addresses or networks (``192.168.1.5``, ``203.0.113.0/24``), or
    ``{peer: ..., note: ...}`` / ``{device: ..., note: ...}`` entries."""
    out: list[NeverBlock] = []
    if node is None:
        return out
    names = [d.name for d in devices]
    for i, item in enumerate(r.items(node, "never_block")):
        where = f"never_block[{i}]" if isinstance(node, yaml.SequenceNode) else "never_block"
        if isinstance(item, yaml.ScalarNode):
            peer_node, m = item, {}
        else:
            got = r.mapping(item, where, NEVER_BLOCK_FIELDS)
            if got is None:
                continue
            m = got
            if ("peer" in m) == ("device" in m):
                r.fail(item, where, "give either a peer (an address or network) or a device")
                continue
            peer_node = m.get("peer")
        note = (r.text(m["note"], f"{where}.note") or "") if "note" in m else ""
        if peer_node is None:
            dev = r.reference(m["device"], f"{where}.device", names, "devices")
            if dev is not None:
                out.append(NeverBlock(device=dev, note=note))
            continue
        sub = f"{where}.peer" if "peer" in m else where
        t = r.text(peer_node, sub)
        if t is None:
            continue
        try:
            out.append(NeverBlock(network=ipaddress.ip_network(t, strict=False), note=note))
        except ValueError:
            r.fail(peer_node, sub, f"{_shown(t)!r} is not an IP address or network like "
                   "192.168.1.5 or 203.0.113.0/24")
    return out


def _read_banking(r: _Reader, node: Node | None, people: dict[str, Person]
                  ) -> tuple[list[str], dict[str, str]]:
    lists = load_banking_lists()
    bundled = [c for c in COUNTRIES if c in lists]
    countries = sorted({p.country for p in people.values() if p.country},
                       key=COUNTRIES.index) or bundled
    extra: list[str] = []
    if node is not None:
        m = r.mapping(node, "banking", BANKING_FIELDS, example="'countries: [be]'")
        if m is not None and "countries" in m:
            chosen = [c for n, _, sub in r.texts(m["countries"], "banking.countries")
                      if (c := r.choice(n, sub, bundled))]
            countries = list(dict.fromkeys(chosen))
        if m is not None and "extra" in m:
            for n, t, sub in r.texts(m["extra"], "banking.extra"):
                d = _dns_name(t)
                labels = d.split(".")
                if len(labels) < 2 or not all(_LABEL.match(x) for x in labels):
                    r.fail(n, sub, f"{_shown(t)!r} is not a domain like mybank.example")
                else:
                    extra.append(d)
    domains: dict[str, str] = {}
    for cc in [*countries, PAYMENTS]:
        for d in lists.get(cc, []):
            domains.setdefault(d, cc)
    for d in extra:
        domains.setdefault(d, EXTRA)
    return countries, domains


# --- calendars from the network (check-config --fetch only) -------------------------------


def calendar_urls(path: str) -> list[tuple[str, str]]:
    """The (window name, ics_url) pairs of a household file, read leniently: the full check
    comes after the download."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    windows = data.get("help_windows") if isinstance(data, dict) else None
    out = []
    for w in windows if isinstance(windows, list) else []:
        if isinstance(w, dict) and isinstance(w.get("name"), str) and \
                isinstance(w.get("ics_url"), str):
            out.append((w["name"], w["ics_url"]))
    return out


Opener = Callable[..., Any]


def fetch_calendars(path: str, timeout: float = FETCH_TIMEOUT_S,
                    opener: Opener = urllib.request.urlopen) -> list[tuple[bool, str]]:
    """Download each ``ics_url`` window's calendar into its cache file beside ``path``.
    Returns (ok, message) per calendar; a download that is not a usable calendar leaves the
    old cache in place. The URL is shown masked: calendar links often hold a secret."""
    out: list[tuple[bool, str]] = []
    for name, url in calendar_urls(path):
        shown = mask_url(url)
        real = "https://" + url[len("webcal://"):] if url.lower().startswith("webcal://") \
            else url
        if not real.lower().startswith(("http://", "https://")):
            out.append((False, f"{name}: {shown}: only http, https and webcal are fetched"))
            continue
        target = calendar_cache_path(path, name)
        try:
            with opener(real, timeout=timeout) as resp:
                data = resp.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            why = getattr(e, "reason", None) or e
            out.append((False, f"{name}: cannot download {shown}: {why}"))
            continue
        _, error = _parse_calendar(data)
        if error:
            out.append((False, f"{name}: {shown} is not a usable calendar ({error}); "
                        "kept the previous copy"))
            continue
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".fetch-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        out.append((True, f"{name}: saved {shown} to {target}"))
    return out


# --- the summary check-config prints -------------------------------------------------------


def _when(dt: datetime) -> str:
    return dt.strftime("%a %Y-%m-%d %H:%M %Z")


def _span(hit: WindowHit) -> str:
    s, e = hit.start, hit.end
    end = e.strftime("%H:%M") if e.date() == s.date() else e.strftime("%a %Y-%m-%d %H:%M")
    zone = s.strftime("%Z") if s.utcoffset() == e.utcoffset() else \
        f"{s.strftime('%Z')}/{e.strftime('%Z')}"
    return f"{s.strftime('%a %Y-%m-%d %H:%M')} - {end} {zone}"


def _window_rule(w: HelpWindow) -> str:
    if isinstance(w, WeeklyWindow):
        days = ",".join(DAYS[d] for d in w.days)
        end = "24:00" if w.end == time(0) else w.end.strftime("%H:%M")
        what = f"{days} {w.start.strftime('%H:%M')}-{end}"
        if w.crosses_midnight and w.end != time(0):
            what += " (next day)"
    elif isinstance(w, CalendarWindow):
        what = f"calendar {w.masked_url}" if w.url else f"calendar {w.source}"
        if w.query is None:
            what += " (not downloaded yet)"
    else:
        what = type(w).__name__
    who = ", ".join(w.people + w.devices) or "everyone"
    tools = ", ".join(w.tools) or "any tool"
    return f"{w.name}: {what}; for {who}; {tools}"


def _rule_text(t: TrustRule) -> str:
    parts = [t.tool or "any tool"]
    parts.append(f"on {t.device}" if t.device else "on any device")
    peers = [p for p in (t.peer, t.peer_name) if p]
    parts.append(f"with {' / '.join(peers)}" if peers else "with any peer")
    text = " ".join(parts)
    return f"{text} ({t.note})" if t.note else text


def describe(h: Household, now: datetime, count: int = 5) -> str:
    """The readable summary of ``netwatch check-config``; URLs masked."""
    lines = [f"{h.path}: OK, time zone {h.tz.key}"]
    lines.append(f"people ({len(h.people)}):")
    for p in h.people.values():
        country = f", country {p.country}" if p.country else ""
        lines.append(f"  {p.name}: language {p.language}{country}")
    lines.append(f"carers ({len(h.carers)}):")
    for c in h.carers:
        lines.append(f"  {c.name}: language {c.language}, looks after "
                     f"{', '.join(c.for_people) or 'nobody'}")
        for u in c.masked_notify or ["(no notify address)"]:
            lines.append(f"    notify {u}")
    lines.append(f"devices ({len(h.devices)}):")
    for d in h.devices:
        ids = [f"MAC {m}" for m in d.macs] + [f"IP {i}" for i in d.ips] + \
            [f"host {x}" for x in d.hostnames]
        lines.append(f"  {d.name} ({d.person}'s): policy {d.policy}; {', '.join(ids)}")
    if h.dhcp_leases:
        lines.append(f"dhcp leases: {h.dhcp_leases}")
    lines.append(f"trusted ({len(h.trusted)}):")
    lines += [f"  {_rule_text(t)}" for t in h.trusted]
    if h.never_block:
        lines.append(f"never blocked ({len(h.never_block)}):")
        lines += [f"  {n.device or n.network}" + (f" ({n.note})" if n.note else "")
                  for n in h.never_block]
    lines.append("quiet hours: " + (
        f"{h.quiet.start.strftime('%H:%M')}-{h.quiet.end.strftime('%H:%M')}" if h.quiet
        else "none"))
    if h.sessions:
        lines.append("session thresholds: " + ", ".join(
            f"{k} {v:g}" for k, v in h.sessions.items()))
    by_list: dict[str, int] = {}
    for cc in h.banking_domains.values():
        by_list[cc] = by_list.get(cc, 0) + 1
    lists = ", ".join(f"{cc} ({n})" for cc, n in by_list.items())
    lines.append(f"banking: countries {', '.join(h.banking_countries) or 'none'}; "
                 f"{len(h.banking_domains)} domains: {lists}")
    lines.append(f"help windows ({len(h.windows)}):")
    lines += [f"  {_window_rule(w)}" for w in h.windows]
    local_now = now.astimezone(h.tz)
    hits = h.next_windows(now, count)
    lines.append(f"next help windows from {_when(local_now)}:")
    if not hits:
        lines.append("  none in the next year")
    for hit in hits:
        title = f"{hit.name} ({hit.summary})" if hit.summary and hit.summary != hit.name \
            else hit.name
        now_open = " [open now]" if hit.contains(now) else ""
        lines.append(f"  {_span(hit)}  {title}{now_open}")
    return "\n".join(lines) + "\n"


__all__ = [
    "Carer", "CalendarWindow", "Device", "HelpWindow", "Household", "HouseholdError",
    "HouseholdUnreadable", "Lease", "LeaseTable", "NeverBlock", "Person", "QuietHours", "TrustRule",
    "WeeklyWindow", "WindowHit", "calendar_cache_path", "describe", "fetch_calendars",
    "load_banking_lists", "load_household", "mask_url", "normalise_mac", "system_timezone",
]
