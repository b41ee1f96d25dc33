"""Flows: a bounded table keyed on the connection, and the first bytes of each direction.

A flow knows who opened it (the SYN sender; for UDP the first sender; for a capture that
starts mid-connection, the side on the higher port) and keeps the first payload bytes of
each direction in order, TCP segments reassembled, until its recognisers have a verdict.
After that it only counts. Bounds are named here with the reasoning behind each.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from .eventlog import community_id, flow_id

if TYPE_CHECKING:
    from .recognisers import Detection, Recogniser
    from .recognisers.proxy import Opening
    from .signatures import NameMatch

# Deep inspection stops after this many payload packets (both directions together). A TLS 1.2
# handshake with a certificate chain fits in ~10 (ClientHello, 3-4 segments of ServerHello +
# Certificate, client Certificate); 24 leaves room for retransmissions and small first
# records. Every recogniser that gives a verdict on the shared corpus does so within 12.
INSPECT_PACKETS = 24
# Bytes kept per direction while inspecting: a certificate chain is rarely over 8 KiB.
INSPECT_BYTES = 16384
# Out-of-order segments held per direction while waiting for a gap to fill.
MAX_PENDING_SEGMENTS = 8

# Idle timeouts in seconds, after Suricata's flow-timeouts defaults (suricata.yaml): a TCP
# connection that never completed its handshake, an established one, one closed by FIN/RST,
# and UDP.
TIMEOUT_TCP_NEW = 60.0
TIMEOUT_TCP_ESTABLISHED = 600.0
TIMEOUT_TCP_CLOSED = 60.0
TIMEOUT_UDP = 300.0
# A lookup over UDP (port 53) is one query and its answer: when it names no tool, its flow
# ends this long after its last packet, as Zeek times out a DNS request after 10 s
# (dns_session_timeout). Most flows of a home network are such lookups; kept 300 s they
# would fill most of the table. A lookup of a tool's name keeps TIMEOUT_UDP.
TIMEOUT_DNS = 10.0
# How often (in packet time) idle flows are looked for. Checking every flow costs O(flows),
# so it is done rarely; a flow lives at most this much past its timeout.
SWEEP_INTERVAL = 30.0
# Flow table bound. The 1M-packet home mix (12 devices, 45 min) holds 1,073 flows at once
# at most with these timeouts (3,643 when lookups were kept 300 s); 8,192 is over twice the
# latter. A decided flow costs ~0.6 KiB of RSS (object, counters, both table entries, its
# place among the live flows: netwatch bench's "flow table full", floods.table_full), more
# with a detection's evidence: the full table stays under 20 MiB, and a flood's replay
# under floods.RSS_CAP_MIB. When full, the least protected flow ends (see
# Pipeline._evict_idle): in a busier household, an idle flow with no detection, which loses
# only the rest of its byte counts.
MAX_FLOWS = 8192
# Flows still being inspected (half-open, or no verdict yet) are a pool of their own within
# the table, bounded apart: a SYN scan or a burst of new connections evicts its own flows,
# oldest first, never a decided or busy one. The 1M-packet home mix has about 40 flows
# undecided at once (most decide or give up within their first 2-4 payload packets); 2,048
# is 50 times that. A flood's flows, one-sided, keep under ~5 KiB of payload each
# (ONE_SIDED_BYTES, once as a stream and once as packets): the pool stays near 10 MiB.
MAX_INSPECTING = 2048
# Flows looked at to choose one to evict from the table when it is full: the least recently
# active of these goes, and the others more recent than it move to the back. A sample, not
# a sorted table, so that counting a packet never reorders anything.
EVICT_SAMPLE = 16
# A session's flow that has carried this much (both ways) is in use, not a handshake: it is
# evicted last. A handshake, certificates included, is a few KiB; a flood would have to send
# this much on each of its flows to look the same.
BUSY_BYTES = 16384
# A flow where one side alone has spoken and no recogniser is left stops inspecting once
# that side has sent this many bytes: the other side's first byte could bring recognisers
# back (a server's answer to a garbled request), but a client that sent 2 KiB unanswered
# is bulk data, not a handshake. (Every handshake of the corpus answers within 1.5 KiB.)
ONE_SIDED_BYTES = 2048
# Findings kept for the summary: those of remote-access verdicts (above a scan) up to
# MAX_FINDINGS, scans up to MAX_SCAN_FINDINGS (a port scan makes one per port probed); past
# these they are counted (Counters.findings_dropped), the events are still written.
MAX_FINDINGS = 4096
MAX_SCAN_FINDINGS = 256
# Remote peers (addresses and names) kept per session: the session event lists them, so it
# must stay small; past this they are counted in the event (``peers_more``).
MAX_SESSION_PEERS = 64



@dataclass
class Limits:
    """The bounds of the pipeline's tables (defaults above, with their reasons)."""

    max_flows: int = MAX_FLOWS
    max_inspecting: int = MAX_INSPECTING
    max_findings: int = MAX_FINDINGS
    max_scan_findings: int = MAX_SCAN_FINDINGS
    max_session_peers: int = MAX_SESSION_PEERS


T = TypeVar("T")
SEQ_MOD = 1 << 32
SEQ_HALF = 1 << 31


_PORTS = struct.Struct("!HH").pack
_PORT = struct.Struct("!H").unpack_from


def flow_key(cip: bytes, sip: bytes, cport: int, sport: int) -> bytes:
    """Addresses then ports, client first, as they sit in an IP packet from the client (the
    fast path slices this from the frame). Addresses of two families (a resolver's log may
    pair an IPv6 device with an IPv4 resolver) are told apart by a last byte, the client
    address's length: such a key is in no table."""
    key = cip + sip + _PORTS(cport, sport)
    return key if len(cip) == len(sip) else key + bytes((len(cip),))


def _client_len(key: bytes) -> int:
    n = len(key)
    return (n - 4) >> 1 if n == 12 or n == 36 else key[-1]


def _server_len(key: bytes, client: int) -> int:
    n = len(key)
    return client if n == 12 or n == 36 else n - 5 - client


NO_TOOLS: frozenset[str] = frozenset()
_DONE: Any = ((), ())  # what a decided flow reads of its inspection state
_NO_CANDIDATES: Any = ()


class Inspection:
    """What a flow holds while it is inspected: its first bytes and packets each way, the
    reassembly of each direction, the recognisers still interested. A decided flow drops it
    (``Flow.stop_inspecting``)."""

    __slots__ = ("streams", "segments", "next_seq", "pending", "candidates", "narrowed_on",
                 "opening_read")

    def __init__(self) -> None:
        self.streams: list[bytearray] = [bytearray(), bytearray()]
        self.segments: list[list[bytes]] = [[], []]
        self.next_seq: list[int | None] = [None, None]
        self.pending: list[dict[int, bytes]] = [{}, {}]
        self.candidates: list[Recogniser] = []
        # Direction whose first byte alone chose the candidates (None: not narrowed yet, or
        # narrowed on both sides).
        self.narrowed_on: int | None = None
        self.opening_read = False  # whether the first bytes were checked for a proxy's


class _Decided(Inspection):
    """The one inspection state every decided flow shares: empty, and never written."""

    __slots__ = ()

    def __init__(self) -> None:
        for name, value in (("streams", _DONE), ("segments", _DONE), ("next_seq", _DONE),
                            ("pending", _DONE), ("candidates", _NO_CANDIDATES),
                            ("narrowed_on", None), ("opening_read", True)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a decided flow keeps no inspection state ({name})")


DECIDED = _Decided()


# What a flow has seen of its connection, and two marks of its own, as bits of Flow.seen.
SAW_SYN = 1  # the client's SYN
SAW_SYN_ACK = 2  # the server's SYN-ACK
SAW_RST = 4
SAW_FIN = 8  # a FIN, either way
CLOSING = 16  # a RST, or a FIN each way (counted as a second FIN)
SNI_SEEN = 32  # the household context has looked at the TLS server name
FROM_LOG = 64  # not a connection: see Flow.from_log


class _Bit:
    """A flag of the flow kept as one bit of ``Flow.seen``."""

    __slots__ = ("mask",)

    def __init__(self, mask: int):
        self.mask = mask

    def __get__(self, flow: Flow, owner: type | None = None) -> bool:
        return bool(flow.seen & self.mask)

    def __set__(self, flow: Flow, value: bool) -> None:
        flow.seen = flow.seen | self.mask if value else flow.seen & ~self.mask


class Detail:
    """What only some flows carry: a verdict, a tool's name rule for the peer, a proxy's
    opening, events written. A flow without any has none (``Flow.detail`` is None)."""

    __slots__ = ("verdict", "name_rule", "proxy", "events", "eve_id")

    def __init__(self) -> None:
        self.verdict: Detection | None = None
        self.name_rule: NameMatch | None = None
        # A proxy's or gateway's opening at the start of the flow (recognisers.proxy): what
        # the recognisers see begins after it, and its target is the flow's real peer.
        self.proxy: Opening | None = None
        self.events = 0  # remote_access events written
        self.eve_id = 0  # the event log's flow_id, worked out at the flow's first event


class _Detailed(Generic[T]):
    """A field of ``Flow.detail``, read through the flow: its default while the flow has
    no detail, which is made when a field is first set to something else."""

    __slots__ = ("field", "default")

    def __init__(self, field: str, default: T):
        self.field = field
        self.default = default

    def __get__(self, flow: Flow, owner: type | None = None) -> T:
        d = flow.detail
        return self.default if d is None else cast(T, getattr(d, self.field))

    def __set__(self, flow: Flow, value: T) -> None:
        d = flow.detail
        if d is None:
            if value == self.default:
                return
            d = flow.detail = Detail()
        setattr(d, self.field, value)


class Flow:
    __slots__ = (
        "id", "proto", "first_ts", "last_ts", "pkts_toserver", "pkts_toclient",
        "bytes_toserver", "bytes_toclient", "payload_pkts", "seen",
        "inspecting", "insp", "name", "key", "dns_tools", "sni", "detail",
    )

    client_syn = _Bit(SAW_SYN)
    server_synack = _Bit(SAW_SYN_ACK)
    rst = _Bit(SAW_RST)
    closing = _Bit(CLOSING)
    sni_seen = _Bit(SNI_SEEN)
    # Not a connection: the lookups of one device read from the LAN resolver's log
    # (Pipeline.dns_lookup), so it carries no bytes and its far end is the resolver.
    from_log = _Bit(FROM_LOG)
    verdict: _Detailed[Detection | None] = _Detailed("verdict", None)
    name_rule: _Detailed[NameMatch | None] = _Detailed("name_rule", None)
    proxy: _Detailed[Opening | None] = _Detailed("proxy", None)
    events: _Detailed[int] = _Detailed("events", 0)
    eve_id: _Detailed[int] = _Detailed("eve_id", 0)

    def __init__(self, fid: int, proto: int, cip: bytes, cport: int, sip: bytes, sport: int,
                 ts: float, inspect: bool = True):
        self.id = fid
        self.proto = proto
        # The flow table's key, client side first (Pipeline.tcp, .udp): the flow's addresses
        # and ports are read from it, not kept twice.
        self.key = flow_key(cip, sip, cport, sport)
        self.first_ts = ts
        self.last_ts = ts
        # Packets and bytes (on the wire) each way, as attributes of their own rather than
        # lists: the hot loops count with two attribute updates, and a flow carries no list
        # objects (``pkts`` and ``bytes`` give them by direction, 0 to the server).
        self.pkts_toserver = self.pkts_toclient = 0
        self.bytes_toserver = self.bytes_toclient = 0
        self.payload_pkts = 0
        self.seen = 0
        # A flow that nothing will inspect (a lookup over UDP) is decided from the start.
        self.inspecting = inspect
        self.insp: Inspection = Inspection() if inspect else DECIDED
        self.name: str | None = None
        # A DNS flow's kinds of lookup already reported (NO_TOOLS to begin with); None for
        # a flow that is not DNS.
        self.dns_tools: frozenset[str] | None = None
        # The TLS server name, when the TLS recogniser read one, until the household looks.
        self.sni: str | None = None
        self.detail: Detail | None = None

    # The inspection state, read through the flow (recognisers see ``streams`` and
    # ``segments``; the pipeline narrows ``candidates``).
    @property
    def streams(self) -> list[bytearray]:
        return self.insp.streams

    @property
    def segments(self) -> list[list[bytes]]:
        return self.insp.segments

    @property
    def next_seq(self) -> list[int | None]:
        return self.insp.next_seq

    @property
    def candidates(self) -> list[Recogniser]:
        return self.insp.candidates

    @candidates.setter
    def candidates(self, value: list[Recogniser]) -> None:
        self.insp.candidates = value

    @property
    def narrowed_on(self) -> int | None:
        return self.insp.narrowed_on

    @narrowed_on.setter
    def narrowed_on(self, value: int | None) -> None:
        self.insp.narrowed_on = value

    @property
    def opening_read(self) -> bool:
        return self.insp.opening_read

    @opening_read.setter
    def opening_read(self, value: bool) -> None:
        self.insp.opening_read = value

    @property
    def client_ip(self) -> bytes:
        return self.key[:_client_len(self.key)]

    @property
    def server_ip(self) -> bytes:
        k = self.key
        n = _client_len(k)
        return k[n:n + _server_len(k, n)]

    @property
    def client_port(self) -> int:
        k = self.key
        n = _client_len(k)
        return _PORT(k, n + _server_len(k, n))[0]

    @property
    def server_port(self) -> int:
        k = self.key
        n = _client_len(k)
        return _PORT(k, n + _server_len(k, n) + 2)[0]

    @property
    def rkey(self) -> bytes:
        """The key of the server's packets (addresses and ports the other way round)."""
        k = self.key
        size = len(k)
        if size == 12 or size == 36:  # a table's key: one family, no length byte
            n = (size - 4) >> 1
            m = n + n
            return k[n:m] + k[:n] + k[m + 2:] + k[m:m + 2]
        n = _client_len(k)
        m = n + _server_len(k, n)
        return k[n:m] + k[:n] + k[m + 2:m + 4] + k[m:m + 2]

    def flow_id(self) -> int:
        """The flow's ``flow_id`` in the event log (stable across runs; ``id`` is this run's
        counter, for tables)."""
        if not self.eve_id:
            self.eve_id = flow_id(self.proto, self.client_ip, self.client_port,
                                  self.server_ip, self.server_port, self.first_ts)
        return self.eve_id

    def community_id(self, seed: int = 0) -> str:
        """The flow's Community ID (v1), worked out when an event needs it."""
        return community_id(self.proto, self.client_ip, self.client_port, self.server_ip,
                            self.server_port, seed)

    def count(self, d: int, size: int, ts: float) -> None:
        """One packet of ``size`` bytes (on the wire) at ``ts``, to the server (``d`` 0) or
        to the client (1). (The replay's hot loops write the same inline.)"""
        if d:
            self.pkts_toclient += 1
            self.bytes_toclient += size
        else:
            self.pkts_toserver += 1
            self.bytes_toserver += size
        self.last_ts = ts

    def saw_close(self, flags: int) -> None:
        """A FIN or RST went by (TCP flags): the connection is closing after a RST or a FIN
        each way."""
        if flags & 0x04:
            self.seen |= SAW_RST | CLOSING
        elif flags & 0x01:
            self.seen |= CLOSING if self.seen & SAW_FIN else SAW_FIN

    def stop_inspecting(self) -> None:
        """Drop the buffers: from now on the flow is only counted."""
        self.inspecting = False
        # One shared empty state, not a new one: a decided flow should cost as little as it
        # can.
        self.insp = DECIDED

    def add_tcp_payload(self, d: int, seq: int, payload: bytes) -> bool:
        """Put a segment's bytes in order into direction ``d``; True if bytes were added."""
        insp = self.insp
        nxt = insp.next_seq[d]
        if nxt is None:
            nxt = seq  # capture began mid-connection: start where we are
        added = False
        diff = (seq - nxt) % SEQ_MOD
        if diff == 0:
            self._append(d, payload)
            nxt = (nxt + len(payload)) % SEQ_MOD
            added = True
        elif diff < SEQ_HALF:
            pend = insp.pending[d]
            if len(pend) < MAX_PENDING_SEGMENTS:
                pend[seq] = payload
            insp.next_seq[d] = nxt
            return False
        else:
            # Starts before what we have: a retransmission, maybe carrying new bytes.
            overlap = (nxt - seq) % SEQ_MOD
            if overlap < len(payload):
                self._append(d, payload[overlap:])
                nxt = (nxt + len(payload) - overlap) % SEQ_MOD
                added = True
        pend = insp.pending[d]
        while pend:
            progressed = False
            for s in list(pend):
                if (s - nxt) % SEQ_MOD >= SEQ_HALF or s == nxt:  # at or before the gap
                    seg = pend.pop(s)
                    overlap = (nxt - s) % SEQ_MOD
                    if overlap < len(seg):
                        self._append(d, seg[overlap:])
                        nxt = (nxt + len(seg) - overlap) % SEQ_MOD
                        added = True
                    progressed = True
            if not progressed:
                break
        insp.next_seq[d] = nxt
        return added

    def _append(self, d: int, data: bytes) -> None:
        insp = self.insp
        s = insp.streams[d]
        room = INSPECT_BYTES - len(s)
        if room > 0:
            s += data[:room]
        # The first packets too are kept up to INSPECT_BYTES a direction in all (recognisers
        # read the first few; 24 full-size segments would be 24 times the stream).
        segs = insp.segments[d]
        room = INSPECT_BYTES - sum(map(len, segs))
        if room > 0:
            segs.append(data[:room])

    def skip_opening(self, skip: tuple[int, int]) -> None:
        """Forget the first ``skip[d]`` bytes of each direction (a proxy's opening): the
        streams and the first packets then start where the tunnelled payload does."""
        insp = self.insp
        for d, n in enumerate(skip):
            if not n:
                continue
            del insp.streams[d][:n]
            kept: list[bytes] = []
            for seg in insp.segments[d]:
                if n >= len(seg):
                    n -= len(seg)
                    continue
                kept.append(seg[n:])
                n = 0
            insp.segments[d] = kept

    def add_datagram(self, d: int, payload: bytes) -> None:
        self._append(d, payload)

    # Last in the class: from here on, ``bytes`` in the class body is the property.
    @property
    def pkts(self) -> Pair:
        """Packets to the server and to the client (``pkts[d]``, readable and writable)."""
        return Pair(self, "pkts_toserver", "pkts_toclient")

    @pkts.setter
    def pkts(self, value: Iterable[int]) -> None:
        self.pkts_toserver, self.pkts_toclient = value

    @property
    def bytes(self) -> Pair:
        """Bytes on the wire to the server and to the client (``bytes[d]``)."""
        return Pair(self, "bytes_toserver", "bytes_toclient")

    @bytes.setter
    def bytes(self, value: Iterable[int]) -> None:
        self.bytes_toserver, self.bytes_toclient = value


class Pair:
    """Two of a flow's counters by direction (0: to the server, 1: to the client), read and
    written as ``pair[d]``, as a list of two would be."""

    __slots__ = ("flow", "names")

    def __init__(self, flow: Flow, *names: str):
        self.flow = flow
        self.names = names

    def __getitem__(self, d: int) -> int:
        return int(getattr(self.flow, self.names[d]))

    def __setitem__(self, d: int, value: int) -> None:
        setattr(self.flow, self.names[d], value)

    def __iter__(self) -> Iterator[int]:
        return iter((self[0], self[1]))

    def __len__(self) -> int:
        return 2

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, Pair)) else False

    def __repr__(self) -> str:
        return repr(list(self))
