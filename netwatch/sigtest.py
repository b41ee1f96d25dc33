"""Signature examples: replay each tool's example captures and check them against their labels.

An examples folder holds small captures with two tables beside them:

* ``MANIFEST.tsv``: ``file kind tools signature description``; ``kind`` is ``positive`` or
  ``negative``, ``signature`` the tool id (signature file) the example belongs to.
* ``FLOWS.tsv``: the shared corpus's columns (``pcap proto client_ip client_port server_ip
  server_port tool roles note``, see ../shared/scoring/README.md) plus an optional
  ``variant``. A row with tool ``none`` marks a flow that must not be reported.

Each capture goes through the real pipeline in-process and its ``remote_access`` events are
matched to the rows the way the shared scorer matches them: protocol, unordered endpoints,
``*`` for any client port or address, and the last event on a flow as its verdict.

* positive: every row names a flow whose verdict has the row's tool, one of its roles and,
  when the row gives one, its variant; flows labelled ``none`` get no event other than
  ``scan``; no other flow is reported (anything netwatch should report is labelled).
* negative: no event with a role other than ``scan`` at all.

A curated signature with no positive or no negative example fails: it is untested.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .eventlog import EventLog
from .pipeline import Pipeline
from .signatures import SignatureSet
from .sources.capture import CaptureError, ReadStats

MANIFEST = "MANIFEST.tsv"
FLOWS = "FLOWS.tsv"
FLOW_COLUMNS = ("pcap", "proto", "client_ip", "client_port", "server_ip", "server_port",
                "tool", "roles")
ANY = "*"

Endpoint = tuple[str, int]
FlowKey = tuple[str, frozenset[Endpoint]]


class ExamplesError(Exception):
    """The examples folder or one of its tables cannot be used (one line, names the file)."""


@dataclass(slots=True)
class Example:
    file: str
    kind: str  # positive | negative
    signature: str
    tools: str = "-"
    description: str = ""


@dataclass(slots=True)
class Label:
    """One FLOWS.tsv row."""

    pcap: str
    proto: str
    client_ip: str
    client_port: str
    server_ip: str
    server_port: int
    tool: str
    roles: tuple[str, ...]  # empty: any role
    note: str = ""
    variant: str = ""
    line: int = 0

    def describe(self) -> str:
        return (f"{self.proto} {self.client_ip}:{self.client_port} -> "
                f"{self.server_ip}:{self.server_port}")


@dataclass(slots=True)
class SignatureResult:
    tool: str
    reported_as: str
    evidence: list[str]
    curated: bool
    has_file: bool
    positives: list[int] = field(default_factory=lambda: [0, 0])  # passed, total
    negatives: list[int] = field(default_factory=lambda: [0, 0])
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "reported_as": self.reported_as,
                "evidence": self.evidence, "curated": self.curated,
                "signature_file": self.has_file,
                "positives": {"passed": self.positives[0], "total": self.positives[1]},
                "negatives": {"passed": self.negatives[0], "total": self.negatives[1]},
                "result": "ok" if self.passed else "fail", "failures": self.failures}


# ---------------------------------------------------------------------- reading the tables

def _read_tsv(path: str) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as e:
        raise ExamplesError(f"{path}: cannot read: {e.strerror or e}") from None
    header: list[str] | None = None
    rows = []
    for n, ln in enumerate(lines, 1):
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        cells = ln.split("\t")
        if header is None:
            header = [c.strip().lower() for c in cells]
            continue
        cells += [""] * (len(header) - len(cells))
        rows.append((n, {h: c.strip() for h, c in zip(header, cells)}))
    if header is None:
        raise ExamplesError(f"{path}: empty (no header)")
    return rows


def _ip(text: str, where: str) -> str:
    if text == ANY:
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ExamplesError(f"{where}: {text!r} is not an IP address") from None


def read_examples(folder: str) -> tuple[list[Example], list[Label]]:
    """MANIFEST.tsv and FLOWS.tsv of an examples folder, validated."""
    mpath, fpath = os.path.join(folder, MANIFEST), os.path.join(folder, FLOWS)
    examples = []
    for n, r in _read_tsv(mpath):
        where = f"{mpath}:{n}"
        for col in ("file", "kind", "signature"):
            if not r.get(col):
                raise ExamplesError(f"{where}: column {col!r} is missing or empty")
        if r["kind"] not in ("positive", "negative"):
            raise ExamplesError(f"{where}: kind must be positive or negative, got {r['kind']!r}")
        examples.append(Example(r["file"], r["kind"], r["signature"], r.get("tools", "-"),
                                r.get("description", "")))
    labels = []
    for n, r in _read_tsv(fpath):
        where = f"{fpath}:{n}"
        missing = [c for c in FLOW_COLUMNS if not r.get(c)]
        if missing:
            raise ExamplesError(f"{where}: column {missing[0]!r} is missing or empty")
        if not r["server_port"].isdigit() or not (r["client_port"].isdigit()
                                                  or r["client_port"] == ANY):
            raise ExamplesError(f"{where}: ports must be numbers ({ANY!r} for any client port)")
        roles = r["roles"]
        labels.append(Label(
            r["pcap"], r["proto"].lower(), _ip(r["client_ip"], where), r["client_port"],
            _ip(r["server_ip"], where), int(r["server_port"]), r["tool"].lower(),
            () if roles in ("", "-") else tuple(x.strip() for x in roles.split("|")),
            r.get("note", ""), r.get("variant", ""), n))
    return examples, labels


# ---------------------------------------------------------------------- matching

def flow_key(ev: dict[str, Any]) -> FlowKey:
    """The scorer's flow key: protocol and the unordered pair of endpoints."""
    ends = frozenset({(str(ipaddress.ip_address(ev["src_ip"])), int(ev["src_port"])),
                      (str(ipaddress.ip_address(ev["dest_ip"])), int(ev["dest_port"]))})
    return str(ev["proto"]).lower(), ends


def matches(label: Label, key: FlowKey) -> bool:
    proto, ends = key
    if proto != label.proto:
        return False
    server = (label.server_ip, label.server_port)
    if server not in ends:
        return False
    others = ends - {server} or {server}
    return any((label.client_ip in (ANY, ip)) and (label.client_port in (ANY, str(port)))
               for ip, port in others)


def _by_flow(events: Iterable[dict[str, Any]]) -> dict[FlowKey, list[dict[str, Any]]]:
    flows: dict[FlowKey, list[dict[str, Any]]] = {}
    for ev in events:
        if ev.get("event_type") == "remote_access":
            flows.setdefault(flow_key(ev), []).append(ev)
    return flows


def _said(ev: dict[str, Any]) -> str:
    ra = ev["remote_access"]
    text = f"{ra.get('tool')}/{ra.get('role')}"
    if ra.get("variant"):
        text += f" variant {ra['variant']}"
    return f"{text} on {ev['proto']} {ev['src_ip']}:{ev['src_port']} -> " \
           f"{ev['dest_ip']}:{ev['dest_port']}"


def _not_scan(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in evs if e["remote_access"].get("role") != "scan"]


def check_positive(events: Iterable[dict[str, Any]], labels: list[Label]) -> list[str]:
    """Why a positive example fails (empty when it passes)."""
    flows = _by_flow(events)
    problems = []
    for row in labels:
        hits = [k for k in flows if matches(row, k)]
        if row.tool == "none":
            for k in hits:
                bad = _not_scan(flows[k])
                if bad:
                    problems.append(f"{FLOWS}:{row.line}: {row.describe()} must not be reported "
                                    f"({row.note or 'labelled none'}), got {_said(bad[-1])}")
            continue
        want = f"{row.tool}/{'|'.join(row.roles) or 'any role'}"
        if row.variant:
            want += f" variant {row.variant}"
        if not hits:
            problems.append(f"{FLOWS}:{row.line}: missed {row.describe()}: no event, "
                            f"expected {want}")
            continue
        verdicts = [flows[k][-1] for k in hits]
        good = [v for v in verdicts if _fits(row, v["remote_access"])]
        if good:
            continue
        ra = verdicts[-1]["remote_access"]
        if ra.get("tool") != row.tool:
            what = "wrong tool"
        elif row.roles and ra.get("role") not in row.roles:
            what = "wrong role"
        else:
            what = "wrong variant"
        problems.append(f"{FLOWS}:{row.line}: {what}: expected {want}, got {_said(verdicts[-1])}")
    labelled = {k for k in flows if any(matches(r, k) for r in labels)}
    for k, evs in flows.items():
        if k not in labelled and _not_scan(evs[-1:]):
            problems.append(f"unlabelled detection: {_said(evs[-1])}")
    return problems


def _fits(row: Label, ra: dict[str, Any]) -> bool:
    return (ra.get("tool") == row.tool
            and (not row.roles or ra.get("role") in row.roles)
            and (not row.variant or ra.get("variant", "") == row.variant))


def check_negative(events: Iterable[dict[str, Any]]) -> list[str]:
    """Why a negative example fails: every flow with an event other than a scan."""
    return [f"reported on a negative: {_said(_not_scan(evs)[-1])}"
            for evs in _by_flow(events).values() if _not_scan(evs)]


# ---------------------------------------------------------------------- replay

class _Collect(EventLog):
    """An event log kept in memory, as the JSON a file would hold."""

    def __init__(self) -> None:
        super().__init__(None)
        self.events: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.events.append(json.loads(json.dumps(event)))


def replay(path: str, sigs: SignatureSet) -> list[dict[str, Any]]:
    """Run one capture through a fresh pipeline; return its remote_access events in order.
    Raises CaptureError when the file cannot be read."""
    log = _Collect()
    pipe = Pipeline(sigs, log)
    pipe.feed_file(path, ReadStats())
    pipe.finish()
    log.close()
    return [e for e in log.events if e.get("event_type") == "remote_access"]


def check_example(folder: str, ex: Example, labels: list[Label],
                  sigs: SignatureSet) -> list[str]:
    path = os.path.join(folder, ex.file)
    try:
        events = replay(path, sigs)
    except CaptureError as e:
        return [f"cannot read the capture: {e}"]
    if ex.kind == "negative":
        return check_negative(events)
    rows = [r for r in labels if os.path.basename(r.pcap) == os.path.basename(ex.file)]
    if not rows:
        return ["positive example without FLOWS.tsv rows"]
    return check_positive(events, rows)


# ---------------------------------------------------------------------- per signature

def default_examples_dir() -> str | None:
    """tests/pcaps/synthetic/tools of the source tree this package sits in, if any."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(root, "tests", "pcaps", "synthetic", "tools")
    return folder if os.path.isfile(os.path.join(folder, MANIFEST)) else None


def run(sigs: SignatureSet, folder: str, tools: Iterable[str] = ()) -> list[SignatureResult]:
    """Check every signature (or only ``tools``) against its examples, in tool order.

    Curated signatures are always listed; generated ones only when they have examples;
    example signatures without a file are listed too (their captures still run)."""
    examples, labels = read_examples(folder)
    wanted = set(tools)
    by_sig: dict[str, list[Example]] = {}
    for ex in examples:
        by_sig.setdefault(ex.signature, []).append(ex)
    ids = {t for t, s in sigs.by_tool.items() if s.curation != "generated"} | set(by_sig)
    unknown = wanted - ids - set(sigs.by_tool)
    if unknown:
        raise ExamplesError("no signature or example for " + ", ".join(sorted(unknown)))
    if wanted:
        ids = wanted
    results = []
    for tool in sorted(ids):
        sig = sigs.by_tool.get(tool)
        curated = sig is not None and sig.curation != "generated"
        mine = by_sig.get(tool, [])
        res = SignatureResult(tool, _reported_as(tool, sig, mine, labels),
                              sig.evidence_kinds() if sig is not None else [],
                              curated, sig is not None)
        for ex in mine:
            problems = check_example(folder, ex, labels, sigs)
            tally = res.positives if ex.kind == "positive" else res.negatives
            tally[1] += 1
            if problems:
                res.failures += [f"{ex.file}: {p}" for p in problems]
            else:
                tally[0] += 1
        if curated and (not res.positives[1] or not res.negatives[1]):
            kinds = [k for k, n in (("positive", res.positives[1]),
                                    ("negative", res.negatives[1])) if not n]
            res.failures.insert(0, f"no examples: no {' and no '.join(kinds)} example "
                                   f"in {os.path.join(folder, MANIFEST)}")
        results.append(res)
    return results


def _reported_as(tool: str, sig: Any, examples: list[Example], labels: list[Label]) -> str:
    """What netwatch calls the tool: the tools (and variants) its positive examples are
    labelled with; without examples, what its signature says."""
    files = {os.path.basename(ex.file) for ex in examples if ex.kind == "positive"}
    seen = dict.fromkeys(r.tool + (f" (variant {r.variant})" if r.variant else "")
                         for r in labels
                         if os.path.basename(r.pcap) in files and r.tool != "none")
    if seen:
        return ", ".join(seen)
    return (getattr(sig, "reported_as", "") or tool) if sig is not None else tool


# ---------------------------------------------------------------------- output

def format_text(results: list[SignatureResult]) -> str:
    """The table (tool, reported as, evidence kinds, positives, negatives, result), then the
    failures, then a count."""
    rows = [(r.tool, r.reported_as, ",".join(r.evidence) or "-",
             f"{r.positives[0]}/{r.positives[1]}", f"{r.negatives[0]}/{r.negatives[1]}",
             "ok" if r.passed else "FAIL") for r in results]
    head = ("tool", "reported as", "evidence", "positives", "negatives", "result")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in [head, *rows]]
    failed = [r for r in results if not r.passed]
    if failed:
        out += ["", "failures:"]
        out += [f"  {r.tool}: {f}" for r in failed for f in r.failures]
    out += ["", f"{len(results)} signatures: {len(results) - len(failed)} ok, "
                f"{len(failed)} failed"]
    return "\n".join(out) + "\n"


def to_json(results: list[SignatureResult], folder: str) -> dict[str, Any]:
    return {"examples": folder, "ok": all(r.passed for r in results),
            "signatures": [r.as_dict() for r in results]}
