"""The blocking layer: block, allow, remove, list, reconcile (after Zeek's NetControl).

A block is a rule: one device's addresses (from the household file and the DHCP leases)
against a set of remote peers, until a time. The peers are the session's remote addresses
and, when the block names a tool, every address of that tool's relays and ID servers that
netwatch sees in DNS answers and TLS names while the block lasts (``observe_name``), so the
program cannot simply reconnect through another relay.

Every change is a ``block`` event (``add``, ``remove``, ``expire``, ``refused``,
``failed``) with its reason. The state folder keeps the blocks (``blocks.json``), written
before the backend is touched, so a crash between the two loses nothing: ``reconcile`` at
start puts back the blocks still in force and removes the stale ones. The backend's own
timeouts lift a block even when netwatch is not running.

The layer serves three callers: the pipeline (``act_on_alert`` for the policy's decisions,
``remember_session`` and ``observe_name`` for what it sees), the control endpoint (the
``control.Blocker`` protocol: ``block(request)``, ``allow(request, until)``) and the
``netwatch block`` commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import messages
from ..eventlog import iso_timestamp
from . import safety as safety_mod
from .dryrun import DryRunBackend
from .safety import Safety

log = logging.getLogger("netwatch.block")

STATE_FILE = "blocks.json"
LOCK_FILE = "blocks.lock"
STATE_VERSION = 1
# A block the policy or "Block now" makes lasts this long unless renewed: long enough for
# a scammer to give up, short enough that a mistaken block lifts itself the same day.
DEFAULT_BLOCK_S = 2 * 3600
# The sessions the control endpoint may be asked about (by id): the newest are kept.
MAX_SESSIONS = 256
# Addresses remembered per tool for its relays and ID servers (newest kept).
MAX_NAMES_PER_TOOL = 256
BACKENDS = ("auto", "nftables", "dry-run")


Pair = tuple[str, str]


class Backend(Protocol):
    name: str
    dry_run: bool

    def install(self, force: bool = False) -> None: ...

    def uninstall(self) -> None: ...

    def add(self, pairs: Iterable[Pair], timeout_s: float) -> None: ...

    def remove(self, pairs: Iterable[Pair]) -> None: ...

    def elements(self) -> set[Pair]: ...

    def cut(self, pairs: Iterable[Pair]) -> int: ...


@dataclass(slots=True)
class Block:
    """One rule in force: ``addresses`` (the device's) against ``peers`` until ``expires``."""

    id: str
    device: str | None
    addresses: list[str]
    peers: list[str]
    expires: float
    created: float
    reason: str
    tool: str | None = None
    session_id: int | None = None
    source: str = "cli"  # policy | control | cli

    @property
    def target(self) -> str:
        who = self.device or ", ".join(self.addresses)
        return f"{who} against {self.tool}" if self.tool else who

    def pairs(self, peers: Iterable[str] | None = None) -> list[Pair]:
        """Device address . peer, same address family only."""
        out = []
        for a in self.addresses:
            va = ipaddress.ip_address(a).version
            for p in self.peers if peers is None else peers:
                if ipaddress.ip_address(p).version == va:
                    out.append((a, p))
        return out


@dataclass(slots=True)
class Allow:
    """"Allow for 2 h": the policy does not block this session again until ``until``."""

    session_id: int
    device: str | None
    until: float
    by: str


@dataclass(slots=True)
class State:
    blocks: list[Block] = field(default_factory=list)
    allows: list[Allow] = field(default_factory=list)
    names: dict[str, dict[str, float]] = field(default_factory=dict)  # tool -> addr -> seen
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> what it was


class BlockLayer:
    """Blocks, allows and their state; the only way netwatch changes the network."""

    def __init__(self, state_dir: str | os.PathLike[str], backend: Backend | None = None, *,
                 household: Any = None, safety: Safety | None = None,
                 clock: Callable[[], float] = time.time,
                 on_event: Callable[[dict[str, Any]], None] | None = None):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / STATE_FILE
        self.backend: Backend = backend if backend is not None else DryRunBackend(clock)
        self.household = household
        self.safety = safety if safety is not None else safety_mod.from_system(household)
        self.clock = clock
        self.on_event = on_event

    @property
    def dry_run(self) -> bool:
        return self.backend.dry_run

    def set_household(self, household: Any) -> None:
        """A new household file (the daemon's SIGHUP): its devices' addresses and its
        carers and never_block list in the safety rules (the system's read again)."""
        self.household = household
        self.safety = safety_mod.from_system(household)

    # ------------------------------------------------------------------ state

    @contextlib.contextmanager
    def _state(self) -> Iterator[State]:
        """The state, locked against other netwatch processes, saved when the block ends
        if it changed."""
        with open(self.dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            st = self._load()
            before = self._dump(st)
            yield st
            if self._dump(st) != before:
                self._save(st)

    def _load(self) -> State:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as e:
            log.error("block: %s is unreadable (%s); starting from no blocks", self.path, e)
            return State()
        try:
            return State(blocks=[Block(**b) for b in raw.get("blocks", [])],
                         allows=[Allow(**a) for a in raw.get("allows", [])],
                         names=dict(raw.get("names", {})),
                         sessions=dict(raw.get("sessions", {})))
        except TypeError as e:
            log.error("block: %s has an unknown layout (%s); starting from no blocks",
                      self.path, e)
            return State()

    @staticmethod
    def _dump(st: State) -> str:
        return json.dumps({"version": STATE_VERSION, "blocks": [asdict(b) for b in st.blocks],
                           "allows": [asdict(a) for a in st.allows], "names": st.names,
                           "sessions": st.sessions}, separators=(",", ":"))

    def _save(self, st: State) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".blocks.", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self._dump(st))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------ events

    def _event(self, action: str, b: Block, reason: str, now: float,
               **more: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"id": b.id, "action": action, "target": b.target,
                                "peers": list(b.peers), "expires": iso_timestamp(b.expires),
                                "reason": reason, "backend": self.backend.name}
        if b.device:
            body["device"] = b.device
        if b.tool:
            body["tool"] = b.tool
        if b.session_id is not None:
            body["session_id"] = b.session_id
        body.update(more)
        ev: dict[str, Any] = {"timestamp": iso_timestamp(now), "event_type": "block",
                              "block": body}
        if b.addresses:
            ev["src_ip"] = b.addresses[0]
        if self.on_event is not None:
            self.on_event(ev)
        return ev

    # ------------------------------------------------------------------ devices

    def device_addresses(self, device: str | None, ip: str | None = None) -> list[str]:
        """A device's addresses: the household's, its DHCP leases', and ``ip``."""
        out: list[str] = [ip] if ip else []
        h = self.household
        d = None
        if h is not None and device is not None:
            d = next((x for x in h.devices if x.name.lower() == device.lower()), None)
        if d is None and h is not None and ip is not None:
            d = h.device_for(ip)
        if d is not None:
            out += d.ips
            leases = getattr(h, "_leases", None)
            if leases is not None:
                leases.refresh()
                out += [ls.ip for ls in leases.by_ip.values()
                        if ls.mac in d.macs or (ls.hostname and ls.hostname in d.hostnames)]
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------ block

    def block(self, request: Any) -> dict[str, Any]:
        """``control.Blocker``: "Block now" from a carer's link."""
        from ..control import block_id

        now = self.clock()
        with self._state() as st:
            s = st.sessions.get(str(request.session_id), {})
        peers = [p for p in s.get("peers", []) if _is_ip(p)]
        return self.add(device=request.device or s.get("device"), ip=s.get("device_ip"),
                        tool=s.get("tool"), peers=peers, duration_s=DEFAULT_BLOCK_S,
                        reason=f"Block now, asked by {request.carer} (alert "
                               f"{request.alert_id})", session_id=request.session_id,
                        source="control", block_id=block_id(request), now=now)

    def add(self, *, device: str | None, ip: str | None = None, tool: str | None = None,
            peers: Iterable[str] = (), duration_s: float = DEFAULT_BLOCK_S, reason: str,
            session_id: int | None = None, source: str = "cli", block_id: str | None = None,
            now: float | None = None) -> dict[str, Any]:
        """Block ``device`` (name, or its address ``ip``) against ``peers`` and, with
        ``tool``, every known address of the tool's servers, for ``duration_s``."""
        now = self.clock() if now is None else now
        addresses = self.device_addresses(device, ip)
        with self._state() as st:
            self._expire(st, now)
            remote = list(dict.fromkeys(list(peers) + (
                sorted(st.names.get(tool, {})) if tool else [])))
            bid = block_id or "blk-" + hashlib.sha256(
                f"{device}|{addresses}|{tool}|{remote}|{now}".encode()).hexdigest()[:10]
            b = Block(bid, device, addresses, remote, now + duration_s, now, reason, tool,
                      session_id, source)
            refusal = self.safety.check(device, addresses, remote)
            if refusal is None and not remote and not tool:
                refusal = "no remote side to block against (no peer address known)"
            if refusal is not None:
                return self._event("refused", b, f"{reason}; refused: {refusal}", now)
            if session_id is not None and any(a.session_id == session_id and a.until > now
                                               and source == "policy" for a in st.allows):
                return self._event("refused", b, f"{reason}; refused: a carer allowed "
                                   f"session {session_id}", now)
            st.blocks = [x for x in st.blocks if x.id != bid] + [b]
        # Written first (above), then acted on: a crash here is put right by reconcile.
        try:
            self.backend.install()
            self.backend.add(b.pairs(), duration_s)
            cut = self.backend.cut(b.pairs())
        except (OSError, BackendError) as e:
            with self._state() as st:
                st.blocks = [x for x in st.blocks if x.id != bid]
            return self._event("failed", b, f"{reason}; failed: {e}", now)
        more = "" if remote else f" (no address of {tool}'s servers known yet)"
        return self._event("add", b, reason + more, now, connections_cut=cut)

    # ------------------------------------------------------------------ unblock

    def allow(self, request: Any, until: float) -> dict[str, Any]:
        """``control.Blocker``: "Allow for 2 h" lifts the session's blocks and keeps the
        policy from blocking it again until ``until``."""
        now = self.clock()
        with self._state() as st:
            st.allows = [a for a in st.allows if a.until > now]
            st.allows.append(Allow(request.session_id, request.device, until, request.carer))
            lifted = [b for b in st.blocks if b.session_id == request.session_id]
            st.blocks = [b for b in st.blocks if b.session_id != request.session_id]
        why = f"allowed by {request.carer} until {iso_timestamp(until)}"
        events = [self._lift(b, "remove", why, now, allowed_until=iso_timestamp(until))
                  for b in lifted]
        if events:
            return events[-1]
        from ..control import block_id

        stub = Block(block_id(request), request.device, [], [], until, now, why,
                     session_id=request.session_id, source="control")
        return self._event("remove", stub, why + " (no block was in force)", now,
                           allowed_until=iso_timestamp(until))

    def remove(self, block_id: str, reason: str = "removed by hand",
               now: float | None = None) -> dict[str, Any] | None:
        """Lift one block by its id; None when there is no such block."""
        now = self.clock() if now is None else now
        with self._state() as st:
            b = next((x for x in st.blocks if x.id == block_id), None)
            st.blocks = [x for x in st.blocks if x.id != block_id]
        return None if b is None else self._lift(b, "remove", reason, now)

    def _lift(self, b: Block, action: str, reason: str, now: float,
              **more: Any) -> dict[str, Any]:
        with self._state() as st:
            still = {p for x in st.blocks for p in x.pairs()}
        try:
            self.backend.remove([p for p in b.pairs() if p not in still])
        except (OSError, BackendError) as e:
            return self._event("failed", b, f"{reason}; could not lift it: {e} (the kernel "
                               f"lifts it at {iso_timestamp(b.expires)})", now, **more)
        return self._event(action, b, reason, now, **more)

    def _expire(self, st: State, now: float) -> list[Block]:
        gone = [b for b in st.blocks if b.expires <= now]
        st.blocks = [b for b in st.blocks if b.expires > now]
        st.allows = [a for a in st.allows if a.until > now]
        return gone

    # ------------------------------------------------------------------ list, reconcile

    def list_blocks(self, now: float | None = None) -> list[Block]:
        now = self.clock() if now is None else now
        with self._state() as st:
            return [b for b in st.blocks if b.expires > now]

    def allowed_until(self, session_id: int, now: float) -> float | None:
        with self._state() as st:
            ends = [a.until for a in st.allows if a.session_id == session_id and a.until > now]
        return max(ends) if ends else None

    def reconcile(self, now: float | None = None) -> list[dict[str, Any]]:
        """At start: blocks still in force are put back in the backend (with the time they
        have left), expired ones leave the state, and backend elements no block explains
        are removed."""
        now = self.clock() if now is None else now
        with self._state() as st:
            gone = self._expire(st, now)
            live = list(st.blocks)
        events = [self._event("expire", b, "expired", now) for b in gone]
        try:
            self.backend.install(force=True)
            present = self.backend.elements()
            wanted: dict[Pair, Block] = {p: b for b in live for p in b.pairs()}
            stale = present - wanted.keys()
            if stale:
                self.backend.remove(stale)
            for b in live:
                missing = [p for p in b.pairs() if p not in present]
                if missing:
                    self.backend.add(missing, b.expires - now)
                    events.append(self._event("add", b, "put back after a restart: "
                                              + b.reason, now))
        except (OSError, BackendError) as e:
            for b in live:
                events.append(self._event("failed", b, f"could not put back after a restart: "
                                          f"{e}", now))
        return events

    def expire(self, now: float | None = None) -> list[dict[str, Any]]:
        """The blocks whose time is up leave the state (the kernel has already lifted them)."""
        now = self.clock() if now is None else now
        with self._state() as st:
            gone = self._expire(st, now)
        return [self._event("expire", b, "expired", now) for b in gone]

    # ------------------------------------------------------------------ what the pipeline sees

    def remember_session(self, ev: dict[str, Any]) -> None:
        """A ``session`` event: kept so "Block now" knows the session's device and peers."""
        body = ev.get("session") or {}
        sid = body.get("id")
        if sid is None:
            return
        dev = ev.get("device") or {}
        entry = {"tool": body.get("tool"), "device_ip": ev.get("src_ip"),
                 "device": dev.get("name"), "peers": sorted(body.get("peers", []))}
        with self._state() as st:
            if st.sessions.get(str(sid)) == entry:
                return
            st.sessions.pop(str(sid), None)
            st.sessions[str(sid)] = entry
            while len(st.sessions) > MAX_SESSIONS:
                st.sessions.pop(next(iter(st.sessions)))

    def observe_name(self, tool: str, address: str, now: float) -> list[dict[str, Any]]:
        """An address of ``tool``'s relays or ID servers (a DNS answer, a TLS name): kept,
        and added to the tool's blocks in force, so the program cannot reconnect elsewhere."""
        if not _is_ip(address):
            return []
        grown: list[Block] = []
        with self._state() as st:
            seen = st.names.setdefault(tool, {})
            if address not in seen:  # first seen: the oldest are forgotten first
                seen[address] = now
            while len(seen) > MAX_NAMES_PER_TOOL:
                seen.pop(next(iter(seen)))
            for b in st.blocks:
                if b.tool != tool or address in b.peers or b.expires <= now:
                    continue
                if self.safety.check(b.device, b.addresses, [*b.peers, address]) is not None:
                    continue
                b.peers.append(address)
                grown.append(b)
        events = []
        for b in grown:
            try:
                self.backend.add(b.pairs([address]), b.expires - now)
                self.backend.cut(b.pairs([address]))
            except (OSError, BackendError) as e:
                events.append(self._event("failed", b, f"new address {address} of {tool}: "
                                          f"{e}", now))
                continue
            events.append(self._event("add", b, f"new address {address} of {tool}'s servers",
                                      now))
        return events

    def act_on_alert(self, alert_ev: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """Carry out the policy's decision in an alert (``alert.block``) and write its
        outcome into the alert (``alert.block.outcome`` and a reason the carers read)."""
        alert = alert_ev.get("alert") or {}
        decision = alert.get("block")
        if not decision or decision.get("outcome"):
            return []
        sid = alert.get("session_id")
        if sid is not None and self.allowed_until(sid, now) is not None:
            # A carer allowed this session (through another process: the control endpoint)
            # after the policy last heard of it: no block, and the alert does not claim one.
            del alert["block"]
            codes = alert.get("reason_codes", [])
            for i in reversed(range(len(codes))):
                if codes[i].get("code", "").startswith("blocking"):
                    del codes[i]
                    if i < len(alert.get("reasons", [])):
                        del alert["reasons"][i]
            alert["actions"] = ["block"] if alert.get("notify", True) else []
            return []
        ev = self.add(device=alert.get("device"), ip=alert_ev.get("src_ip"),
                      tool=decision.get("tool"), peers=decision.get("peers", []),
                      duration_s=DEFAULT_BLOCK_S, reason=decision.get("why", "policy"),
                      session_id=alert.get("session_id"), source="policy", now=now)
        outcome = ev["block"]["action"]
        if outcome == "add" and self.dry_run:
            outcome = "dry-run"
        decision["outcome"] = outcome
        decision["block_id"] = ev["block"]["id"]
        if outcome == "add":
            alert["action"] = "blocked"  # Suricata's word for a flow the rule stopped
        code = {"add": "block_done", "dry-run": "block_dry_run", "refused": "block_refused",
                "failed": "block_failed"}[outcome]
        reason = {"code": code, "params": {"tool": decision.get("tool_name", "")}}
        alert.setdefault("reason_codes", []).append(reason)
        alert.setdefault("reasons", []).append(messages.reason("en", reason, None))
        return [ev]


class BackendError(Exception):
    """The backend refused or could not run a command (its message says why)."""


def _is_ip(text: Any) -> bool:
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def nft_usable() -> bool:
    """Whether ``nft`` exists here and netwatch may use it (it can list the ruleset)."""
    if shutil.which("nft") is None:
        return False
    try:
        p = subprocess.run(["nft", "list", "tables"], capture_output=True, timeout=5,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


def make_backend(kind: str = "auto", clock: Callable[[], float] = time.time) -> Backend:
    """``nftables``, ``dry-run``, or ``auto``: nftables where ``nft`` exists and may be
    used, else the dry run."""
    if kind not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {kind!r}")
    if kind == "nftables" or (kind == "auto" and nft_usable()):
        from .nftables import NftablesBackend

        return NftablesBackend()
    return DryRunBackend(clock)
