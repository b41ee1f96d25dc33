"""Sessions: the tracker's view of a remote-access tool in use on one household device.

Detections say *what* a flow is; a session says what is *happening*: a client idling with its
vendor's ID server, a connection being set up, someone in control of the screen, the end.
A session is one tool on one LAN device; it gathers that tool's flows from that device
(rendezvous, relay, direct session flows) and reads their byte counters on a clock tick.

States (architecture: ``session`` events on each change):

- ``idle``: only the ID/broker (rendezvous) connection, or a relay connection carrying no
  more than keepalive traffic;
- ``connecting``: a direct session flow exists (its handshake was seen), or a relay carries
  more than keepalives (``connect_bps`` over the last ``connect_window_s``), traffic not (yet)
  sustained;
- ``active``: sustained two-way traffic: at least ``active_bps`` bytes per second both ways
  together, with the lighter direction (keyboard and mouse one way, the screen the other)
  at least ``input_bps``, for ``active_ticks`` ticks in a row;
- ``ended``: all its flows have ended.

The thresholds come from the labelled corpus (see docs/sessions.md): idle keepalives run at
70-360 B/s both ways together (AnyDesk's idle relay link, TeamViewer's ID server over 400 s),
live sessions at 2,800-28,000 B/s (RDP, VNC, an AnyDesk relay session). A vendor's relay name
says which server a flow goes to, not that anyone is connecting through it: an installed
client keeps such links open for hours, so a relay counts only by the volume it carries.
Rates count what a flow carried after it joined its session: the handshake that made the
detection is not screen traffic.

Two facts about a session's past are attached when it starts: a *return* (the same tool on the
same device within ``return_window_s``, or any session to the same remote peer), and a
*download* of the tool's installer on the device shortly before (``download_window_s``).

From a box that is only the LAN's DNS server, lookups read from the resolver's log stand for
flows (``Flow.from_log``): the tool's names looked up are an installed client registering
(``idle``); a relay's name looked up just after the tool's installer was downloaded is a
connection being set up (``connecting``, ``on_lookup``). Such a session is ``dns_only``:
with no bytes it never turns ``active``, and it ends when the device stops looking the
names up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .addresses import ip_text, is_lan_address
from .eventlog import iso_timestamp
from .flows import MAX_SESSION_PEERS, Flow
from .recognisers import Detection

CARRIER_ROLES = ("session", "relay", "rendezvous", "unknown")
RELAY_ROLES = ("relay",)
CONNECT_ROLES = ("session", "relay")


@dataclass
class Thresholds:
    """Configurable; the defaults are justified in docs/sessions.md from the corpus."""

    tick_s: float = 5.0  # how often the counters are read (packet time)
    active_bps: float = 2000.0  # both directions together, per second
    connect_bps: float = 1000.0  # a relay above this (both ways) is more than keepalives
    connect_window_s: float = 30.0  # ... averaged over this long
    input_bps: float = 40.0  # the lighter direction, per second
    active_after_s: float = 5.0  # above the thresholds this long (one tick) -> active
    quiet_after_s: float = 30.0  # below them this long -> back to connecting
    report_every_s: float = 600.0  # an active session is reported again this often
    return_window_s: float = 30 * 86400.0  # a session of the same tool within 30 days
    download_window_s: float = 3600.0  # a download of the tool within the hour before
    max_flows: int = 64  # flows remembered per session
    history: int = 256  # ended sessions remembered for returns


def thresholds_from(settings: dict[str, float]) -> Thresholds:
    """Thresholds with a household file's ``sessions:`` settings applied."""
    t = Thresholds()
    units = {"active_bytes_per_s": ("active_bps", 1.0), "input_bytes_per_s": ("input_bps", 1.0),
             "connect_bytes_per_s": ("connect_bps", 1.0),
             "active_after_s": ("active_after_s", 1.0), "quiet_after_s": ("quiet_after_s", 1.0),
             "return_window_days": ("return_window_s", 86400.0),
             "download_window_minutes": ("download_window_s", 60.0)}
    for key, value in settings.items():
        attr, scale = units[key]
        setattr(t, attr, value * scale)
    return t


@dataclass
class Session:
    """A remote-access session on one device, as the tracker sees it: its flows, peers,
    bytes and state."""

    id: int
    tool: str
    device_ip: str
    started: float
    state: str = "idle"
    relayed: bool = False
    direct: bool = False
    flows: list[Flow] = field(default_factory=list)
    peers: set[str] = field(default_factory=set)  # remote addresses and names
    peers_more: int = 0  # peers seen past the tracker's max_peers, not kept
    ended_bytes: list[int] = field(default_factory=lambda: [0, 0])  # of flows no longer held
    # Bytes its flows had carried when they joined (the handshakes): not counted in rates.
    joined_bytes: list[int] = field(default_factory=lambda: [0, 0])
    last_bytes: list[int] = field(default_factory=lambda: [0, 0])  # counted, at last_tick
    # (time, counted bytes both ways) at each tick of the last connect_window_s, oldest first.
    window: deque[tuple[float, int]] = field(default_factory=deque)
    last_seen: float = 0.0  # the last packet of its ended flows
    last_tick: float = 0.0  # when its counters were last read
    hot_since: float | None = None  # start of the current run of busy ticks
    cold_since: float | None = None  # start of the current run of quiet ticks
    last_change: float = 0.0
    active_since: float | None = None
    returning: dict[str, Any] | None = None
    after_download: dict[str, Any] | None = None
    # The flow its events and alerts name (EVE's flow fields): the latest session or relay
    # flow, else its first flow.
    main: Flow | None = None
    dns_only: bool = False  # every flow so far was a lookup in the resolver's log

    def flow_bytes(self, f: Flow) -> tuple[int, int]:
        """One flow's bytes, device -> remote first."""
        if ip_text(f.client_ip) == self.device_ip:
            return f.bytes_toserver, f.bytes_toclient
        return f.bytes_toclient, f.bytes_toserver

    def counted(self) -> tuple[int, int]:
        """Bytes each way since its flows joined it: what rates are computed from."""
        out, inn = self.bytes()
        return out - self.joined_bytes[0], inn - self.joined_bytes[1]

    def bytes(self) -> tuple[int, int]:
        """Bytes each way, device -> remote first, over all its flows so far."""
        out, inn = self.ended_bytes
        for f in self.flows:
            o, i = self.flow_bytes(f)
            out += o
            inn += i
        return out, inn


class SessionTracker:
    """Builds sessions from detections and flow counters; ``emit`` receives each ``session``
    event (a dict without the envelope's device, which the pipeline adds)."""

    def __init__(self, emit: Callable[[dict[str, Any], Session], None],
                 thresholds: Thresholds | None = None, max_peers: int = MAX_SESSION_PEERS):
        self.t = thresholds or Thresholds()
        self.max_peers = max_peers
        self.peers_dropped = 0  # over all sessions, peers not kept (``peers_more``)
        self.emit = emit
        self.open: dict[tuple[str, str], Session] = {}
        self.by_flow: dict[int, Session] = {}
        self.ended: deque[tuple[float, Session]] = deque(maxlen=self.t.history)
        self.downloads: deque[tuple[float, str, str]] = deque(maxlen=self.t.history)
        self._next_id = 1
        self.next_tick = float("inf")
        # Whether an address is one of the household's devices (the pipeline sets it when it
        # has a household): when both ends of a flow are LAN addresses (a VPN, carrier-grade
        # NAT, a lab), the end the household names is the household side.
        self.is_device: Callable[[str], bool] | None = None

    # ------------------------------------------------------------------ input

    def on_detection(self, f: Flow, det: Detection, ts: float) -> None:
        """A flow got a verdict (pipeline._emit_detection)."""
        device = self._device_ip(f)
        if device is None:
            return
        if det.role == "download":
            self.downloads.append((ts, device, det.tool))
            return
        if det.role not in CARRIER_ROLES:
            return
        s, new = self._session_for(f, device, det.tool, ts)
        if s.main is None or det.role in CONNECT_ROLES:
            s.main = f
        if f.from_log:  # an ID server's name looked up: a client registering; no peers seen
            if new:
                self._change(s, s.state, ts)
            return
        self._add_peer(s, ip_text(f.server_ip if ip_text(f.client_ip) == device
                                 else f.client_ip))
        if f.name:
            self._add_peer(s, f.name)
        if f.proxy is not None and f.proxy.host:
            self._add_peer(s, f.proxy.host)  # the proxy's target: who is really there
        state = s.state
        if det.role in RELAY_ROLES:
            s.relayed = True
        if det.role == "session":
            s.direct = True
        if det.role == "session" and state == "idle":
            state = "connecting"  # a relay waits for its volume (``_evaluate``)
        if new or state != s.state:
            self._change(s, state, ts)
        if self.next_tick == float("inf"):
            self.next_tick = ts + self.t.tick_s

    def _add_peer(self, s: Session, peer: str) -> None:
        """A peer for the session's list, while it has room (``max_peers``)."""
        if peer in s.peers:
            return
        if len(s.peers) < self.max_peers:
            s.peers.add(peer)
        else:
            s.peers_more += 1
            self.peers_dropped += 1

    def on_lookup(self, f: Flow, tool: str, ts: float) -> None:
        """A relay's name looked up, read from the resolver's log (``f.from_log``).

        A relay counts by its volume (an installed client keeps a relay link open for
        hours), and the log shows none. So the session is ``connecting`` only when the
        tool's installer was fetched on the device just before (``after_download``): a tool
        just installed and already reaching its relays is the scam's own sequence. Otherwise
        the client is registered: ``idle``. Nothing later can be seen from there; the state
        holds until the device stops looking the tool's names up."""
        device = self._device_ip(f)
        if device is None:
            return
        s, new = self._session_for(f, device, tool, ts)
        state = "connecting" if s.after_download is not None else s.state
        if new or state != s.state:
            self._change(s, state, ts)

    def _session_for(self, f: Flow, device: str, tool: str, ts: float) -> tuple[Session, bool]:
        """The open session of this tool on this device (a new one if none), with ``f``."""
        key = (device, tool)
        s = self.open.get(key)
        if s is None:
            s = Session(self._next_id, tool, device, ts, last_change=ts, dns_only=f.from_log)
            self._next_id += 1
            self.open[key] = s
            self._remember_past(s, f, ts)
            new = True
        else:
            new = False
        if not f.from_log:
            s.dns_only = False
        if f.id not in self.by_flow or self.by_flow[f.id] is not s:
            old = self.by_flow.get(f.id)
            if old is not None and old is not s:
                o, i = old.flow_bytes(f)
                old.ended_bytes[0] += o
                old.ended_bytes[1] += i
                old.flows = [x for x in old.flows if x is not f]
            if len(s.flows) < self.t.max_flows:
                s.flows.append(f)
                self.by_flow[f.id] = s
                o, i = s.flow_bytes(f)
                s.joined_bytes[0] += o
                s.joined_bytes[1] += i
        return s, new

    def on_flow_end(self, f: Flow, ts: float) -> None:
        """A flow was finished (timeout, eviction, end of input) with its last packet at
        ``ts``: a session with no flow left ends then."""
        s = self.by_flow.pop(f.id, None)
        if s is None:
            return
        # ``ts`` is the flow's last packet, whenever its end is noticed (a sweep after a gap
        # of days in a capture, the end of a file): the session's history uses that time.
        if ts > s.last_seen:
            s.last_seen = ts
        if f.verdict is not None and f.verdict.role in CONNECT_ROLES:
            self._evaluate(s, ts)  # a last look at what it carried
        # The finished flow's bytes stay in the session's totals.
        o, i = s.flow_bytes(f)
        s.ended_bytes[0] += o
        s.ended_bytes[1] += i
        s.flows = [x for x in s.flows if x is not f]
        if not s.flows:
            self._end(s, max(s.last_seen, s.last_change))
        elif s.state in ("connecting", "active") and not self._carrying(s):
            # The relay or session link closed; the client stays with its ID server.
            s.hot_since = s.cold_since = None
            self._change(s, "idle", max(ts, s.last_change))

    def tick(self, now: float) -> None:
        """Read the counters of every open session (called every ``tick_s`` of packet time;
        packets, not a timer, drive the clock, so rates use the real time elapsed)."""
        if not self.open:
            self.next_tick = float("inf")
            return
        for s in list(self.open.values()):
            self._evaluate(s, now)
        self.next_tick = now + self.t.tick_s

    def _evaluate(self, s: Session, now: float) -> None:
        since = s.last_tick or s.started
        if now <= since:
            return
        out, inn = s.counted()
        d_out, d_in = out - s.last_bytes[0], inn - s.last_bytes[1]
        s.last_bytes = [out, inn]
        s.last_tick = now
        span = now - since
        rate = (d_out + d_in) / span
        lighter = min(d_out, d_in) / span
        # The relays' volume over the last window: keepalives or a connection in use.
        win = s.window
        if not win:
            win.append((since, 0))
        win.append((now, out + inn))
        while len(win) > 2 and now - win[1][0] >= self.t.connect_window_s:
            win.popleft()
        relay_in_use = (out + inn - win[0][1]) / (now - win[0][0]) >= self.t.connect_bps
        carrying = self._carrying(s)
        if carrying and rate >= self.t.active_bps and lighter >= self.t.input_bps:
            s.cold_since = None
            if s.hot_since is None:
                s.hot_since = since
        else:
            s.hot_since = None
            if s.cold_since is None:
                s.cold_since = since
        if s.state != "active" and s.hot_since is not None and \
                now - s.hot_since >= self.t.active_after_s:
            s.active_since = s.hot_since
            self._change(s, "active", now)
        elif s.state == "active" and s.cold_since is not None and \
                now - s.cold_since >= self.t.quiet_after_s:
            self._change(s, self._settled(s, relay_in_use), now)
        elif s.state == "active" and now - s.last_change >= self.t.report_every_s:
            # Still active: the same state again, so the carers hear "still active, 20 min".
            self._change(s, "active", now)
        elif s.state in ("idle", "connecting") and carrying:
            state = self._settled(s, relay_in_use)
            if state != s.state:
                self._change(s, state, now)

    def _settled(self, s: Session, relay_in_use: bool) -> str:
        """The state of a session that is not active: a direct session flow is a connection
        being made; a relay is one only while it carries more than keepalives."""
        if any(f.verdict is not None and f.verdict.role == "session" for f in s.flows):
            return "connecting"
        if relay_in_use and self._carrying(s):
            return "connecting"
        return "idle"

    @staticmethod
    def _carrying(s: Session) -> bool:
        """A relay or direct session flow is still open."""
        return any(f.verdict is not None and f.verdict.role in CONNECT_ROLES
                   for f in s.flows)

    def finish(self, now: float) -> None:
        """End of input: whatever is still open ends now."""
        for s in list(self.open.values()):
            self._end(s, now)

    # ------------------------------------------------------------------ keeping the past

    def snapshot(self) -> dict[str, Any]:
        """What a restart must not forget: ended sessions (for returns), recent downloads and
        the next session id (ids stay unique across restarts: the outbox merges messages by
        session id). Plain JSON values."""
        return {
            "next_id": self._next_id,
            "ended": [{"ended": at, "id": s.id, "tool": s.tool, "device_ip": s.device_ip,
                       "started": s.started, "peers": sorted(s.peers)}
                      for at, s in self.ended],
            "downloads": [list(d) for d in self.downloads],
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Take back a ``snapshot`` (the sessions open now are kept)."""
        self._next_id = max(self._next_id, int(snap.get("next_id", 1)))
        for e in snap.get("ended", []):
            s = Session(int(e["id"]), str(e["tool"]), str(e["device_ip"]),
                        float(e["started"]), state="ended", peers=set(e.get("peers", [])))
            self.ended.append((float(e["ended"]), s))
        for at, device, tool in snap.get("downloads", []):
            self.downloads.append((float(at), str(device), str(tool)))

    # ------------------------------------------------------------------ helpers

    def _device_ip(self, f: Flow) -> str | None:
        """The household side of a flow: the LAN end (when both are, the household's device,
        else the client)."""
        if is_lan_address(f.client_ip):
            if self.is_device is not None and is_lan_address(f.server_ip) and \
                    not self.is_device(ip_text(f.client_ip)) and \
                    self.is_device(ip_text(f.server_ip)):
                return ip_text(f.server_ip)  # an inbound session to a known device
            return ip_text(f.client_ip)
        if is_lan_address(f.server_ip):
            return ip_text(f.server_ip)
        return None

    def _remember_past(self, s: Session, f: Flow, ts: float) -> None:
        peer = ip_text(f.server_ip if ip_text(f.client_ip) == s.device_ip else f.client_ip)
        for ended_at, old in reversed(self.ended):
            same_tool = old.tool == s.tool and old.device_ip == s.device_ip
            same_peer = not f.from_log and (
                peer in old.peers or (f.name is not None and f.name in old.peers))
            if (same_tool and ts - ended_at <= self.t.return_window_s) or same_peer:
                s.returning = {"previous_session": old.id, "ago_s": round(ts - ended_at, 1),
                               "same_peer": same_peer, "same_device": old.device_ip ==
                               s.device_ip}
                break
        for at, device, tool in reversed(self.downloads):
            if device == s.device_ip and tool == s.tool and 0 <= ts - at <= \
                    self.t.download_window_s:
                s.after_download = {"ago_s": round(ts - at, 1)}
                break

    def _end(self, s: Session, ts: float) -> None:
        self.open.pop((s.device_ip, s.tool), None)
        for f in s.flows:
            self.by_flow.pop(f.id, None)
        self._change(s, "ended", ts)
        self.ended.append((ts, s))
        s.flows = []
        s.main = None

    def _change(self, s: Session, state: str, ts: float) -> None:
        s.state = state
        s.last_change = ts
        self.emit(self.event(s, ts), s)

    def event(self, s: Session, ts: float) -> dict[str, Any]:
        out, inn = s.bytes()
        body: dict[str, Any] = {
            "id": s.id, "tool": s.tool, "state": s.state, "relayed": s.relayed,
            "started": iso_timestamp(s.started), "duration_s": round(ts - s.started, 3),
            "bytes_toserver": out, "bytes_toclient": inn,
            "flows": [f.flow_id() for f in s.flows], "peers": sorted(s.peers),
        }
        if s.peers_more:
            body["peers_more"] = s.peers_more
        if s.active_since is not None:
            body["active_since"] = iso_timestamp(s.active_since)
        if s.returning:
            body["returning"] = s.returning
        if s.after_download:
            body["after_download"] = s.after_download
        if s.dns_only:
            body["dns_only"] = True
        return {"timestamp": iso_timestamp(ts), "event_type": "session",
                "src_ip": s.device_ip, "session": body}
