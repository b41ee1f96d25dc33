"""Signature files: one TOML file per tool in ``signatures/``, validated at load.

A signature holds facts that change (names, certificate subjects, ALPN prefixes, byte
patterns, vendor networks, ports as hints); protocol logic stays in the recognisers. Every
validation error names the file, the line and the field, the way a compiler would, so a
user editing a file sees at once what is wrong.
"""

from __future__ import annotations

import binascii
import contextlib
import ipaddress
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .addresses import Prefixes, in_prefixes, prefixes

ROLES = ("session", "relay", "rendezvous", "download", "dns", "scan", "unknown", "web")
# Roles a name may have that make a detection. "web" marks a vendor's own website or API: it
# is listed so users can see it, but visiting it is not remote access.
DETECTING_ROLES = ("session", "relay", "rendezvous", "download", "unknown")
NAME_EVIDENCE = ("dns", "sni", "certificate", "http_host")
PREVALENCE = ("high", "medium", "low", "unknown")
CONFIDENCES = ("high", "medium", "low")
CURATION = ("curated", "generated")
# A name whose first label says "download" under a tool's own zone is taken as its download
# host (download.example-vendor.com), with medium confidence: vendors host installers there.
DOWNLOAD_LABELS = ("download", "downloads", "dl")
# What an installer looks like at the end of an HTTP path.
INSTALLER_SUFFIXES = (".exe", ".msi", ".dmg", ".pkg", ".apk", ".deb", ".rpm", ".appimage",
                      ".msix", ".run")
PROTOS = ("tcp", "udp")
TOOL_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")



def _default_dir() -> str:
    """The source tree's ``signatures/``, else the copy a wheel installs under share/."""
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "signatures")
    if os.path.isdir(here):
        return here
    return os.path.join(sys.prefix, "share", "netwatch", "signatures")


DEFAULT_DIR = _default_dir()


class SignatureError(Exception):
    """One or more problems in signature files; ``problems`` lists them one per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(slots=True)
class NameRule:
    """A name pattern of a tool (``[[names]]``): what a matching name is, seen as which
    evidence."""

    tool: str
    pattern: str
    regex: Glob | re.Pattern[str]  # .match(lower-case name)
    role: str
    evidence: tuple[str, ...]
    note: str = ""
    confidence: str = "high"
    shared_with: tuple[str, ...] = ()
    generated: bool = False


@dataclass(slots=True)
class NameMatch:
    """A name matched for one kind of evidence: the rule, what it makes of the name, and the
    other tools whose rules claim the same name (shared infrastructure)."""

    rule: NameRule
    role: str
    confidence: str
    why: str
    others: tuple[str, ...] = ()

    @property
    def tool(self) -> str:
        return self.rule.tool

    @property
    def pattern(self) -> str:
        return self.rule.pattern

    def detail(self) -> str:
        parts = [f"pattern {self.rule.pattern}"]
        if self.why:
            parts.append(self.why)
        if self.rule.shared_with:
            parts.append("shared with " + ", ".join(self.rule.shared_with))
        if self.others:
            parts.append("also claimed by " + ", ".join(self.others))
        if self.rule.generated:
            parts.append("generated low-curation signature")
        return "; ".join(parts)


@dataclass(slots=True)
class DownloadRule:
    """A tool's download host (``[[downloads]]``) and the installer paths it serves."""

    tool: str
    host: str
    regex: Glob | re.Pattern[str]
    paths: tuple[str, ...]  # glob patterns; empty = any path (a dedicated download host)
    path_regexes: tuple[re.Pattern[str], ...]


@dataclass(slots=True)
class CertRule:
    """A certificate subject attribute (CN or O) that names a tool (``[[certificates]]``)."""

    tool: str
    attribute: str  # "CN" or "O"
    value: str
    role: str


@dataclass(slots=True)
class PayloadRule:
    """The bytes a tool's own protocol opens with (``[[payloads]]``)."""

    tool: str
    proto: str
    offset: int
    prefixes: tuple[bytes, ...]
    min_packets: int
    min_packets_on_hinted_port: int
    role: str
    description: str


@dataclass(slots=True)
class NetworkRule:
    """A tool's own networks (``[[networks]]``), which count only with the payload shape
    ``requires`` names."""

    tool: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    role: str
    requires: str  # the payload shape that must come with the address: "tls-records"
    source: str
    prefixes: Prefixes = field(init=False)  # the networks for raw-address checks

    def __post_init__(self) -> None:
        self.prefixes = prefixes(self.networks)


@dataclass(slots=True)
class PortHint:
    """A tool's ports (``[[ports]]``): support for other evidence, at most a ``scan``."""

    proto: str
    ports: tuple[int, ...]
    scan: bool
    note: str
    role: str = ""  # the role a connection to this port has once the tool is known


@dataclass(slots=True)
class Signature:
    """One tool's signature file, validated."""

    tool: str
    name: str
    vendor: str
    version: int
    path: str
    scam_prevalence: str
    recognisers: tuple[str, ...]
    sources: dict[str, str]
    ports: list[PortHint] = field(default_factory=list)
    names: list[NameRule] = field(default_factory=list)
    certificates: list[CertRule] = field(default_factory=list)
    alpn_prefixes: list[tuple[str, str]] = field(default_factory=list)  # (prefix, role)
    payloads: list[PayloadRule] = field(default_factory=list)
    networks: list[NetworkRule] = field(default_factory=list)
    downloads: list[DownloadRule] = field(default_factory=list)
    curation: str = "curated"
    aliases: tuple[str, ...] = ()
    category: str = ""
    notes: str = ""
    # A tool that looks like another on the wire (Windows Remote Assistance is RDP): netwatch
    # reports the other tool's id and, when something tells them apart, names this one as the
    # variant (RFB security types a server offers).
    reported_as: str = ""
    rfb_security_types: tuple[int, ...] = ()

    @property
    def ref(self) -> str:
        return f"{os.path.basename(self.path)}@{self.version}"

    def evidence_kinds(self) -> list[str]:
        kinds: list[str] = []
        if self.recognisers or self.rfb_security_types:
            kinds.append("handshake")
        if self.downloads or self.names:
            kinds.append("http_host")  # installer requests on the tool's hosts
        for n in self.names:  # web names too: a download host under them is found by name
            for e in n.evidence:
                if e not in kinds:
                    kinds.append(e)
        if self.certificates and "certificate" not in kinds:
            kinds.append("certificate")
        if self.alpn_prefixes:
            kinds.append("alpn")
        if self.payloads:
            kinds.append("payload")
        if self.networks:
            kinds.append("address")
        return kinds

    def roles(self) -> list[str]:
        roles: set[str] = set()
        for group in (self.names, self.certificates, self.payloads, self.networks):
            for r in group:
                if r.role in DETECTING_ROLES:
                    roles.add(r.role)
        for _p, role in self.alpn_prefixes:
            roles.add(role)
        if self.recognisers:
            roles.add("session")
        for p in self.ports:
            if p.role:
                roles.add(p.role)
        if self.downloads or self.names:
            roles.add("download")  # installers from download hosts or on the tool's hosts
        if self.reported_as:
            roles.add("session")
        if any(p.scan for p in self.ports):
            roles.add("scan")
        if any(n.evidence == ("dns",) or "dns" in n.evidence for n in self.names
               if n.role in DETECTING_ROLES):
            roles.add("dns")
        return [r for r in ROLES if r in roles]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A name pattern as a regex: ``re:`` prefix for a regex, else a glob where ``*`` spans
    any characters (so ``*.net.anydesk.com`` covers every name under that zone)."""
    if pattern.startswith("re:"):
        return re.compile("^(?:" + pattern[3:] + ")$", re.IGNORECASE)
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$",
                      re.IGNORECASE)


def _zone_of_pattern(pattern: str) -> str | None:
    """The last two labels every name matching a glob pattern ends with, when fixed."""
    if pattern.startswith("re:"):
        return None
    tail = pattern.rsplit("*", 1)[-1]
    labels = tail.split(".")
    if "*" in pattern:
        labels = labels[1:]  # the label the star is in is not fixed
    if len(labels) < 2 or "" in labels[-2:]:
        return None
    return ".".join(labels[-2:]).lower()


class Glob:
    """A name pattern that matches like its regex (``pattern_regex``) without compiling one
    unless it has to: exact names and ``*.zone`` suffixes, most of the rules, are string
    comparisons, which keeps loading hundreds of signatures quick. Names are compared in
    lower case; callers pass lower-case names."""

    __slots__ = ("pattern", "exact", "suffix", "_rx")

    def __init__(self, pattern: str):
        self.pattern = pattern
        low = pattern.lower()
        self.exact = low if "*" not in low else None
        self.suffix = low[1:] if low.startswith("*.") and "*" not in low[1:] else None
        self._rx: re.Pattern[str] | None = None

    def match(self, name: str) -> bool:
        if self.exact is not None:
            return name == self.exact
        if self.suffix is not None:
            return name.endswith(self.suffix)
        if self._rx is None:
            self._rx = pattern_regex(self.pattern)
        return self._rx.match(name) is not None


def name_matcher(pattern: str) -> Glob | re.Pattern[str]:
    """What matches names for a pattern: a compiled regex for ``re:``, else a Glob."""
    return pattern_regex(pattern) if pattern.startswith("re:") else Glob(pattern)


class _Checker:
    """Collects problems with their line numbers while a file is validated."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[str] = []

    def line_of(self, table: str | None, index: int, key: str | None) -> int:
        """Line of ``key`` in the ``index``-th ``[[table]]`` (or top level when None)."""
        start, end = 0, len(self.lines)
        if table is not None:
            header = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]")
            seen = -1
            for i, ln in enumerate(self.lines):
                if header.match(ln):
                    seen += 1
                    if seen == index:
                        start = i
                        break
            else:
                return 1
            for j in range(start + 1, len(self.lines)):
                if re.match(r"^\s*\[", self.lines[j]):
                    end = j
                    break
        else:
            for j, ln in enumerate(self.lines):
                if re.match(r"^\s*\[", ln):
                    end = j
                    break
        if key is None:
            return start + 1
        kre = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start, end):
            if kre.match(self.lines[i]):
                return i + 1
        return start + 1

    def fail(self, table: str | None, index: int, key: str | None, msg: str) -> None:
        where = f"{table}[{index}]." if table is not None else ""
        line = self.line_of(table, index, key)
        self.problems.append(f"{self.path}:{line}: {where}{key or ''}: {msg}")


def _get(ck: _Checker, d: dict[str, Any], table: str | None, i: int, key: str, typ: Any,
         default: Any = ..., choices: Iterable[str] | None = None) -> Any:
    if key not in d:
        if default is ...:
            ck.fail(table, i, key, "missing (required)")
            return None
        return default
    v = d[key]
    if typ is int and isinstance(v, bool):
        ck.fail(table, i, key, "must be an integer")
        return None
    if not isinstance(v, typ):
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        ck.fail(table, i, key, f"must be {tname}, got {type(v).__name__}")
        return None
    if choices is not None and v not in choices:
        ck.fail(table, i, key, f"{v!r} is not one of {', '.join(choices)}")
        return None
    return v


TOP_KEYS = {"id", "name", "vendor", "version", "scam_prevalence", "recognisers", "sources",
            "ports", "names", "certificates", "alpn", "payloads", "networks",
            "downloads", "notes", "curation", "aliases", "category", "reported_as",
            "rfb_security_types"}
TABLE_KEYS = {
    "ports": {"proto", "ports", "scan", "note", "role", "source"},
    "names": {"pattern", "role", "evidence", "note", "source", "confidence", "shared_with"},
    "downloads": {"host", "paths", "source", "note"},
    "certificates": {"attribute", "value", "role", "source"},
    "alpn": {"prefix", "role", "source"},
    "payloads": {"proto", "offset", "prefixes", "min_packets", "min_packets_on_hinted_port",
                 "role", "description", "source"},
    "networks": {"cidrs", "role", "requires", "source"},
}


def read_document(path: str) -> tuple[str, dict[str, Any]]:
    """A signature file's text and its parsed TOML; SignatureError if it has neither."""
    import tomllib  # not needed when every document comes from the cache
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SignatureError([f"{path}:1: cannot read: {e}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise SignatureError([f"{path}:{m.group(1) if m else 1}: TOML syntax: {e}"]) from None


def load_file(path: str, known_recognisers: Iterable[str] = (),
              doc: dict[str, Any] | None = None) -> Signature:
    """Load and validate one signature file; raise SignatureError listing every problem.
    ``doc`` is the file's document already parsed (from the cache of ``load_dir``): a
    problem found in it is reported from the file itself, with its line numbers."""
    if doc is not None:
        try:
            return _validated(path, "", doc, known_recognisers)
        except SignatureError:
            pass  # reported from the file itself below, with line numbers
    text, parsed = read_document(path)
    return _validated(path, text, parsed, known_recognisers)


def _validated(path: str, text: str, doc: dict[str, Any],
               known_recognisers: Iterable[str]) -> Signature:
    ck = _Checker(path, text)
    for k in doc:
        if k not in TOP_KEYS:
            ck.fail(None, 0, k, "unknown field")
    tool = _get(ck, doc, None, 0, "id", str)
    if tool is not None and not TOOL_ID.match(tool):
        ck.fail(None, 0, "id", "must be lowercase letters, digits and hyphens")
    if tool is not None and os.path.splitext(os.path.basename(path))[0] != tool:
        ck.fail(None, 0, "id", f"{tool!r} must equal the file name")
    sig = Signature(
        tool=tool or "?",
        name=_get(ck, doc, None, 0, "name", str) or "?",
        vendor=_get(ck, doc, None, 0, "vendor", str, "") or "",
        version=_get(ck, doc, None, 0, "version", int) or 0,
        path=path,
        scam_prevalence=_get(ck, doc, None, 0, "scam_prevalence", str, "unknown",
                             PREVALENCE) or "unknown",
        recognisers=tuple(_get(ck, doc, None, 0, "recognisers", list, []) or []),
        sources={},
        curation=_get(ck, doc, None, 0, "curation", str, "curated", CURATION) or "curated",
        aliases=tuple(str(a) for a in _get(ck, doc, None, 0, "aliases", list, []) or []),
        category=_get(ck, doc, None, 0, "category", str, "") or "",
        notes=_get(ck, doc, None, 0, "notes", str, "") or "",
        reported_as=_get(ck, doc, None, 0, "reported_as", str, "") or "",
        rfb_security_types=tuple(_get(ck, doc, None, 0, "rfb_security_types", list, [])
                                 or []),
    )
    if not all(isinstance(x, int) and 0 <= x < 256 for x in sig.rfb_security_types):
        ck.fail(None, 0, "rfb_security_types", "must be a list of numbers 0-255")
    known = set(known_recognisers)
    for r in sig.recognisers:
        if known and r not in known:
            ck.fail(None, 0, "recognisers", f"no recogniser named {r!r} "
                    f"(known: {', '.join(sorted(known))})")
    sources = _get(ck, doc, None, 0, "sources", dict, {}) or {}
    sig.sources = {str(k): str(v) for k, v in sources.items()}

    def tables(name: str) -> list[tuple[int, dict[str, Any]]]:
        v = doc.get(name, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            ck.fail(None, 0, name, f"must be an array of tables ([[{name}]])")
            return []
        out = []
        for i, t in enumerate(v):
            for k in t:
                if k not in TABLE_KEYS[name]:
                    ck.fail(name, i, k, "unknown field")
            src = t.get("source")
            if src is not None and str(src) not in sig.sources:
                ck.fail(name, i, "source", f"{src!r} is not a key of [sources]")
            out.append((i, t))
        return out

    for i, t in tables("ports"):
        proto = _get(ck, t, "ports", i, "proto", str, choices=PROTOS)
        ports = _get(ck, t, "ports", i, "ports", list)
        if ports is not None and not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
            ck.fail("ports", i, "ports", "must be a list of port numbers 1-65535")
            ports = None
        scan = _get(ck, t, "ports", i, "scan", bool, False)
        prole = _get(ck, t, "ports", i, "role", str, "", ("",) + DETECTING_ROLES)
        if proto and ports:
            sig.ports.append(PortHint(proto, tuple(ports), bool(scan),
                                      str(t.get("note", "")), prole or ""))
    for i, t in tables("names"):
        pat = _get(ck, t, "names", i, "pattern", str)
        role = _get(ck, t, "names", i, "role", str, choices=ROLES)
        ev = _get(ck, t, "names", i, "evidence", list, ["dns", "sni"])
        if ev is not None and not all(e in NAME_EVIDENCE for e in ev):
            ck.fail("names", i, "evidence", f"each must be one of {', '.join(NAME_EVIDENCE)}")
            ev = None
        default_conf = "low" if role == "unknown" else "high"
        conf = _get(ck, t, "names", i, "confidence", str, default_conf, CONFIDENCES)
        shared = _get(ck, t, "names", i, "shared_with", list, []) or []
        if pat:
            try:
                rx = name_matcher(pat)
            except re.error as e:
                ck.fail("names", i, "pattern", f"bad regular expression: {e}")
                rx = None
            if rx is not None and role and ev and conf:
                if shared and conf == "high":
                    conf = "medium"  # a shared name never identifies one tool for sure
                sig.names.append(NameRule(sig.tool, pat, rx, role, tuple(ev),
                                          str(t.get("note", "")), conf,
                                          tuple(str(x) for x in shared),
                                          sig.curation == "generated"))
    for i, t in tables("certificates"):
        attr = _get(ck, t, "certificates", i, "attribute", str, choices=("CN", "O", "SAN"))
        val = _get(ck, t, "certificates", i, "value", str)
        role = _get(ck, t, "certificates", i, "role", str, choices=ROLES)
        if attr and val and role:
            sig.certificates.append(CertRule(sig.tool, attr, val, role))
    for i, t in tables("alpn"):
        pre = _get(ck, t, "alpn", i, "prefix", str)
        role = _get(ck, t, "alpn", i, "role", str, choices=ROLES)
        if pre and role:
            sig.alpn_prefixes.append((pre, role))
    for i, t in tables("payloads"):
        proto = _get(ck, t, "payloads", i, "proto", str, choices=PROTOS)
        off = _get(ck, t, "payloads", i, "offset", int)
        pres = _get(ck, t, "payloads", i, "prefixes", list)
        bpres: list[bytes] = []
        for p in pres or []:
            try:
                bpres.append(bytes.fromhex(p))
            except (TypeError, ValueError):
                ck.fail("payloads", i, "prefixes", f"{p!r} is not hex bytes")
        mp = _get(ck, t, "payloads", i, "min_packets", int, 1)
        mph = _get(ck, t, "payloads", i, "min_packets_on_hinted_port", int, mp)
        role = _get(ck, t, "payloads", i, "role", str, choices=ROLES)
        desc = _get(ck, t, "payloads", i, "description", str, "")
        if off is not None and off < 0:
            ck.fail("payloads", i, "offset", "must be >= 0")
        if proto and off is not None and off >= 0 and bpres and mp and role:
            sig.payloads.append(PayloadRule(sig.tool, proto, off, tuple(bpres), mp,
                                            mph or mp, role, desc or ""))
    for i, t in tables("networks"):
        cidrs = _get(ck, t, "networks", i, "cidrs", list)
        role = _get(ck, t, "networks", i, "role", str, choices=ROLES)
        req = _get(ck, t, "networks", i, "requires", str, choices=("tls-records",))
        nets = []
        for c in cidrs or []:
            try:
                nets.append(ipaddress.ip_network(c, strict=False))
            except (TypeError, ValueError):
                ck.fail("networks", i, "cidrs", f"{c!r} is not an address or network")
        if nets and role and req:
            sig.networks.append(NetworkRule(sig.tool, tuple(nets), role, req,
                                            str(t.get("source", ""))))
    for i, t in tables("downloads"):
        host = _get(ck, t, "downloads", i, "host", str)
        paths = _get(ck, t, "downloads", i, "paths", list, []) or []
        if not all(isinstance(x, str) and x.startswith("/") for x in paths):
            ck.fail("downloads", i, "paths", "each must be a path starting with /")
            paths = []
        if host:
            try:
                rx = name_matcher(host)
            except re.error as e:
                ck.fail("downloads", i, "host", f"bad regular expression: {e}")
                continue
            sig.downloads.append(DownloadRule(
                sig.tool, host, rx, tuple(paths),
                tuple(pattern_regex(x) for x in paths)))
    if ck.problems:
        raise SignatureError(ck.problems)
    return sig


class SignatureSet:
    """All loaded signatures, with the lookups the recognisers need. Curated signatures come
    before generated ones, so where both know a name the curated rule answers."""

    def __init__(self, sigs: list[Signature]):
        sigs = sorted(sigs, key=lambda s: s.curation != "curated")
        self.by_tool = {s.tool: s for s in sigs}
        self.names = [n for s in sigs for n in s.names]
        self.certificates = [c for s in sigs for c in s.certificates]
        self.alpn = [(p, r, s.tool) for s in sigs for p, r in s.alpn_prefixes]
        self.payloads = [p for s in sigs for p in s.payloads]
        self.networks = [n for s in sigs for n in s.networks]
        self.downloads = [d for s in sigs for d in s.downloads]
        self.scan_ports: dict[tuple[int, int], str] = {}
        self.hinted_ports: dict[tuple[str, int], set[str]] = {}
        self.port_roles: dict[tuple[str, int, int], str] = {}
        for s in sigs:
            for h in s.ports:
                pnum = 6 if h.proto == "tcp" else 17
                for p in h.ports:
                    self.hinted_ports.setdefault((s.tool, pnum), set()).add(str(p))
                    if h.scan:
                        self.scan_ports.setdefault((pnum, p), s.tool)
                    if h.role:
                        self.port_roles[(s.tool, pnum, p)] = h.role
        self._name_cache: dict[tuple[str, str], NameMatch | None] = {}
        # Name rules indexed by the last two labels of their fixed tail, so a lookup tries
        # only the rules that could match; rules without such a tail are always tried.
        self._by_zone: dict[str, list[tuple[int, NameRule]]] = {}
        self._anywhere: list[tuple[int, NameRule]] = []
        for i, r in enumerate(self.names):
            zone = _zone_of_pattern(r.pattern)
            if zone is None:
                self._anywhere.append((i, r))
            else:
                self._by_zone.setdefault(zone, []).append((i, r))

    def __len__(self) -> int:
        return len(self.by_tool)

    def ref(self, tool: str) -> str:
        s = self.by_tool.get(tool)
        return s.ref if s else f"{tool}.toml@0"

    def port_hinted(self, tool: str, proto: int, port: int) -> bool:
        return str(port) in self.hinted_ports.get((tool, proto), ())

    def port_role(self, tool: str, proto: int, port: int) -> str:
        """The role the tool's signature gives its own port ("" when none)."""
        return self.port_roles.get((tool, proto, port), "")

    def role_on_port(self, m: NameMatch, proto: int, port: int) -> str:
        """A server role from a name, refined by the tool's own port roles (RustDesk's relay
        and ID server share one name but not one port)."""
        if m.role in ("relay", "rendezvous", "unknown"):
            return self.port_role(m.tool, proto, port) or m.role
        return m.role

    def match_name(self, name: str, evidence: str) -> NameMatch | None:
        """What the signatures make of ``name`` seen as ``evidence`` (dns, sni, http_host).

        The first detecting rule wins (curated before generated); a ``web`` rule is returned
        only when nothing detects, so callers can tell a vendor's website from a stranger's.
        Under a tool's own zone, a first label such as ``download`` makes a download host.
        Other tools whose detecting rules claim the same name are listed: shared
        infrastructure lowers the confidence instead of being guessed at."""
        key = (name.lower().rstrip("."), evidence)
        try:
            return self._name_cache[key]
        except KeyError:
            pass
        found = self._match_name(*key)
        if len(self._name_cache) > 4096:
            self._name_cache.clear()
        self._name_cache[key] = found
        return found

    def _match_name(self, name: str, evidence: str) -> NameMatch | None:
        cands = self._by_zone.get(".".join(name.rsplit(".", 2)[-2:]), [])
        if self._anywhere:
            cands = sorted(cands + self._anywhere, key=lambda x: x[0])
        hits = [r for _i, r in cands if evidence in r.evidence and r.regex.match(name)]
        first, _, rest = name.partition(".")
        if first in DOWNLOAD_LABELS and rest:
            # download.<a name of the tool>: the vendor's installer host, unless a rule says
            # exactly what this name is.
            under = hits or [r for r in self.names
                             if evidence in r.evidence and r.regex.match(rest)]
            named = [r for r in under if r.role in ("relay", "rendezvous", "download")
                     or "*" not in r.pattern and r.regex.match(name)]
            if under and not named and not under[0].shared_with and not under[0].generated:
                return NameMatch(under[0], "download", "medium",
                                 f"download host by its name ('{first}.' under the "
                                 f"vendor's zone)")
        if not hits:
            return None
        exact = [r for r in hits if "*" not in r.pattern and not r.pattern.startswith("re:")]
        if exact and exact[0].role not in DETECTING_ROLES:
            # A name listed exactly (a vendor's www site) is more specific than a wildcard.
            return NameMatch(exact[0], exact[0].role, exact[0].confidence, "")
        detecting = [r for r in hits if r.role in DETECTING_ROLES]
        if detecting:
            # The most specific rule says what the name is: curated before generated, exact
            # names before patterns, then the longest fixed text (*.cdn.vendor.com is the
            # download CDN even though *.vendor.com also covers it).
            best = min(detecting, key=lambda r: (r.generated, "*" in r.pattern or
                                                 r.pattern.startswith("re:"),
                                                 -len(r.pattern.replace("*", ""))))
            others = tuple(dict.fromkeys(r.tool for r in detecting if r.tool != best.tool))
            conf = best.confidence
            if others and conf == "high":
                conf = "medium"
            return NameMatch(best, best.role, conf, "", others)
        web = hits[0]
        return NameMatch(web, web.role, web.confidence, "")

    def match_download(self, host: str, path: str) -> tuple[str, str] | None:
        """An HTTP request that fetches a tool's installer: (tool, why) or None.

        Either the host is a download host of a signature (with its paths, if it lists
        any), or the host belongs to a tool and the path ends like an installer."""
        host = host.lower().rstrip(".")
        bare = path.split("?", 1)[0].split("#", 1)[0]
        for d in self.downloads:
            if d.regex.match(host):
                if not d.paths:
                    return d.tool, f"download host {d.host}"
                if any(rx.match(bare) for rx in d.path_regexes):
                    return d.tool, f"installer path on {d.host}"
        if bare.lower().endswith(INSTALLER_SUFFIXES):
            m = self.match_name(host, "http_host") or self.match_name(host, "dns")
            if m is not None and not m.rule.shared_with:
                return m.tool, f"installer file on a {m.tool} host (pattern {m.pattern})"
        return None

    def match_certificate(self, attrs: dict[str, list[str]]) -> CertRule | None:
        for rule in self.certificates:
            if rule.value in attrs.get(rule.attribute, ()):
                return rule
        return None

    def match_alpn(self, protocols: list[str]) -> tuple[str, str, str] | None:
        for proto in protocols:
            for prefix, role, tool in self.alpn:
                if proto.startswith(prefix):
                    return proto, role, tool
        return None

    def match_network(self, raw: bytes) -> NetworkRule | None:
        """The first address rule whose networks hold the raw address ``raw``."""
        for rule in self.networks:
            if in_prefixes(raw, rule.prefixes):
                return rule
        return None


GENERATED_DIRS = ("lolrmm",)


def _toml_files(path: str) -> list[str]:
    return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".toml"))


def load_dir(path: str = DEFAULT_DIR, known_recognisers: Iterable[str] = ()) -> SignatureSet:
    """Load every ``*.toml`` under ``path``, then the generated sets in its sub-folders
    (``lolrmm/``). A generated signature for a tool a curated file already covers (same id
    or one of its aliases) is left out: curated files win. All problems of all files are
    reported at once."""
    try:
        files = _toml_files(path)
    except OSError as e:
        raise SignatureError([f"{path}: cannot list signature folder: {e.strerror}"]) from None
    for sub in GENERATED_DIRS:
        gen = os.path.join(path, sub)
        if os.path.isdir(gen):
            files += _toml_files(gen)
    where = _cache_file(path) if os.path.abspath(path) == os.path.abspath(DEFAULT_DIR) else None
    stamps = _stamps([*files, __file__]) if where is not None else {}
    key = _set_key(files, known_recognisers, stamps) if where is not None else None
    if where is not None and key is not None:
        kept_set = _cached_set(where, key)
        if kept_set is not None:
            return kept_set
    cache = _DocumentCache(stamps, where) if where is not None else None
    sigs: list[Signature] = []
    problems: list[str] = []
    for f in files:
        try:
            if cache is None:
                sigs.append(load_file(f, known_recognisers))
                continue
            doc = cache.doc(f)
            if doc is None:
                text, doc = read_document(f)
                sigs.append(_validated(f, text, doc, known_recognisers))
                cache.add(f, doc)
            else:
                sigs.append(load_file(f, known_recognisers, doc))
        except SignatureError as e:
            problems.extend(e.problems)
    if problems:
        raise SignatureError(problems)
    if cache is not None:
        cache.save()
    curated = [s for s in sigs if s.curation == "curated"]
    known = {s.tool for s in curated}
    known |= {_alias_key(a) for s in curated for a in (s.name, *s.aliases)}
    kept = curated + [s for s in sigs if s.curation == "generated"
                      and s.tool not in known
                      and not ({_alias_key(a) for a in (s.name, *s.aliases)} & known)]
    result = SignatureSet(kept)
    if where is not None and key is not None:
        _save_set(where, key, result)
    return result


# The signature files' parsed documents are kept between runs (for the default folder):
# parsing some 200 TOML files is most of a small replay's start-up, while their documents
# come back from one JSON file in one read. A file whose size or modification time
# changed is parsed again; the cache is only ever a copy, so any trouble with it (no home,
# a read-only disk, a damaged file) just means parsing.
CACHE_FORMAT = 1


def _cache_file(folder: str) -> str | None:
    """Where the cache of ``folder`` lives; None for a user with no home (a daemon's own
    user). Each folder has its own file: two installs used in turn (a checkout and a
    virtualenv) would otherwise each find the other's documents and parse every file."""
    base = os.environ.get("NETWATCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "netwatch")
    if not os.path.isabs(base):
        return None
    tag = binascii.crc32(os.path.abspath(folder).encode("utf-8", "surrogateescape"))
    return os.path.join(base, f"signatures-{tag:08x}.json")


# The set built from them is kept too, in a pickle beside the documents' JSON: it comes
# back in one read while every signature file (size and modification time), the names of
# the recognisers and this module are as they were. Building it from the cached documents,
# with every field checked, took three times as long (12 ms against 4), a tenth of a small
# replay's start-up. Reading a pickle can run code, so one is read only from a file of
# this user's that no one else may write to, as Python's own bytecode cache is trusted.
SET_FORMAT = 1


def _stamps(files: list[str]) -> dict[str, list[int]]:
    """Each readable file's size and modification time (an unreadable one is reported by
    the parse)."""
    stamps = {}
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        stamps[f] = [st.st_size, st.st_mtime_ns]
    return stamps


def _set_key(files: list[str], known_recognisers: Iterable[str],
             stamps: dict[str, list[int]] | None = None) -> tuple[Any, ...] | None:
    """What the kept set must have been built from (``stamps``: ``_stamps`` of the files
    and this module, when already taken); None if a file cannot be read."""
    if stamps is None:
        stamps = _stamps([*files, __file__])
    if any(f not in stamps for f in (*files, __file__)):
        return None
    return (SET_FORMAT, sys.version_info[:2], tuple(sorted(set(known_recognisers))),
            tuple((f, *stamps[f]) for f in (*files, __file__)))


def _set_path(documents: str) -> str:
    return os.path.splitext(documents)[0] + ".pickle"


def _cached_set(documents: str, key: tuple[Any, ...]) -> SignatureSet | None:
    """The kept set, if built from ``key``; None for any trouble (a slower start only)."""
    try:
        # The C unpickler alone: the pickle module's Python half (2 ms to import) is only
        # needed to write.
        from _pickle import load
    except ImportError:
        from pickle import load
    try:
        with open(_set_path(documents), "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return None
            if load(fh) != key:
                return None
            kept = load(fh)
    except Exception:  # noqa: BLE001 - whatever a damaged copy raises, parse instead
        return None
    return kept if isinstance(kept, SignatureSet) else None


def _save_set(documents: str, key: tuple[Any, ...], sigs: SignatureSet) -> None:
    import pickle
    path = _set_path(documents)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(key, fh, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(sigs, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class _DocumentCache:
    def __init__(self, stamps: dict[str, list[int]], path: str):
        self.path = path
        self.stamps = stamps  # a document is kept under its file's size and time
        self.docs: dict[str, Any] = {}
        self.fresh = False
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            if data.get("format") == CACHE_FORMAT and isinstance(data.get("files"), dict):
                self.docs = data["files"]
        except (OSError, ValueError, AttributeError):
            self.fresh = True

    def doc(self, f: str) -> dict[str, Any] | None:
        entry = self.docs.get(f)
        if (isinstance(entry, list) and len(entry) == 3 and entry[:2] == self.stamps.get(f)
                and isinstance(entry[2], dict)):
            return entry[2]
        return None

    def add(self, f: str, doc: dict[str, Any]) -> None:
        if f in self.stamps:
            self.docs[f] = [*self.stamps[f], doc]
            self.fresh = True

    def save(self) -> None:
        if not self.fresh:
            return
        docs = {f: e for f, e in self.docs.items() if f in self.stamps}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            text = json.dumps({"format": CACHE_FORMAT, "files": docs})
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        except (OSError, TypeError, ValueError):
            # TOML dates have no JSON form; a file holding one is parsed every time.
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _alias_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())
