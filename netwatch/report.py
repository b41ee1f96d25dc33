"""The summary a person reads after a replay: who talked to which tool, when, and how."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .addresses import ip_bytes, is_lan_address
from .pipeline import Finding, Result
from .shown import shown

ROLE_WORDS = {
    "session": "remote-control session",
    "relay": "connection through the vendor's relay",
    "rendezvous": "client registered with the vendor (idle or connecting)",
    "download": "installer download",
    "dns": "looked up the vendor's servers",
    "scan": "connection attempt with no handshake",
    "unknown": "contact with the tool's servers",
}


def _device(f: Finding) -> str:
    """The household's side of the connection: the client, unless only the server is local."""
    if not is_lan_address(ip_bytes(f.client)) and is_lan_address(ip_bytes(f.server)):
        return f.server
    return f.client


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _how(f: Finding) -> str:
    parts = []
    seen = set()
    for e in f.detection.evidence:
        if e.value in seen:
            continue  # the same name seen twice (SNI and DNS) is said once
        seen.add(e.value)
        # Values and details are what the remote side sent (SNI, cookie, Host…): escaped.
        parts.append(f"{e.kind} {shown(e.value)} ({shown(e.detail)})" if e.detail
                     else f"{e.kind} {shown(e.value)}")
    return "; ".join(parts)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


SENTENCE_MAX = 2000  # an alert title or reason: netwatch's sentence around escaped names
SEVERITY_MARK = {"critical": "!!", "warning": "! ", "info": "  "}


def _alert_lines(result: Result) -> list[str]:
    """The household's alerts first: what a carer would be told, and why."""
    if not result.alerts:
        return []
    lines = [f"Alerts for the household ({len(result.alerts)}):"]
    for ev in result.alerts:
        a = ev["alert"]
        at = datetime.fromisoformat(ev["timestamp"])
        when = (at.astimezone(result.tz).strftime("%a %Y-%m-%d %H:%M:%S %Z") if result.tz
                else at.strftime("%Y-%m-%d %H:%M:%S UTC"))
        muted = "" if a.get("notify", True) else "  (observe mode: not sent)"
        lines.append(f"  {SEVERITY_MARK[a['level']]}{a['level'].upper():<8} {when}  "
                     f"{shown(a['title'], SENTENCE_MAX)}{muted}")
        lines.extend(f"      - {shown(r, SENTENCE_MAX)}" for r in a["reasons"])
    lines.append("")
    return lines


def summary_text(result: Result, captures: tuple[str, ...]) -> str:
    c = result.counters
    lines = _alert_lines(result)
    real = [f for f in result.findings if f.detection.role != "scan"]
    scans = [f for f in result.findings if f.detection.role == "scan"]
    if real:
        lines.append(f"Remote access found ({len(real)} connection{'s' * (len(real) != 1)}):")
        by_device: dict[str, list[Finding]] = {}
        for f in real:
            by_device.setdefault(_device(f), []).append(f)
        for dev, fs in by_device.items():
            tools = sorted({f.detection.tool for f in fs})
            lines.append(f"  device {dev}: {', '.join(tools)}")
            for f in fs:
                d = f.detection
                if _device(f) == f.client:
                    peer = f"-> {f.server}:{f.server_port}/{f.proto}"
                else:
                    peer = f"<- {f.client} (incoming to port {f.server_port}/{f.proto})"
                if f.name:
                    peer += f" ({shown(f.name)})"
                lines.append(f"    {_when(f.first_seen)}  {d.tool} {d.role} {peer}  "
                             f"[{d.confidence}]")
                lines.append(f"      {ROLE_WORDS.get(d.role, d.role)}; "
                             f"sent {_size(f.bytes_toserver)}, "
                             f"received {_size(f.bytes_toclient)}")
                lines.append(f"      how: {_how(f)}")
    else:
        lines.append("No remote access found.")
    if scans:
        ports = sorted({f"{f.detection.tool} {f.server_port}" for f in scans})
        lines.append(f"Connection attempts without a handshake (scans, no alarm): "
                     f"{len(scans)} ({', '.join(ports[:8])}{' …' if len(ports) > 8 else ''})")
    lines.append(f"Read {c.files} capture file{'s' * (c.files != 1)}: {c.packets} packets, "
                 f"{c.flows} flows, {c.malformed} malformed, {c.events} events"
                 + (f", {c.files_unreadable} unreadable" if c.files_unreadable else "")
                 + (f", {c.files_truncated} truncated" if c.files_truncated else "") + ".")
    return "\n".join(lines) + "\n"


def summary_json(result: Result, captures: tuple[str, ...]) -> dict[str, Any]:
    c = result.counters
    return {
        "captures": list(captures),
        "counters": {k: getattr(c, k) for k in c.__dataclass_fields__},
        "findings": [
            {"flow_id": f.eve_flow_id, "first_seen": _when(f.first_seen), "proto": f.proto,
             "client": f"{f.client}:{f.client_port}", "server": f"{f.server}:{f.server_port}",
             "name": f.name, "tool": f.detection.tool, "role": f.detection.role,
             "confidence": f.detection.confidence,
             "evidence": [e.as_dict() for e in f.detection.evidence],
             "bytes_toserver": f.bytes_toserver, "bytes_toclient": f.bytes_toclient,
             "pcap": f.pcap}
            for f in result.findings
        ],
        "alerts": [ev["alert"] | {"timestamp": ev["timestamp"]} for ev in result.alerts],
    }
