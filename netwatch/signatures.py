"""Signature files: one TOML file per tool in ``signatures/``, validated at load.

A signature holds facts that change (names, certificate subjects, ALPN prefixes, byte
patterns, vendor networks, ports as hints); protocol logic stays in the recognisers. Every
validation error names the file, the line and the field, the way a compiler would, so a
user editing a file sees at once what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("session", "relay", "rendezvous", "download", "dns", "scan", "unknown", "web")
# Roles a name may have that make a detection. "web" marks a vendor's own website or API: it
# is listed so users can see it, but visiting it is not remote access.
DETECTING_ROLES = ("session", "relay", "rendezvous", "download", "unknown")
NAME_EVIDENCE = ("dns", "sni", "certificate", "http_host")
PREVALENCE = ("high", "medium", "low", "unknown")
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
    tool: str
    pattern: str
    regex: re.Pattern[str]
    role: str
    evidence: tuple[str, ...]
    note: str = ""


@dataclass(slots=True)
class CertRule:
    tool: str
    attribute: str  # "CN" or "O"
    value: str
    role: str


@dataclass(slots=True)
class PayloadRule:
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
    tool: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    role: str
    requires: str  # the payload shape that must come with the address: "tls-records"
    source: str


@dataclass(slots=True)
class PortHint:
    proto: str
    ports: tuple[int, ...]
    scan: bool
    note: str


@dataclass(slots=True)
class Signature:
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
    download_hosts: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{os.path.basename(self.path)}@{self.version}"

    def evidence_kinds(self) -> list[str]:
        kinds: list[str] = []
        if self.recognisers:
            kinds.append("handshake")
        for n in self.names:
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
            "download_hosts", "notes"}
TABLE_KEYS = {
    "ports": {"proto", "ports", "scan", "note"},
    "names": {"pattern", "role", "evidence", "note", "source"},
    "certificates": {"attribute", "value", "role", "source"},
    "alpn": {"prefix", "role", "source"},
    "payloads": {"proto", "offset", "prefixes", "min_packets", "min_packets_on_hinted_port",
                 "role", "description", "source"},
    "networks": {"cidrs", "role", "requires", "source"},
}


def load_file(path: str, known_recognisers: Iterable[str] = ()) -> Signature:
    """Load and validate one signature file; raise SignatureError listing every problem."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SignatureError([f"{path}:1: cannot read: {e}"]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise SignatureError([f"{path}:{m.group(1) if m else 1}: TOML syntax: {e}"]) from None
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
    )
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
        if proto and ports:
            sig.ports.append(PortHint(proto, tuple(ports), bool(scan),
                                      str(t.get("note", ""))))
    for i, t in tables("names"):
        pat = _get(ck, t, "names", i, "pattern", str)
        role = _get(ck, t, "names", i, "role", str, choices=ROLES)
        ev = _get(ck, t, "names", i, "evidence", list, ["dns", "sni"])
        if ev is not None and not all(e in NAME_EVIDENCE for e in ev):
            ck.fail("names", i, "evidence", f"each must be one of {', '.join(NAME_EVIDENCE)}")
            ev = None
        if pat:
            try:
                rx = pattern_regex(pat)
            except re.error as e:
                ck.fail("names", i, "pattern", f"bad regular expression: {e}")
                rx = None
            if rx is not None and role and ev:
                sig.names.append(NameRule(sig.tool, pat, rx, role, tuple(ev),
                                          str(t.get("note", ""))))
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
    hosts = _get(ck, doc, None, 0, "download_hosts", list, []) or []
    sig.download_hosts = [str(h) for h in hosts]
    if ck.problems:
        raise SignatureError(ck.problems)
    return sig


class SignatureSet:
    """All loaded signatures, with the lookups the recognisers need."""

    def __init__(self, sigs: list[Signature]):
        self.by_tool = {s.tool: s for s in sigs}
        self.names = [n for s in sigs for n in s.names]
        self.certificates = [c for s in sigs for c in s.certificates]
        self.alpn = [(p, r, s.tool) for s in sigs for p, r in s.alpn_prefixes]
        self.payloads = [p for s in sigs for p in s.payloads]
        self.networks = [n for s in sigs for n in s.networks]
        self.scan_ports: dict[tuple[int, int], str] = {}
        self.hinted_ports: dict[tuple[str, int], set[str]] = {}
        for s in sigs:
            for h in s.ports:
                pnum = 6 if h.proto == "tcp" else 17
                for p in h.ports:
                    self.hinted_ports.setdefault((s.tool, pnum), set()).add(str(p))
                    if h.scan:
                        self.scan_ports.setdefault((pnum, p), s.tool)

    def __len__(self) -> int:
        return len(self.by_tool)

    def ref(self, tool: str) -> str:
        s = self.by_tool.get(tool)
        return s.ref if s else f"{tool}.toml@0"

    def port_hinted(self, tool: str, proto: int, port: int) -> bool:
        return str(port) in self.hinted_ports.get((tool, proto), ())

    def match_name(self, name: str, evidence: str) -> NameRule | None:
        """The first rule whose pattern covers ``name`` for this kind of evidence. Rules with
        a detecting role win over ``web`` rules of the same tool."""
        best: NameRule | None = None
        for rule in self.names:
            if evidence in rule.evidence and rule.regex.match(name):
                if rule.role in DETECTING_ROLES:
                    return rule
                if best is None:
                    best = rule
        return best

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

    def match_network(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                      ) -> NetworkRule | None:
        for rule in self.networks:
            for net in rule.networks:
                if ip.version == net.version and ip in net:
                    return rule
        return None


def load_dir(path: str = DEFAULT_DIR, known_recognisers: Iterable[str] = ()) -> SignatureSet:
    """Load every ``*.toml`` under ``path``; all problems of all files are reported at once."""
    try:
        files = sorted(f for f in os.listdir(path) if f.endswith(".toml"))
    except OSError as e:
        raise SignatureError([f"{path}: cannot list signature folder: {e.strerror}"]) from None
    sigs, problems = [], []
    for f in files:
        try:
            sigs.append(load_file(os.path.join(path, f), known_recognisers))
        except SignatureError as e:
            problems.extend(e.problems)
    if problems:
        raise SignatureError(problems)
    return SignatureSet(sigs)
