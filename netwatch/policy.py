"""The policy: sessions and household context in, decisions a family agrees with out.

``decide(events, household, now)`` is a pure function: the same events, household and time
always give the same alerts. ``Policy`` is its incremental form, used while replaying or
watching: it sees each event once, in order, and returns the ``alert`` events it causes.

The rules, in the order they are applied to a session of a remote-access tool:

1. A trusted tool or peer for the device (``trusted`` in the household file): no alert.
2. A client idling with its vendor's ID server: no alert (TeamViewer on the son's laptop).
3. A session being set up (``connecting``) outside the expected help windows: ``warning``.
4. A session in control of the screen (``active``): ``info`` inside an expected help window,
   ``critical`` outside one (an unexpected tool, at an unexpected time).
5. Online banking opened on the device while its session is connecting or active:
   ``critical``, whatever the window.
6. A return (the same tool on the device again, or the same remote peer) and an installer
   download just before a first session add their reason and raise the level one step.
7. A session known only from the LAN resolver's log (``dns_only``) says what that position
   cannot see (whether a session started, its volume) and offers no Block button: a box that
   only answers DNS cannot cut a connection.
8. A device whose policy is ``block`` (or ``block-outside-windows``, outside its help
   windows) gets the decision to block the session in its alert (``alert.block``: the tool
   and the session's peers), once per session, unless a carer allowed the session ("Allow
   for 2 h": a ``block`` event ``remove`` with ``allowed_until``) and that time has not
   passed. The policy only decides; netwatch/block carries it out.

An alert's level (``info``, ``warning``, ``critical``) is ``alert.level``; beside it the alert
carries Suricata's fields, so EVE readers file it like any IDS alert: the integer
``severity`` (1 most severe), ``signature``/``signature_id`` (one per kind of alert, fixed),
``category``, ``action`` and the session's main flow on the envelope.

A device in ``observe`` mode gets its alerts written with ``notify: false``. Titles and
reasons are catalogue codes with parameters (``title_code``, ``reason_codes``); the event log
also carries them as English sentences, and each carer gets them in their own language
(netwatch/messages.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import messages
from .eventlog import eve_datetime, iso_timestamp

LEVELS = ("info", "warning", "critical")
# EVE's alert.severity is the rule's priority, 1 the highest (docs.suricata.io, "Meta
# Keywords", priority: values 1-4 are the ones commonly used).
SURICATA_SEVERITY = {"critical": 1, "warning": 2, "info": 3}
# One Suricata-style signature per kind of alert (the catalogue code of its title): EVE
# readers group, count and silence alerts by signature_id, so an id never changes meaning.
# netwatch's ids are 8700001-8700099, a block no rule set claims in sidallocation.org's
# table (1000000-1999999 is local rules, 2000000-2999999 Emerging Threats ...); gid 1 and
# rev 1 as Suricata's own rules.
ALERT_CATEGORY_EXPECTED = "Expected remote help"
ALERT_CATEGORY_UNEXPECTED = "Unexpected remote access"
SIGNATURES: dict[str, tuple[int, str, str]] = {
    "info": (8700001, "NETWATCH remote access inside an expected help window",
             ALERT_CATEGORY_EXPECTED),
    "warning": (8700002, "NETWATCH remote-access session being set up outside a help window",
                ALERT_CATEGORY_UNEXPECTED),
    "critical": (8700003, "NETWATCH remote-access session in control outside a help window",
                 ALERT_CATEGORY_UNEXPECTED),
    "critical_connecting": (8700004, "NETWATCH remote-access session being set up with "
                                     "banking open, a return or a fresh install",
                            ALERT_CATEGORY_UNEXPECTED),
    "still_active": (8700005, "NETWATCH remote-access session still in control",
                     ALERT_CATEGORY_UNEXPECTED),
}
# The envelope fields of a session event that name its main flow, copied onto its alerts.
FLOW_FIELDS = ("flow_id", "community_id", "src_port", "dest_ip", "dest_port", "proto")
ENGLISH = "en"  # the language of the event log's own title and reasons
# A session still active after a warning or critical alert is reported again this often
# ("still active, 20 min"); the outbox merges what comes faster than it may send.
UPDATE_EVERY_S = 600.0
LIVE_STATES = ("connecting", "active")


def parse_time(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def _raise(level: str) -> str:
    return LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]


@dataclass
class _SessionView:
    id: int
    tool: str
    device_ip: str
    state: str = "idle"
    started: str = ""
    active_since: str = ""
    duration_s: float = 0.0
    relayed: bool = False
    peers: list[str] = field(default_factory=list)
    returning: dict[str, Any] | None = None
    after_download: dict[str, Any] | None = None
    banking: list[str] = field(default_factory=list)
    flow: dict[str, Any] = field(default_factory=dict)  # its main flow (FLOW_FIELDS)
    dns_only: bool = False
    level: str | None = None  # of the last alert sent for it
    alerts: int = 0
    said: set[str] = field(default_factory=set)  # what its alerts have covered
    last_alert: datetime | None = None
    blocked: bool = False  # the policy has decided to block it
    in_window: bool | None = None  # at its last evaluation (None: not evaluated)


class Policy:
    """Turns the event stream into ``alert`` events, one session at a time."""

    def __init__(self, household: Any, tool_names: dict[str, str] | None = None):
        self.h = household
        self.names = tool_names if tool_names is not None else default_tool_names()
        self.sessions: dict[int, _SessionView] = {}
        self.live_by_device: dict[str, set[int]] = {}
        # Sessions a carer allowed ("Allow for 2 h"): not blocked again until then.
        self.allowed: dict[int, datetime] = {}

    # ------------------------------------------------------------------ input

    def observe(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        kind = ev.get("event_type")
        if kind == "session":
            return self._session(ev)
        if kind == "dns" and ev.get("dns", {}).get("category") == "banking":
            return self._banking(ev)
        if kind == "block":
            self._allowed(ev["block"])
        return []

    def _allowed(self, body: dict[str, Any]) -> None:
        """A carer's "Allow for 2 h" (a ``remove`` with ``allowed_until``)."""
        sid, until = body.get("session_id"), body.get("allowed_until")
        if body.get("action") != "remove" or sid is None or not until:
            return
        self.allowed[sid] = parse_time(until)
        v = self.sessions.get(sid)
        if v is not None:
            v.blocked = False

    def _session(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        body = ev["session"]
        sid = body["id"]
        v = self.sessions.get(sid)
        if v is None:
            v = self.sessions[sid] = _SessionView(sid, body["tool"], ev.get("src_ip", ""))
        v.state = body["state"]
        v.started = body["started"]
        v.active_since = body.get("active_since", "")
        v.duration_s = body["duration_s"]
        v.relayed = body.get("relayed", False)
        v.peers = body.get("peers", [])
        v.returning = body.get("returning")
        v.after_download = body.get("after_download")
        v.flow = {k: ev[k] for k in FLOW_FIELDS if k in ev}
        v.dns_only = body.get("dns_only", False)
        live = self.live_by_device.setdefault(v.device_ip, set())
        if v.state in LIVE_STATES:
            live.add(sid)
        else:
            live.discard(sid)
        if v.state == "ended":
            self.sessions.pop(sid, None)
            return []
        return self._evaluate(v, ev["timestamp"])

    def tick(self, ts: str) -> list[dict[str, Any]]:
        """Time passing (the pipeline's clock): a help window that opened or closed since a
        live session was last looked at changes what its alert says, on time rather than at
        the session's next event."""
        out: list[dict[str, Any]] = []
        if self.h is None:
            return out
        when = parse_time(ts)
        for v in list(self.sessions.values()):
            if v.state not in LIVE_STATES or v.in_window is None:
                continue
            device = self.h.device_for(v.device_ip)
            if (self.h.window_at(when, device, v.tool) is not None) != v.in_window:
                out += self._evaluate(v, ts)
        return out

    def _banking(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        ip = ev.get("src_ip", "")
        bank = ev["dns"].get("bank") or ev["dns"].get("rrname", "")
        out = []
        for sid in sorted(self.live_by_device.get(ip, ())):
            v = self.sessions[sid]
            if bank not in v.banking:
                v.banking.append(bank)
                out += self._evaluate(v, ev["timestamp"])
        return out

    # ------------------------------------------------------------------ rules

    def _evaluate(self, v: _SessionView, ts: str) -> list[dict[str, Any]]:
        when = parse_time(ts)
        device = self.h.device_for(v.device_ip) if self.h is not None else None
        tool = self.names.get(v.tool, v.tool)
        if self.h is not None:
            peers: list[str | None] = list(v.peers) or [None]
            for peer in peers:
                ip = peer if peer and _is_ip(peer) else None
                name = peer if peer and not _is_ip(peer) else None
                if self.h.trusted_rule(device, v.tool, ip, name) is not None:
                    return []
        if v.state not in LIVE_STATES:
            return []  # an idle client, or a session that went quiet: nothing to tell
        window = self.h.window_at(when, device, v.tool) if self.h is not None else None
        v.in_window = window is not None
        person = self.h.person_of(device) if (self.h is not None and device) else None
        w = {"person": person.name if person else None,
             "device": device.name if device else None, "ip": v.device_ip}
        base = {"tool": tool, "who": w, "state": v.state,
                "duration_s": round((when - parse_time(v.active_since or v.started))
                                    .total_seconds(), 1)}
        codes: list[dict[str, Any]] = []
        if window is not None:
            level = "info"
            codes.append(_code("inside", base, window=_window(window)))
        else:
            level = "critical" if v.state == "active" else "warning"
            other = self._window_for_other_tools(when, device)
            if other is not None:
                hit, tools = other
                codes.append(_code("other_tools", base, window=_window(hit), tools=tools))
            else:
                nxt = self._next_window(when, device)
                codes.append(_code("outside", base, window=_window(nxt)) if nxt is not None
                             else _code("outside_none", base))
        if v.relayed:
            codes.append(_code("relayed", {"tool": tool}))
        if v.banking:
            level = "critical"
            codes.append(_code("banking", {"banks": list(v.banking)}))
        if v.returning:
            r = v.returning
            codes.append(_code("return_peer" if r.get("same_peer") else "return_device",
                               {"tool": tool, "ago_s": r["ago_s"]}))
            level = _raise(level)
        if v.after_download:
            codes.append(_code("download", {"tool": tool,
                                            "ago_s": v.after_download["ago_s"]}))
            level = _raise(level)
        if v.dns_only:
            codes.append(_code("dns_only", {"tool": tool}))
        said = {v.state, "window" if window is not None else "outside",
                *(f"bank:{b}" for b in v.banking)}
        still = False
        if v.level is not None and not (said - v.said) and \
                LEVELS.index(level) <= LEVELS.index(v.level):
            if not (v.state == "active" and level != "info" and v.last_alert is not None
                    and (when - v.last_alert).total_seconds() >= UPDATE_EVERY_S):
                return []  # nothing new to say: the last alert for this session stands
            still = True  # an update: the session goes on
        v.said |= said
        v.last_alert = when
        v.level = level
        v.alerts += 1
        policy = getattr(device, "policy", "alert")
        notify = policy != "observe"
        actions = ["block", "allow"] if notify and level != "info" else []
        if v.dns_only and actions:
            actions.remove("block")
        block: dict[str, Any] | None = None
        allowed = self.allowed.get(v.id)
        if (policy == "block" or (policy == "block-outside-windows" and window is None)) \
                and not v.blocked and not v.dns_only and (allowed is None or allowed <= when):
            v.blocked = True
            block = {"tool": v.tool, "tool_name": tool,
                     "peers": [p for p in v.peers if _is_ip(p)],
                     "why": f"{tool} on {v.device_ip}: the device's policy is {policy}"}
            codes.append(_code("blocking" if policy == "block" else "blocking_outside",
                               {"tool": tool}))
            actions = ["allow"]
        kind = "critical_connecting" if v.state != "active" and level == "critical" \
            else level
        title_code = _code(kind, {"tool": tool, "who": w})
        if still:
            kind = "still_active"
            title_code = _code(kind, {"tool": tool, "who": w,
                                      "duration_s": base["duration_s"]})
        tz = self.h.tz if self.h is not None else None
        sid, signature, category = SIGNATURES[kind]
        alert: dict[str, Any] = {
            "action": "allowed", "gid": 1, "signature_id": sid, "rev": 1,
            "signature": signature, "category": category,
            "severity": SURICATA_SEVERITY[level], "level": level,
            "id": f"{v.id}-{v.alerts}",
            "title": messages.title(ENGLISH, title_code),
            "reasons": [messages.reason(ENGLISH, c, tz) for c in codes],
            "session_id": v.id, "tool": v.tool, "state": v.state,
            "actions": actions, "notify": notify,
            "title_code": title_code, "reason_codes": codes,
        }
        ev: dict[str, Any] = {"timestamp": ts, "event_type": "alert"}
        if "flow_id" in v.flow:
            ev["flow_id"] = v.flow["flow_id"]
            ev["community_id"] = v.flow["community_id"]
        ev["src_ip"] = v.device_ip  # the household device, whichever side opened the flow
        ev.update((k, v.flow[k]) for k in FLOW_FIELDS[2:] if k in v.flow)
        ev["alert"] = alert
        if device is not None:
            alert["device"] = device.name
        if block is not None:
            # The decision; the blocking layer (netwatch/block) carries it out and adds its
            # outcome before the alert is written and sent.
            alert["block"] = block
        return [ev]

    # ------------------------------------------------------------------ wording

    def _window_for_other_tools(self, when: datetime, device: Any
                                ) -> tuple[Any, list[str]] | None:
        """A help window open now for this device that expects other tools."""
        if self.h is None:
            return None
        for w in self.h.windows:
            if not w.tools or not w.applies_to(device):
                continue
            for hit in w.occurrences(when, when + timedelta(microseconds=1), self.h.tz):
                if hit.contains(when):
                    return hit, [self.names.get(t, t) for t in w.tools]
        return None

    def _next_window(self, when: datetime, device: Any) -> Any:
        if self.h is None:
            return None
        nxt = self.h.next_windows(when, 1, device)
        return nxt[0] if nxt else None


_NAMES: dict[str, str] = {}


def default_tool_names() -> dict[str, str]:
    """Each tool's name as people say it, from the signature files ("VNC", not "vnc")."""
    if not _NAMES:
        from .signatures import load_dir

        _NAMES.update(display_names({t: s.name for t, s in load_dir().by_tool.items()}))
    return _NAMES


def display_names(names: dict[str, str]) -> dict[str, str]:
    """Signature names without their explanations in brackets."""
    return {t: n.split(" (", 1)[0] for t, n in names.items()}


def _code(code: str, params: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A sentence for the catalogue (netwatch/messages.py): its code and parameters."""
    return {"code": code, "params": {**params, **more}}


def _window(hit: Any) -> dict[str, str]:
    return {"name": hit.name, "start": eve_datetime(hit.start), "end": eve_datetime(hit.end)}


def _is_ip(s: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def decide(events: list[dict[str, Any]], household: Any, now: datetime,
           tool_names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The alerts the events up to ``now`` cause for this household (pure)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    policy = Policy(household, tool_names)
    out: list[dict[str, Any]] = []
    for ev in events:
        ts = ev.get("timestamp")
        if ts is None or parse_time(ts) > now:
            continue
        out += policy.observe(ev)
    return out


__all__ = ["Policy", "decide", "iso_timestamp"]
