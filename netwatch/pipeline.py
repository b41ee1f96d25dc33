"""The pipeline: source -> decode -> flows -> recognisers -> detections -> event log.

``netwatch replay`` feeds capture files through it; time is the packets' own, so a replay
is deterministic. The per-packet path for a flow that is already decided is: decode, find
the flow, count. Everything else happens only for a flow's first packets.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from . import decode as dec
from .addresses import ip_bytes, ip_text, is_lan_address
from .eventlog import COMMUNITY_ID_SEED, EventLog, iso_timestamp
from .flows import (
    BUSY_BYTES,
    EVICT_SAMPLE,
    INSPECT_BYTES,
    INSPECT_PACKETS,
    NO_TOOLS,
    ONE_SIDED_BYTES,
    SWEEP_INTERVAL,
    TIMEOUT_DNS,
    TIMEOUT_TCP_CLOSED,
    TIMEOUT_TCP_ESTABLISHED,
    TIMEOUT_TCP_NEW,
    TIMEOUT_UDP,
    Flow,
    Limits,
)
from .names import DnsError, NameCache, parse_response
from .recognisers import GIVE_UP, Detection, Evidence, Recogniser, load_all
from .recognisers.proxy import NOT_PROXIED, Opening, parse_opening
from .sessions import SessionTracker, Thresholds, thresholds_from
from .signatures import DETECTING_ROLES, SignatureSet
from .sources.capture import (
    EPB_FIELDS,
    EPB_OVERHEAD,
    MAX_BLOCK,
    MAX_RECORD,
    MAX_TIMESTAMP,
    PcapFile,
    PcapngFile,
    ReadStats,
    open_source,
)

if TYPE_CHECKING:  # a replay needs neither source's module, nor the policy without a household
    from .sources.afpacket import Paths, Walk
    from .sources.conntrack import Conn
    from .sources.dnslog import DnsLookup

DNS_PORT = 53
SERVER_ROLES = ("relay", "rendezvous")
TCP, UDP = dec.PROTO_TCP, dec.PROTO_UDP
PROTO_NAME = {TCP: "TCP", UDP: "UDP"}
# Ports below this are services: when a capture starts mid-connection, the side on such a
# port is taken as the server (IANA's system ports, RFC 6335 §6).
SYSTEM_PORTS = 1024
# A bank looked up again by the same device within this time is not reported again.
BANKING_REPEAT_S = 600.0
# The resolver's address when its log is read on the box itself (the log does not say it).
LOCAL_RESOLVER = "127.0.0.1"
# A resolver's log gives no TTL: an address it answered is kept as long as a UDP flow idles
# (flows.TIMEOUT_UDP), long enough for the connection that follows the lookup.
LOG_ANSWER_TTL = int(TIMEOUT_UDP)
# What a name's role makes of a lookup seen only in the resolver's log: an installer's
# host is a download, an ID server a client registering; other names are a ``dns`` lookup.
LOOKUP_ROLES = ("download", "rendezvous")
# A lookup of these names may be a connection being set up (sessions.on_lookup decides).
CONNECT_NAME_ROLES = ("relay", "session")
_PORTS = struct.Struct("!HH").pack
_UNPORTS = struct.Struct("!HH").unpack_from
_SEQ = struct.Struct("!I").unpack_from
MIN_TIMEOUT = min(TIMEOUT_TCP_NEW, TIMEOUT_TCP_ESTABLISHED, TIMEOUT_TCP_CLOSED, TIMEOUT_UDP,
                  TIMEOUT_DNS)


class FrameFields:
    """One unpack for a record's header and the frame fields the fast path reads.

    After the header (``record``: a struct format starting with its byte order, ``<`` or
    ``>``, e.g. ``"<IIII"``),
    an Ethernet frame's type (offset 12), IPv4 version and header length (14), flags and
    fragment offset (20), protocol (23), the flow key (26-37: addresses and ports), byte 44
    (UDP: the DNS flags' QR bit) and the TCP flags (47): 48 bytes of the frame. The
    two-byte fields come in the header's byte order, so the values they are compared with
    are given in that order too (``ipv4``, ``frag``)."""

    FIELDS = "12xHB5xHxB2x12s6xBxxB"

    def __init__(self, record: str) -> None:
        self.struct = struct.Struct(record + self.FIELDS)
        little = record[0] == "<"
        self.ipv4 = 0x0008 if little else 0x0800
        self.ipv6 = 0xDD86 if little else 0x86DD
        # the fragment offset, 13 bits (the MF flag is not tested: a first fragment's key
        # is whole)
        self.frag = 0xFF1F if little else 0x1FFF


# Link types whose frames start with the IP header (decode_frame reads the IP version).
RAW_IP_LINKTYPES = frozenset((dec.LINKTYPE_RAW, dec.LINKTYPE_RAW_DLT12, dec.LINKTYPE_RAW_DLT14,
                              dec.LINKTYPE_IPV4, dec.LINKTYPE_IPV6))
# An Ethernet header for each IP version. Put before a raw IP packet (the nflog source's, a
# tun device's, a raw-IP capture's), it lets the packet take the Ethernet frames' fast path
# and lookup path: the 14-byte copy costs far less than decoding the packet in full, and
# decode_frame reads the framed packet as it reads the bare one.
_ETHERNET_HEADER = {4: bytes(12) + b"\x08\x00", 6: bytes(12) + b"\x86\xdd"}

# Both keys of a flow (its client's packets' and its server's) lead to it; a packet's key
# equal to ``Flow.key`` is its client's.
FlowTable = dict[bytes, Flow]
# A frame from a live source: (time, link type, the captured bytes, length on the wire).
LiveFrame = tuple[float, int, bytes, int]


def fast_ipv4(tcp: FlowTable, udp: FlowTable
              ) -> Callable[[int, bytes, int, int, int, int, float], bool]:
    """The per-packet work for a decided flow, on fields already read from an Ethernet
    frame with an IPv4 header of 20 bytes (no options, not a later fragment): shared by
    every hot loop (``FrameFields`` reads the fields with a record's header; ``fast_path``
    from a frame).

    ``count4(proto, key, flags, b44, n, size, ts)``: ``key`` is the frame's bytes 26-37
    (addresses and ports), ``flags`` its byte 47 (TCP flags), ``b44`` its byte 44 (for
    UDP, the DNS flags' first byte), ``n`` the captured length. When the flow needs
    nothing more the packet is counted (``size`` bytes, the length on the wire) and True
    comes back; False sends the frame to the full path: SYNs, DNS answers, flows still
    being inspected, anything else."""
    tcp_get, udp_get = tcp.get, udp.get

    def count4(p: int, key: bytes, flags: int, b44: int, n: int, size: int,
               ts: float) -> bool:
        if p == TCP:
            if n < 54 or flags & 0x02:  # SYNs take the full path
                return False
            f = tcp_get(key)
            if f is None:
                return False
            if f.inspecting or f.dns_tools is not None:
                return False
            if flags & 0x05:
                f.saw_close(flags & 0x05)
        elif p == UDP:
            f = udp_get(key)
            if f is None:
                return False
            # Of a DNS flow only the queries (QR bit clear): they carry nothing netwatch reads.
            if f.inspecting or f.dns_tools is not None and (n < 45 or b44 & 0x80):
                return False
        else:
            return False
        if key == f.key:  # the client's packet (Flow.count, inline: this is the hot loop)
            f.pkts_toserver += 1
            f.bytes_toserver += size
        else:
            f.pkts_toclient += 1
            f.bytes_toclient += size
        f.last_ts = ts
        return True

    return count4


def fast_ipv6(tcp: FlowTable, udp: FlowTable) -> Callable[[bytes, int, int, int, float], bool]:
    """The counting rules for an Ethernet frame ``buf[o:o + n]`` carrying IPv6 with TCP or
    UDP right after its fixed header: the flow key is 36 bytes of the frame.
    ``count6(buf, o, n, size, ts)``; True: the packet was counted. The hot loops call it
    for a frame whose Ethernet type they read as IPv6, ``fast_path`` for any frame."""

    tcp_get, udp_get = tcp.get, udp.get

    def count6(buf: bytes, o: int, n: int, size: int, ts: float) -> bool:
        if n < 62:
            return False
        p = buf[o + 20]
        fin_rst = 0
        if p == TCP:
            if n < 74 or buf[o + 67] & 0x02:
                return False
            key = buf[o + 22:o + 58]
            f = tcp_get(key)
            fin_rst = buf[o + 67] & 0x05
        elif p == UDP:
            key = buf[o + 22:o + 58]
            f = udp_get(key)
        else:
            return False
        if f is None:
            return False
        if f.inspecting or f.dns_tools is not None:
            return False
        if fin_rst:
            f.saw_close(fin_rst)
        f.count(0 if key == f.key else 1, size, ts)
        return True

    return count6


Lookup4 = Callable[[bytes, int, int, int, float, bytes], bool]


def fast_path(tcp: FlowTable, udp: FlowTable, lookup4: Lookup4 | None = None
              ) -> Callable[[bytes, int, int, int, float], bool]:
    """``fast_ipv4`` for a frame in place, and its IPv6 counterpart.

    ``count(buf, o, n, size, ts)`` looks at the Ethernet frame ``buf[o:o + n]``: for IPv4
    with a 20-byte header (no options, not a later fragment) it reads the fields
    ``fast_ipv4`` needs, and a UDP datagram it does not count goes to ``lookup4``
    (``Pipeline._lookup4``, for DNS) when given; for IPv6 with TCP or UDP right after its
    fixed header the flow key is 36 bytes of the frame, and the same rules apply. True: the
    packet was counted (or handled by ``lookup4``)."""
    count4 = fast_ipv4(tcp, udp)
    count6 = fast_ipv6(tcp, udp)
    ff = FrameFields(">")  # the frame's fields alone, without a record header
    fields, ipv4, frag_mask = ff.struct.unpack_from, ff.ipv4, ff.frag

    def count(buf: bytes, o: int, n: int, size: int, ts: float) -> bool:
        if n >= 48:
            eth, vihl, frag, p, key, b44, flags = fields(buf, o)
            if eth == ipv4 and vihl == 0x45 and not frag & frag_mask:
                if count4(p, key, flags, b44, n, size, ts):
                    return True
                return p == UDP and lookup4 is not None and lookup4(buf, o, n, size, ts, key)
        elif n < 42:
            return False
        elif (buf[o + 12] == 8 and buf[o + 13] == 0 and buf[o + 14] == 0x45
                and not (buf[o + 20] & 0x1F or buf[o + 21])):
            # A short IPv4 frame (UDP with under 6 bytes of payload).
            return count4(buf[o + 23], buf[o + 26:o + 38], 0,
                          buf[o + 44] if n >= 45 else 0x80, n, size, ts)
        return buf[o + 12] == 0x86 and buf[o + 13] == 0xDD and count6(buf, o, n, size, ts)

    return count


@dataclass
class Counters:
    """What a run counted: packets, flows, DNS answers, events and files (the ``stats``
    event and the summary)."""

    packets: int = 0
    bytes: int = 0  # on the wire (original lengths)
    captured_bytes: int = 0  # what the capture kept (less with a snap length)
    ip_packets: int = 0
    malformed: int = 0
    fragments: int = 0
    non_ip: int = 0
    other_l4: int = 0
    unsupported_link: int = 0
    flows: int = 0
    flows_evicted: int = 0  # all flows finished early to stay within the bounds
    flows_evicted_undecided: int = 0  # ... of them, from the pool of flows being inspected
    flows_evicted_protected: int = 0  # ... of them, flows with a session or a detection
    inspect_stopped_one_sided: int = 0  # flows no longer inspected: one side, no recogniser
    findings_dropped: int = 0  # findings not kept for the summary (the events were written)
    session_peers_dropped: int = 0  # session peers not listed (the event's peers_more)
    max_concurrent_flows: int = 0
    dns_answers: int = 0
    dns_malformed: int = 0
    events: int = 0
    files: int = 0
    files_unreadable: int = 0
    files_truncated: int = 0


@dataclass
class Finding:
    """The latest verdict on a flow, for the human summary."""

    flow_id: int
    first_seen: float
    ts: float
    proto: str
    client: str
    client_port: int
    server: str
    server_port: int
    detection: Detection
    pcap: str | None
    name: str | None = None
    bytes_toserver: int = 0
    bytes_toclient: int = 0
    eve_flow_id: int = 0  # the flow's flow_id in the event log (flow_id is this run's counter)


class _FirstByte(dict[int, list[Recogniser]]):
    """The recognisers of ``proto`` that could claim a flow whose first payload byte is
    the key (``Recogniser.could_start``), each list made when first asked for."""

    def __init__(self, proto: int, recognisers: list[Recogniser]):
        super().__init__()
        self.proto, self.recognisers = proto, recognisers

    def __missing__(self, first: int) -> list[Recogniser]:
        found = self[first] = [r for r in self.recognisers if r.could_start(self.proto, first)]
        return found


class StageTimes:
    """Time spent per stage, for the metrics: the daemon adds each batch's time
    (``add("batch", seconds)``); the pipeline, when given one, times the slow path's parts
    (recognisers, DNS answers, events and policy). A clock read costs ~50 ns and happens only
    on those paths, never for a packet that is only counted."""

    __slots__ = ("seconds", "calls")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1


@dataclass
class Result:
    """What a replay ends with: the counters, the latest verdict per flow and the alerts."""

    counters: Counters
    findings: list[Finding] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    tz: Any = None  # the household's time zone, for people reading the summary


class Pipeline:
    def __init__(self, signatures: SignatureSet, log: EventLog,
                 recognisers: Iterable[str] | None = None, household: Any = None,
                 thresholds: Thresholds | None = None, limits: Limits | None = None):
        self.sigs = signatures
        self.limits = limits = limits or Limits()
        self.log = log
        # The household (netwatch.household.Household) names devices, and with it the
        # policy turns sessions into alerts; without it sessions are still tracked.
        self.household = household
        if thresholds is None and household is not None and household.sessions:
            thresholds = thresholds_from(household.sessions)
        self.sessions = SessionTracker(self._session_event, thresholds,
                                       max_peers=limits.max_session_peers)
        self.sessions.is_device = self._is_device
        if household is not None:
            from .policy import Policy, display_names
        self.policy = (Policy(household, display_names(
            {t: s.name for t, s in signatures.by_tool.items()}))
            if household is not None else None)
        self.banking_seen: dict[tuple[str, str], float] = {}
        self._sweep_due = 0.0
        self._load_recognisers(recognisers)
        # Flow tables, one per transport, keyed by the raw bytes src ip + dst ip + src port +
        # dst port as they sit in an IPv4 packet (12 bytes; 36 for IPv6); each flow is in its
        # table twice, once per direction, with the direction (0 client->server, 1 back).
        self.tcp: FlowTable = {}
        self.udp: FlowTable = {}
        self.tables = {TCP: self.tcp, UDP: self.udp}
        self._fast = fast_path(self.tcp, self.udp, self._lookup4)
        self._count4 = fast_ipv4(self.tcp, self.udp)
        self._count6 = fast_ipv6(self.tcp, self.udp)
        self._paths: Paths | None = None  # made by the first feed_walk
        # Every live flow once, oldest first (save the flows eviction passed over, moved to
        # the back): what sweeps, eviction and the end of a file walk. Ordered dicts pop and
        # reorder at their front in constant time, where a plain dict's emptied front slows
        # every look at its first item.
        self.live: OrderedDict[int, Flow] = OrderedDict()
        # The flows still being inspected (or that were at their last sweep), oldest first:
        # the pool a flood of new connections evicts from (flows.MAX_INSPECTING).
        self.undecided: OrderedDict[int, Flow] = OrderedDict()
        self.scan_findings = 0  # of self.findings, those of scans
        # The pseudo-flows of lookups read from a resolver's log, by device, resolver, tool.
        self.lookup_flows: dict[tuple[bytes, bytes, str], Flow] = {}
        self.names = NameCache()
        self.c = Counters()
        self.findings: dict[int, Finding] = {}
        self.alerts: list[dict[str, Any]] = []
        # Called with each alert event after it is in the log (the notifier queues it).
        self.on_alert: list[Any] = []
        # The blocking layer (netwatch.block.BlockLayer) that carries out the policy's block
        # decisions and learns the tools' server addresses; None: decide, never act (replay).
        self.blocker: Any = None
        self.pcap_name: str | None = None
        # What a live source tells the pipeline: its name (the metrics' ``source`` label),
        # the interface it reads (EVE's ``in_iface`` on every event), and itself, for its
        # kernel counters (``stats()``, see netwatch.metrics).
        self.source_name = "pcap"
        self.in_iface: str | None = None
        self.source: Any = None
        self.community_seed = COMMUNITY_ID_SEED
        # For the metrics, counted per event (never per packet).
        self.detections: dict[tuple[str, str], int] = {}  # (tool, role) -> remote_access events
        self.alert_levels: dict[str, int] = {}  # alert level -> alerts
        self.last_packet_ts = 0.0  # packet time of the last packet fed
        self.stage_times: StageTimes | None = None  # set by the daemon to time the slow path
        self._next_id = 1
        self._next_sweep = 0.0
        self.now = 0.0

    def _load_recognisers(self, names: Iterable[str] | None) -> None:
        registry = load_all()
        wanted = list(names) if names is not None else list(registry)
        self.recognisers: list[Recogniser] = [registry[n](self.sigs) for n in wanted]
        self.by_proto = {p: [r for r in self.recognisers if p in r.protos] for p in (TCP, UDP)}
        # The recognisers that could claim a flow, by its first payload byte (each byte's
        # list made when a flow first starts with it: the 512 of them took 2 ms at start).
        self.by_first = {p: _FirstByte(p, rs) for p, rs in self.by_proto.items()}

    # ------------------------------------------------------------------ sources

    def feed_file(self, path: str, stats: ReadStats) -> None:
        """Replay one capture file (raises CaptureError before any packet if unreadable)."""
        src = open_source(path, stats)
        self.pcap_name = path
        self.c.files += 1
        if isinstance(src, PcapFile):
            self.feed_pcap(src)
        else:
            self.feed_pcapng(src)
        # Each file is its own stretch of time: its flows end with it.
        self.end_flows()
        self._next_sweep = self._sweep_due = 0.0
        if stats.truncated:
            self.c.files_truncated += 1
        self.c.malformed += stats.bad_timestamps

    def feed(self, frames: Iterable[LiveFrame]) -> None:
        """Frames one by one, ``(ts, linktype, frame, wire_len)``: a live source's batch,
        any other iterator of frames. The same fast path as ``feed_pcap`` (a decided flow's
        Ethernet frame is counted in place, a raw IP packet once framed: ``_fast_raw``), the
        full path for the rest. Volumes are the wire's (``wire_len``), whatever the capture
        kept of the frame."""
        c = self.c
        fast = self._fast
        fast_raw = self._fast_raw
        frame_ = self._frame
        ethernet = dec.LINKTYPE_ETHERNET
        raw_ip = RAW_IP_LINKTYPES
        next_sweep = self._next_sweep
        packets = nbytes = captured = counted = 0
        last = self.now
        for ts, linktype, frame, wire in frames:
            packets += 1
            nbytes += wire
            captured += len(frame)
            if ts < next_sweep and (fast(frame, 0, len(frame), wire, ts) if linktype == ethernet
                                    else linktype in raw_ip and fast_raw(frame, wire, ts)):
                counted += 1
            else:
                frame_(ts, linktype, frame, wire)
                next_sweep = self._next_sweep
            if ts > last:
                last = ts
        if packets:
            self.last_packet_ts = ts
        self.now = last
        if packets:
            self.last_packet_ts = last
        c.packets += packets
        c.bytes += nbytes
        c.captured_bytes += captured
        c.ip_packets += counted

    def feed_walk(self, walk: Walk) -> int:
        """A live source's own hot loop over its buffers in place (the af_packet ring,
        netwatch.sources.afpacket ``walk``). ``walk(fast, full, until)`` hands each Ethernet
        frame ``buf[o:o + n]`` whose time is before ``until`` to ``fast(buf, o, n, wire, ts)``
        (``fast_path``, as ``feed_pcap`` does), and every other frame, sliced out, to
        ``full(ts, linktype, frame, wire)``, which returns the new ``until``. It returns
        (frames, wire bytes, captured bytes, frames counted by ``fast``, last frame's time),
        added to the counters as a hot loop's are. Returns the frames walked."""
        if self._paths is None:
            # What a ring walk reads from a frame's fields. (A replay never imports the
            # live source's module.)
            from .sources.afpacket import Paths
            self._paths = Paths(self._count4, self._lookup4, self._full4_walk, self._count6)
        packets, nbytes, captured, counted, ts = walk(self._fast, self._full,
                                                      self._next_sweep, self._paths)
        self._counted(packets, nbytes, captured, counted, ts)
        return packets

    def _full4_walk(self, buf: bytes, o: int, n: int, size: int, ts: float, proto: int,
                    key: bytes, flags: int) -> float:
        """``_full4``, then the time until which the fast path may be used (``feed_walk``)."""
        self._full4(buf, o, n, size, ts, proto, key, flags)
        return self._next_sweep

    def _full(self, ts: float, linktype: int, frame: bytes, wire: int) -> float:
        """``_frame``, then the time until which the fast path may be used (``feed_walk``)."""
        self._frame(ts, linktype, frame, wire)
        return self._next_sweep

    def advance(self, now: float) -> None:
        """Time passes without packets (a live source's clock): the timed work that packets
        drive in replay (idle-flow sweeps, the sessions' ticks, help windows opening and
        closing) runs on ``now`` too, so flows and sessions end and reminders go out on a
        quiet network. Time never goes back."""
        if now <= self.now:
            return
        self.now = now
        if now >= self._next_sweep:
            self._clock(now)

    def _is_device(self, ip: str) -> bool:
        """Whether the household (the one in force now) names the device at ``ip``."""
        return self.household is not None and self.household.device_for(ip) is not None

    def reload(self, signatures: SignatureSet | None = None, household: Any = None) -> None:
        """New signatures or a new household (SIGHUP) while flows and sessions go on.

        Flows being inspected keep the recognisers they were given; new flows get the new
        ones. The policy keeps what it has said about each session."""
        from .policy import Policy, display_names

        if signatures is not None:
            self.sigs = signatures
            self._load_recognisers([r.name for r in self.recognisers])
            if self.policy is not None:
                self.policy.names = display_names(
                    {t: s.name for t, s in signatures.by_tool.items()})
        if household is not None:
            self.household = household
            if household.sessions:
                self.sessions.t = thresholds_from(household.sessions)
            if self.policy is None:
                self.policy = Policy(household, display_names(
                    {t: s.name for t, s in self.sigs.by_tool.items()}))
            else:
                self.policy.h = household

    def feed_pcap(self, src: PcapFile) -> None:
        """The hot loop: walk a classic pcap file's records in place.

        Most packets belong to flows that are already decided. One unpack per record reads
        its header and the fields of the frame the fast path needs (``FrameFields``); for
        an Ethernet frame with an IPv4 header of 20 bytes (no options, not a later
        fragment) carrying TCP or UDP, the flow key comes out of that unpack, and when the
        flow needs nothing more the packet is counted (``fast_ipv4``); a lookup takes the
        lookup path (``_lookup4``), any other such frame the full path from those fields
        (``_full4``). The rest goes to ``_rest``: IPv6 to its counting rules, a frame near a
        chunk's end to ``fast_path``, and what they do not count to the full path."""
        unpack_rec = src.record.unpack_from
        ff = FrameFields(src.record.format)
        wide, wide_size = ff.struct.unpack_from, ff.struct.size
        ethernet = src.linktype == dec.LINKTYPE_ETHERNET
        ipv4, ipv6 = (ff.ipv4, ff.ipv6) if ethernet else (-1, -1)
        frag_mask = ff.frag
        scale, linktype = src.scale, src.linktype
        rest = self._rest
        count4 = self._count4
        lookup4 = self._lookup4
        full4 = self._full4
        buf, pos, n = b"", 0, 0
        packets = nbytes = captured = counted = 0
        max_record = MAX_RECORD
        ts = 0.0
        next_sweep = self._next_sweep
        try:
            while True:
                if n - pos < wide_size:
                    if n - pos < 16:
                        more = src.refill(buf, pos, 16)
                        if more is None:
                            break
                        buf, pos, n = more, 0, len(more)
                    if n - pos < wide_size:
                        sec, frac, incl, wire = unpack_rec(buf, pos)
                        eth = 0
                    else:
                        sec, frac, incl, wire, eth, vihl, frag, p, key, b44, flags = wide(
                            buf, pos)
                else:
                    sec, frac, incl, wire, eth, vihl, frag, p, key, b44, flags = wide(buf, pos)
                o = pos + 16
                end = o + incl
                if end > n:
                    if incl > MAX_RECORD:
                        src.implausible(incl)
                        break
                    more = src.refill(buf, pos, 16 + incl)
                    if more is None:
                        break
                    buf, pos, n = more, 0, len(more)
                    continue
                pos = end
                packets += 1
                # Volumes are the wire's (the original length), not what the snap length
                # kept; a corrupt original length falls back to the captured one.
                if not incl <= wire <= max_record:
                    wire = incl
                nbytes += wire
                captured += incl
                ts = scale * frac + sec  # float first: no int-to-float detour
                if eth == ipv4 and vihl == 0x45 and not frag & frag_mask and incl >= 42:
                    if ts < next_sweep and (count4(p, key, flags, b44, incl, wire, ts)
                                            or p == UDP
                                            and lookup4(buf, o, incl, wire, ts, key)):
                        counted += 1
                        continue
                    full4(buf, o, incl, wire, ts, p, key, flags)
                elif rest(buf, o, incl, wire, ts, linktype, eth == ipv6, next_sweep):
                    counted += 1
                    continue
                next_sweep = self._next_sweep
        finally:
            src.close()
            src.st.packets += packets
            self._counted(packets, nbytes, captured, counted, ts)

    def _rest(self, buf: bytes, o: int, n: int, wire: int, ts: float, linktype: int,
              ipv6: bool, until: float) -> bool:
        """A hot loop's frame ``buf[o:o + n]`` that is not a plain IPv4 one (``ipv6``: its
        Ethernet type read as IPv6): counted by the IPv6 rules or ``fast_path`` while
        ``ts`` is before ``until`` (a raw IP packet by ``_fast_raw``; True), or taken by the
        full path (False)."""
        if ts < until:
            if linktype == dec.LINKTYPE_ETHERNET:
                if (self._count6(buf, o, n, wire, ts) if ipv6
                        else self._fast(buf, o, n, wire, ts)):
                    return True
            elif linktype in RAW_IP_LINKTYPES and self._fast_raw(buf[o:o + n], wire, ts):
                return True
        self._frame(ts, linktype, buf[o:o + n], wire)
        return False

    def _fast_raw(self, frame: bytes, wire: int, ts: float) -> bool:
        """``fast_path`` for a raw IP packet (no link header), framed as Ethernet for it
        (``_ETHERNET_HEADER``); True: counted, or handled as a lookup."""
        head = _ETHERNET_HEADER.get(frame[0] >> 4) if frame else None
        return head is not None and self._fast(head + frame, 0, len(frame) + 14, wire, ts)

    def _counted(self, packets: int, nbytes: int, captured: int, counted: int,
                 ts: float) -> None:
        """What a hot loop counted locally, added to the counters at its end."""
        c = self.c
        if packets:
            self.last_packet_ts = ts
            if ts > self.now:
                self.now = ts  # the clock is the last packet's, whichever path it took
        c.packets += packets
        c.bytes += nbytes
        c.captured_bytes += captured
        c.ip_packets += counted

    def feed_pcapng(self, src: PcapngFile) -> None:
        """The hot loop for pcapng: walk the Enhanced Packet Blocks of each chunk in place,
        as ``feed_pcap`` walks classic records (one unpack per packet, the same fast path).
        Every other block (section and interface headers, simple and obsolete packet
        blocks, statistics) goes to ``src.walk``, which keeps the section's byte order and
        interfaces; its frames take the full path."""
        frame_ = self._frame
        ethernet = dec.LINKTYPE_ETHERNET
        max_record = MAX_RECORD
        buf, pos, n = b"", 0, 0
        packets = nbytes = captured = counted = 0
        ts = 0.0
        next_sweep = self._next_sweep
        unpack_epb = src.epb.unpack_from
        # The packet block's fields and the frame's in one unpack (see feed_pcap).
        ff = FrameFields(src.epb.format)
        wide, wide_size = ff.struct.unpack_from, ff.struct.size
        ipv4, ipv6, frag_mask = ff.ipv4, ff.ipv6, ff.frag
        rest = self._rest
        count4 = self._count4
        lookup4 = self._lookup4
        full4 = self._full4
        ifaces = src.ifaces
        nif = len(ifaces)
        fields, overhead = EPB_FIELDS, EPB_OVERHEAD
        try:
            while True:
                if n - pos < fields:
                    more = src.refill(buf, pos, fields)
                    if more is None:
                        break
                    buf, pos, n = more, 0, len(more)
                    if n < fields:
                        # The file's last bytes: too few for a packet block's fields.
                        for fts, lt, frame, wire in src.walk(buf, 0, n):
                            packets, nbytes, captured = packets + 1, nbytes + wire, \
                                captured + len(frame)
                            ts = fts
                            frame_(fts, lt, frame, wire)
                        src.ended(buf, src.left)
                        break
                if n - pos >= wide_size:
                    (btype, blen, iface, hi, lo, incl, wire, eth, vihl, frag, p, key, b44,
                     flags) = wide(buf, pos)
                else:
                    btype, blen, iface, hi, lo, incl, wire = unpack_epb(buf, pos)
                    eth = 0
                if btype != 6 or blen & 3 or incl + overhead > blen:
                    # Any other block, one at a time through the reader's own walk.
                    for fts, lt, frame, fwire in src.walk(buf, pos, n, 1):
                        packets, nbytes, captured = packets + 1, nbytes + fwire, \
                            captured + len(frame)
                        ts = fts
                        frame_(fts, lt, frame, fwire)
                        next_sweep = self._next_sweep
                    if src.broken:
                        break
                    if src.left == pos:  # not wholly in this chunk
                        more = src.refill(buf, pos, src.need)
                        if more is None or len(more) < src.need:
                            src.ended(more or b"", 0)
                            break
                        buf, pos, n = more, 0, len(more)
                        continue
                    pos = src.left
                    # A section header may change the byte order and starts a new list of
                    # interfaces.
                    unpack_epb = src.epb.unpack_from
                    ff = FrameFields(src.epb.format)
                    wide, ipv4, ipv6, frag_mask = (ff.struct.unpack_from, ff.ipv4, ff.ipv6,
                                                   ff.frag)
                    ifaces = src.ifaces
                    nif = len(ifaces)
                    continue
                end = pos + blen
                if end > n:
                    if blen > MAX_BLOCK:
                        src.cut(f"block of impossible length {blen}; rest of file skipped")
                        break
                    more = src.refill(buf, pos, blen)
                    if more is None or len(more) < blen:
                        src.ended(more or b"", 0)
                        break
                    buf, pos, n = more, 0, len(more)
                    continue
                o = pos + fields
                pos = end
                if iface >= nif:
                    continue  # a packet of an interface never described: not readable
                lt, unit = ifaces[iface]
                # The 64-bit count of units as a float without a big integer: hi * 2**32
                # is exact, and the sum is rounded once, as int-to-float rounds it.
                t = (4294967296.0 * hi + lo) * unit
                if t > MAX_TIMESTAMP:  # past the year 9999: a corrupt record (malformed)
                    src.st.bad_timestamps += 1
                    continue
                ts = t
                packets += 1
                if not incl <= wire <= max_record:
                    wire = incl
                nbytes += wire
                captured += incl
                if (lt == ethernet and eth == ipv4 and vihl == 0x45 and not frag & frag_mask
                        and incl >= 42):
                    if ts < next_sweep and (count4(p, key, flags, b44, incl, wire, ts)
                                            or p == UDP
                                            and lookup4(buf, o, incl, wire, ts, key)):
                        counted += 1
                        continue
                    full4(buf, o, incl, wire, ts, p, key, flags)
                elif rest(buf, o, incl, wire, ts, lt, eth == ipv6, next_sweep):
                    counted += 1
                    continue
                next_sweep = self._next_sweep
        finally:
            src.close()
            src.st.packets += packets
            self._counted(packets, nbytes, captured, counted, ts)

    def _frame(self, ts: float, linktype: int, frame: bytes, wire: int) -> None:
        """The full path for one frame: decode, find the flow, count (``wire`` bytes, its
        length on the wire) or inspect."""
        p = dec.decode_frame(linktype, frame)
        if type(p) is int:
            self._count_undecoded(p)
            return
        proto, sip, dip, sport, dport, flags, seq, payload = p  # type: ignore[misc]
        self._decoded(ts, proto, sip, dip, sport, dport, flags, seq, payload, wire,
                      sip + dip + _PORTS(sport, dport))

    def _full4(self, buf: bytes, o: int, n: int, size: int, ts: float, proto: int,
               key: bytes, flags: int) -> None:
        """The full path for an Ethernet frame ``buf[o:o + n]`` with a plain IPv4 header
        (20 bytes, not a later fragment) whose fields a hot loop read (``FrameFields``):
        the transport header read from them, not decoded again (``decode_frame``'s rules:
        the IP length ends the payload, a snap length cut it short). Any other frame, or
        one ``decode_frame`` would count as malformed, goes to ``_frame``."""
        total = buf[o + 16] << 8 | buf[o + 17]
        end = o + 14 + total
        if total < 20:
            end = o  # malformed: _frame counts it
        elif end > o + n:
            end = o + n
        if proto == TCP:
            doff = (buf[o + 46] >> 4) * 4 if end - o >= 54 else 0
            if doff >= 20 and o + 34 + doff <= end:
                sport, dport = _UNPORTS(key, 8)
                self._decoded(ts, TCP, key[:4], key[4:8], sport, dport, flags,
                              _SEQ(buf, o + 38)[0], buf[o + 34 + doff:end], size, key)
                return
        elif proto == UDP and end - o >= 42:
            ulen = buf[o + 38] << 8 | buf[o + 39]
            uend = o + 34 + ulen if 8 <= ulen and o + 34 + ulen <= end else end
            sport, dport = _UNPORTS(key, 8)
            self._decoded(ts, UDP, key[:4], key[4:8], sport, dport, 0, 0, buf[o + 42:uend],
                          size, key)
            return
        self._frame(ts, dec.LINKTYPE_ETHERNET, buf[o:o + n], size)

    def _decoded(self, ts: float, proto: int, sip: bytes, dip: bytes, sport: int, dport: int,
                 flags: int, seq: int, payload: bytes, wire: int, key: bytes) -> None:
        """A decoded packet (``key``: addresses and ports as in the packet): find the flow,
        count (``wire`` bytes) or inspect."""
        self.c.ip_packets += 1
        f = self.tables[proto].get(key)
        d = 0
        if f is not None:
            d = 0 if key == f.key else 1
            if (not f.inspecting and f.dns_tools is None and not flags & 0x07
                    and ts < self._next_sweep):
                f.count(d, wire, ts)
                return
        self._packet(ts, proto, sip, dip, sport, dport, flags, seq, payload, wire, f, d)

    def _lookup4(self, buf: bytes, o: int, n: int, size: int, ts: float, key: bytes) -> bool:
        """A DNS message over UDP in an Ethernet frame ``buf[o:o + n]`` with a plain IPv4
        header (20 bytes, not a later fragment), ``key`` its bytes 26-37: the full path's
        work for it (``_packet``) without decoding the frame again. A lookup is 4.5 % of a
        household's packets but, one new flow per lookup, was a quarter of a replay's time
        on the full path. Only answers are read; a query carries nothing netwatch reads.
        False (nothing done) for any other datagram, a datagram the capture cut short, or
        one whose lengths disagree: the full path decodes those.

        Like a fast-path count, it never brings the timed work forward (``_next_sweep``),
        so the hot loops need not read it again: a lookup's detection has the role ``dns``,
        which opens no session (sessions.CARRIER_ROLES)."""
        sport, dport = _UNPORTS(key, 8)
        if sport != DNS_PORT and dport != DNS_PORT:
            return False
        total = buf[o + 16] << 8 | buf[o + 17]
        if total < 28 or total + 14 > n or (buf[o + 38] << 8 | buf[o + 39]) != total - 20:
            return False
        f = self.udp.get(key)
        if f is None:
            # A new lookup (``_new_flow`` for it, with its rule for who is the server).
            if sport < SYSTEM_PORTS <= dport:
                f = Flow(self._next_id, UDP, key[4:8], dport, key[:4], sport, ts,
                         inspect=False)
                d = 1
                self._track(f, self.udp, key)
            else:
                f = Flow(self._next_id, UDP, key[:4], sport, key[4:8], dport, ts,
                         inspect=False)
                d = 0
                self._track(f, self.udp, key[4:8] + key[:4] + key[10:12] + key[8:10])
            f.dns_tools = NO_TOOLS
        else:
            d = 0 if key == f.key else 1
        self.now = ts
        f.count(d, size, ts)
        if total == 28:
            return True
        f.payload_pkts += 1
        # Under 12 bytes (no DNS header) _dns counts as malformed; QR set: an answer.
        if total < 40 or buf[o + 44] & 0x80:
            self._dns_timed(f, d, buf[o + 42:o + 14 + total], ts)
        return True

    def _dns_timed(self, f: Flow, d: int, payload: bytes, ts: float) -> None:
        """``_dns`` for a datagram, timed as the ``dns`` stage when the daemon asks."""
        if self.stage_times is None:
            self._dns(f, d, payload, ts)
        else:
            t0 = time.perf_counter()
            self._dns(f, d, payload, ts)
            self.stage_times.add("dns", time.perf_counter() - t0)

    def _count_undecoded(self, code: int) -> None:
        c = self.c
        if code == dec.MALFORMED:
            c.malformed += 1
        elif code == dec.FRAGMENT:
            c.fragments += 1
        elif code == dec.OTHER_L4:
            c.other_l4 += 1
        elif code == dec.UNSUPPORTED_LINK:
            c.unsupported_link += 1
        else:
            c.non_ip += 1

    # ------------------------------------------------------------------ flows

    def _packet(self, ts: float, proto: int, sip: bytes, dip: bytes, sport: int, dport: int,
                flags: int, seq: int, payload: bytes, size: int,
                hit: Flow | None, d: int) -> None:
        """A packet of flow ``hit`` (None: no flow yet), from its client (``d`` 0) or its
        server (1)."""
        self.now = ts
        if ts >= self._next_sweep:
            self._clock(ts)
        if hit is not None and (proto == TCP and hit.closing and flags & 0x12 == dec.TCP_SYN
                                and d == 0):
            # A new connection on the same ports after the old one closed.
            self._finish(hit)
            hit = None
        if hit is None:
            f, d = self._new_flow(ts, proto, sip, dip, sport, dport, flags, payload)
        else:
            f = hit
        f.count(d, size, ts)
        if proto == TCP:
            if flags & dec.TCP_SYN:
                if d == 0 and not flags & dec.TCP_ACK:
                    f.client_syn = True
                elif d == 1 and flags & dec.TCP_ACK:
                    f.server_synack = True
                if f.inspecting:
                    f.next_seq[d] = (seq + 1) % (1 << 32)
            if flags & 0x05:
                f.saw_close(flags)
        if not payload:
            return
        f.payload_pkts += 1
        if f.dns_tools is not None:
            if proto == TCP:
                self._dns_stream(f, d, seq, payload, ts)
            else:
                self._dns_timed(f, d, payload, ts)
            return
        if not f.inspecting:
            return
        if proto == TCP:
            if not f.add_tcp_payload(d, seq, payload):
                return
        else:
            f.add_datagram(d, payload)
        if f.name_rule is not None and f.verdict is None and f.opening_read:
            self._detect_by_name(f, ts)
        timer = self.stage_times
        if timer is None:
            self._inspect(f, ts)
        else:
            t0 = time.perf_counter()
            self._inspect(f, ts)
            timer.add("inspect", time.perf_counter() - t0)
        sni = f.sni
        if sni is not None:
            f.sni = None  # read once here: a decided flow keeps no name it will not use
            if not f.sni_seen and self.household is not None:
                f.sni_seen = True
                self._banking(f, sni, ts, seen_in="sni")
        if f.inspecting and f.payload_pkts >= INSPECT_PACKETS:
            f.stop_inspecting()

    def _new_flow(self, ts: float, proto: int, sip: bytes, dip: bytes, sport: int, dport: int,
                  flags: int, payload: bytes) -> tuple[Flow, int]:
        # Who opened it: the SYN sender; a SYN-ACK means we missed the SYN; mid-connection or
        # UDP, a system port marks the server.
        swap = False
        if proto == TCP:
            if flags & dec.TCP_SYN:
                swap = bool(flags & dec.TCP_ACK)
            else:
                swap = sport < dport
        else:
            swap = sport < SYSTEM_PORTS <= dport
        if swap:
            cip, cport, srv, sport_ = dip, dport, sip, sport
        else:
            cip, cport, srv, sport_ = sip, sport, dip, dport
        dns = DNS_PORT in (sport_, cport)
        # A lookup over UDP is decided at once: its answers are read (``_dns``), no
        # recogniser runs, and it never joins the pool of flows being inspected.
        f = Flow(self._next_id, proto, cip, cport, srv, sport_, ts,
                 inspect=not (dns and proto == UDP))
        self._track(f, self.tables[proto], f.rkey)
        if dns:
            f.dns_tools = NO_TOOLS
            if proto == TCP:
                # DNS over TCP: answers are reassembled (see _dns_stream); no recogniser
                # runs on the flow.
                f.candidates = []
            return f, (1 if swap else 0)
        f.candidates = self.by_proto[proto]  # shared until the first payload narrows it
        name = self.names.lookup(srv, ts)
        if name is not None:
            f.name = name
            m = self.sigs.match_name(name, "dns")
            if m is not None and m.role in DETECTING_ROLES:
                f.name_rule = m
        return f, (1 if swap else 0)

    def _track(self, f: Flow, table: FlowTable, rkey: bytes) -> None:
        """A new flow into its table (under both keys) and the live list; the table's
        bounds kept (the oldest undecided or least protected flows end)."""
        self._next_id += 1
        table[f.key] = f
        table[rkey] = f
        self.live[f.id] = f
        c = self.c
        c.flows += 1
        if f.inspecting:
            self.undecided[f.id] = f
            if len(self.undecided) > self.limits.max_inspecting:
                self._evict_undecided()
        if len(self.live) > self.limits.max_flows:
            self._evict_idle()
        # Counted once the table is back within its cap: never more than max_flows.
        live = len(self.live)
        if live > c.max_concurrent_flows:
            c.max_concurrent_flows = live

    def _inspect(self, f: Flow, ts: float) -> None:
        if not f.opening_read and not self._unwrap(f, ts):
            return
        keep = []
        best: Detection | None = None
        cands = f.candidates
        if cands is self.by_proto[f.proto] or (f.narrowed_on is not None
                                                 and f.streams[1 - f.narrowed_on]):
            cands = self._narrow(f)
        for r in cands:
            res = r.inspect(f)
            if res is GIVE_UP:
                continue
            keep.append(r)
            if isinstance(res, Detection) and (best is None or res.outranks(best)):
                best = res
        f.candidates = keep
        if best is not None:
            self._detect(f, best, ts)
            if best.confidence == "high":
                f.stop_inspecting()
                return
        if not keep and (f.narrowed_on is None
                         or len(f.streams[f.narrowed_on]) >= ONE_SIDED_BYTES):
            # (Narrowed on one side: wait for the other side first, for a while.)
            if f.narrowed_on is not None:
                self.c.inspect_stopped_one_sided += 1
            f.stop_inspecting()

    def _unwrap(self, f: Flow, ts: float) -> bool:
        """A proxy's or gateway's opening (recognisers.proxy): once it is complete, the
        recognisers see what follows it, and the proxy's target is the flow's peer. True
        when the recognisers should look at the flow now."""
        got = parse_opening(*f.streams) if f.proto == TCP else NOT_PROXIED
        if got is None:
            if not f.closing:
                return False  # the opening is not complete: hold the recognisers back
            got = NOT_PROXIED
        f.opening_read = True
        if not isinstance(got, Opening):
            if f.name_rule is not None and f.verdict is None:
                self._detect_by_name(f, ts)
            return True
        f.proxy = got
        f.skip_opening(got.skip)
        f.candidates = self.by_proto[f.proto]
        f.narrowed_on = None
        name = got.host if got.address is None else self.names.lookup(got.address, ts)
        f.name, f.name_rule = name, None
        if name is not None:
            m = self.sigs.match_name(name, "dns")
            if m is not None and m.role in DETECTING_ROLES:
                f.name_rule = m
        if got.carries:
            self._detect(f, Detection(got.carries, "session", "high", [
                Evidence("handshake", f"{got.protocol} channel", got.detail)]), ts)
            f.stop_inspecting()
            return False
        if not (f.streams[0] or f.streams[1]):
            return False  # nothing tunnelled yet: an opening alone is no detection
        if f.name_rule is not None and f.verdict is None:
            self._detect_by_name(f, ts)
        return True

    def _detect_by_name(self, f: Flow, ts: float) -> None:
        """The flow's peer was named as a tool's (a DNS answer, or a proxy's target)."""
        m = f.name_rule
        assert m is not None
        conf = "low" if m.confidence == "low" else "medium"
        port = f.proxy.port if f.proxy is not None and f.proxy.port else f.server_port
        role = self.sigs.role_on_port(m, f.proto, port)
        self._detect(f, Detection(m.tool, role, conf, [self._name_evidence(f)]), ts)

    def _narrow(self, f: Flow) -> list[Recogniser]:
        """The recognisers the first payload byte of each direction allows. Narrowed on one
        direction, a flow is widened again once the other side speaks (a server's valid
        answer to a garbled request still counts)."""
        table = self.by_first[f.proto]
        s0, s1 = f.streams
        if s0 and s1:
            if f.narrowed_on is None:
                allowed = set(table[s0[0]]) | set(table[s1[0]])
                keep = [r for r in f.candidates if r in allowed]
            else:
                # Add back the ones this side's byte left out and the other side's allows;
                # those that ran and gave up stay out.
                this, other = ((s0, s1) if f.narrowed_on == 0 else (s1, s0))
                left_out = [r for r in table[other[0]] if r not in table[this[0]]]
                keep = [r for r in self.by_proto[f.proto]
                        if r in f.candidates or r in left_out]
            f.narrowed_on = None
            return keep
        if not (s0 or s1):
            return f.candidates
        f.narrowed_on = 0 if s0 else 1
        return table[(s0 or s1)[0]]

    def _name_evidence(self, f: Flow) -> Evidence:
        m = f.name_rule
        assert m is not None
        if f.proxy is not None and f.proxy.address is None:
            return Evidence("dns", f.name or "", f"the proxy's target was this name; "
                                                 f"{m.detail()}")
        return Evidence("dns", f.name or "", f"the address was looked up as this name; "
                                             f"{m.detail()}")

    def _detect(self, f: Flow, det: Detection, ts: float) -> None:
        rule = f.name_rule
        if rule is not None and det.tool == rule.tool:
            if all(e.kind != "dns" for e in det.evidence):
                det.evidence.append(self._name_evidence(f))
            # The name says which server this is (ID server or relay); bytes alone cannot.
            if det.role in SERVER_ROLES and rule.role in SERVER_ROLES and not \
                    self.sigs.port_role(det.tool, f.proto, f.server_port):
                det.role = rule.role
        if f.proxy is not None and all(e.kind != "proxy" for e in det.evidence):
            p = f.proxy
            det.evidence.append(Evidence("proxy", p.target or p.protocol, ", ".join(
                x for x in (f"{p.protocol} through {ip_text(f.server_ip)}:{f.server_port}",
                            "" if p.carries else p.detail) if x)))
        if not det.outranks(f.verdict):
            return
        f.verdict = det
        if self.blocker is not None and det.role in SERVER_ROLES:
            self._blocks(self.blocker.observe_name(det.tool, ip_text(f.server_ip), ts))
        self._emit_detection(f, det, ts)

    def _flow_event(self, event_type: str, f: Flow, ts: float) -> dict[str, Any]:
        """The envelope of an event about one flow: src is the side that opened it."""
        ev: dict[str, Any] = {
            "timestamp": iso_timestamp(ts),
            "event_type": event_type,
            "flow_id": f.flow_id(),
            "community_id": f.community_id(self.community_seed),
        }
        if self.in_iface is not None:
            ev["in_iface"] = self.in_iface
        ev["src_ip"] = ip_text(f.client_ip)
        ev["src_port"] = f.client_port
        ev["dest_ip"] = ip_text(f.server_ip)
        ev["dest_port"] = f.server_port
        ev["proto"] = PROTO_NAME[f.proto]
        if self.pcap_name is not None:
            ev["pcap_filename"] = self.pcap_name
        return ev

    def _emit_detection(self, f: Flow, det: Detection, ts: float) -> None:
        ev = self._flow_event("remote_access", f, ts)
        client, server = ev["src_ip"], ev["dest_ip"]
        key = (det.tool, det.role)
        self.detections[key] = self.detections.get(key, 0) + 1
        ev["remote_access"] = {
            "tool": det.tool,
            "role": det.role,
            "confidence": det.confidence,
            "evidence": [e.as_dict() for e in det.evidence],
            "signature": self.sigs.ref(det.tool),
        }
        if det.variant:
            ev["remote_access"]["variant"] = det.variant
        if f.proxy is not None:
            p = f.proxy
            proxy: dict[str, Any] = {"protocol": p.protocol}
            if p.host is not None:
                proxy["target"] = p.host
            if p.port is not None:
                proxy["target_port"] = p.port
            ev["remote_access"]["proxy"] = proxy
        self._add_device(ev, f.client_ip, f.server_ip)
        self.log.write(ev)
        self.c.events += 1
        f.events += 1
        fnd = self.findings.get(f.id)
        if fnd is None:
            if self._finding_room(det):
                self.findings[f.id] = Finding(f.id, ts, ts, PROTO_NAME[f.proto], client,
                                              f.client_port, server, f.server_port, det,
                                              self.pcap_name, f.name,
                                              eve_flow_id=ev["flow_id"])
        else:
            if fnd.detection.role == "scan" and det.role != "scan":
                self.scan_findings -= 1
            fnd.detection = det
            fnd.ts = ts
        self.sessions.on_detection(f, det, ts)
        self.c.session_peers_dropped = self.sessions.peers_dropped
        self._next_sweep = min(self._next_sweep, self.sessions.next_tick)

    def _finding_room(self, det: Detection) -> bool:
        """Whether a new finding is kept (flows.MAX_FINDINGS, MAX_SCAN_FINDINGS); counted
        when it is not."""
        lim = self.limits
        if det.role == "scan":
            if self.scan_findings >= lim.max_scan_findings:
                self.c.findings_dropped += 1
                return False
            self.scan_findings += 1
        elif len(self.findings) - self.scan_findings >= lim.max_findings:
            self.c.findings_dropped += 1
            return False
        return True

    # ------------------------------------------------------------------ DNS

    def _dns(self, f: Flow, d: int, payload: bytes, ts: float) -> None:
        try:
            parsed = parse_response(payload)
        except DnsError:
            self.c.dns_malformed += 1
            return
        if parsed is None:
            return
        qname, addrs, chain = parsed
        self.c.dns_answers += 1
        for addr, ttl in addrs:
            self.names.add(addr, qname, ttl, ts)
        if self.blocker is not None and addrs:
            m = self.sigs.match_name(qname, "dns")
            if m is not None and m.role in SERVER_ROLES:
                for addr, _ttl in addrs:
                    self._blocks(self.blocker.observe_name(m.tool, ip_text(addr), ts))
        if self.household is not None:
            self._banking(f, qname, ts)
        for name in chain:
            m = self.sigs.match_name(name, "dns")
            if m is None or m.role not in DETECTING_ROLES:
                continue
            assert f.dns_tools is not None
            if m.tool in f.dns_tools:
                return
            f.dns_tools = f.dns_tools | {m.tool}
            det = Detection(m.tool, "dns", m.confidence,
                            [Evidence("dns", name, f"{m.role} name; {m.detail()}")])
            f.verdict = None
            self._detect(f, det, ts)
            return

    def _dns_stream(self, f: Flow, d: int, seq: int, payload: bytes, ts: float) -> None:
        """DNS over TCP: each message has a two-byte length before it (RFC 1035 §4.2.2), and
        several may share a connection (RFC 7766 §6.2.1). Answers come from port 53; each
        complete one is read like a UDP answer, and its bytes are let go."""
        if (f.server_port if d == 1 else f.client_port) != DNS_PORT:
            return
        if not f.add_tcp_payload(d, seq, payload):
            return
        buf = f.streams[d]
        f.segments[d].clear()
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size + 2 > INSPECT_BYTES:
                # Longer than a flow may hold while inspecting (a zone transfer, or not DNS
                # at all): count it, and from now on only count the connection's packets.
                self.c.dns_malformed += 1
                f.stop_inspecting()
                f.dns_tools = None
                return
            if len(buf) < size + 2:
                return
            msg = bytes(buf[2:size + 2])
            del buf[:size + 2]
            self._dns(f, d, msg, ts)

    def _banking(self, f: Flow, qname: str, ts: float, seen_in: str = "answer") -> None:
        """A household device looked up or connected to its bank (a DNS answer, or the
        server name of a TLS connection when the answer was cached): a context event for
        the policy, once per device and bank every BANKING_REPEAT_S."""
        hit = self.household.banking(qname)
        if hit is None:
            return
        domain, country = hit
        device = ip_text(f.client_ip)
        key = (device, domain)
        last = self.banking_seen.get(key)
        if last is not None and ts - last < BANKING_REPEAT_S:
            return
        if len(self.banking_seen) > 4096:
            self.banking_seen.clear()
        self.banking_seen[key] = ts
        ev = self._flow_event("dns", f, ts)
        ev["dns"] = {"type": seen_in, "rrname": qname, "category": "banking",
                     "bank": domain, "country": country}
        self._write(ev, f.client_ip, None)

    # ------------------------------------------------------------------ a resolver's log

    def feed_lookups(self, lookups: Iterable[DnsLookup]) -> None:
        """Lookups read from the LAN resolver's log (netwatch.sources.dnslog). The last one's
        time is the source's latest news, as a packet's is (the health check reads it)."""
        for lk in lookups:
            self.dns_lookup(lk.ts, lk.client, lk.qname, lk.answers, lk.chain, lk.resolver,
                            blocked=lk.outcome == "blocked")
            self.last_packet_ts = lk.ts

    def dns_lookup(self, ts: float, client_ip: str, qname: str, answers: Iterable[str] = (),
                   chain: Iterable[str] = (), resolver_ip: str = LOCAL_RESOLVER,
                   blocked: bool = False) -> None:
        """One lookup read from the resolver's log (a box that is only the LAN's DNS server):
        what ``_dns`` does with a parsed answer, without packets. The answers go into the
        name cache, a bank's name is context for the policy, and a tool's name is a detection
        on a pseudo-flow (``Flow.from_log``) from the device to the resolver, one per tool:
        a download host is ``download``, an ID server ``rendezvous`` (an installed client
        registering: an idle session), any other name of the tool ``dns``; a relay's name
        also goes to the session, which turns ``connecting`` when the tool was just
        downloaded (sessions.on_lookup). ``blocked``:
        the resolver refused the name (a Pi-hole block list); the evidence says so."""
        try:
            cip, rip = ip_bytes(client_ip), ip_bytes(resolver_ip)
        except ValueError:
            return  # the log parser hands over addresses only; nothing to count here
        if ts > self.now:
            self.now = ts
        if ts >= self._next_sweep:
            self._clock(ts)
        qname = qname.lower().rstrip(".")
        for addr in answers:
            try:
                self.names.add(ip_bytes(addr), qname, LOG_ANSWER_TTL, ts)
            except ValueError:
                continue
        if self.household is not None and self.household.banking(qname) is not None:
            self._banking(self._lookup_flow(cip, rip, "", ts), qname, ts)
        for name in (qname, *chain):
            m = self.sigs.match_name(name, "dns")
            if m is None or m.role not in DETECTING_ROLES:
                continue
            f = self._lookup_flow(cip, rip, m.tool, ts)
            f.name = name
            role = m.role if m.role in LOOKUP_ROLES else "dns"
            assert f.dns_tools is not None
            if role not in f.dns_tools:  # each kind of lookup once while the flow lives
                f.dns_tools = f.dns_tools | {role}
                said = "looked up and blocked by the resolver" if blocked else "looked up"
                det = Detection(m.tool, role, m.confidence, [Evidence(
                    "dns", name, f"{m.role} name {said} (the resolver's log); {m.detail()}")])
                f.verdict = None
                self._detect(f, det, ts)
            if m.role in CONNECT_NAME_ROLES:
                self.sessions.on_lookup(f, m.tool, ts)
            return

    def _lookup_flow(self, cip: bytes, rip: bytes, tool: str, ts: float) -> Flow:
        """The pseudo-flow of a device's lookups of one tool's names (or, tool "", of other
        names) at the resolver: it lives while the lookups go on, like a UDP flow."""
        key = (cip, rip, tool)
        f = self.lookup_flows.get(key)
        if f is None or f.id not in self.live:
            if len(self.lookup_flows) > self.limits.max_flows:
                self.lookup_flows = {k: v for k, v in self.lookup_flows.items()
                                     if v.id in self.live}
            f = Flow(self._next_id, UDP, cip, 0, rip, DNS_PORT, ts, inspect=False)
            self._next_id += 1
            f.from_log = True
            f.dns_tools = NO_TOOLS
            self.lookup_flows[key] = f
            self.live[f.id] = f
            self.c.flows += 1
            if len(self.live) > self.limits.max_flows:
                self._evict_idle()
        f.pkts_toserver += 1
        f.last_ts = ts
        return f

    # ------------------------------------------------------------------ sessions, policy

    def _session_event(self, ev: dict[str, Any], s: Any) -> None:
        f = s.main
        if f is not None:
            # The session's main flow (its latest session or relay flow), device side first:
            # the policy puts these on the alerts, as EVE readers expect an alert's flow.
            device = ip_bytes(ev["src_ip"])
            remote, rport, dport = ((f.server_ip, f.server_port, f.client_port)
                                    if f.client_ip == device else
                                    (f.client_ip, f.client_port, f.server_port))
            ev["flow_id"] = f.flow_id()
            ev["community_id"] = f.community_id(self.community_seed)
            ev["src_port"] = dport
            ev["dest_ip"] = ip_text(remote)
            ev["dest_port"] = rport
            ev["proto"] = PROTO_NAME[f.proto]
        self._write(ev, ip_bytes(ev["src_ip"]), None)
        if self.blocker is not None:
            self.blocker.remember_session(ev)

    def _blocks(self, events: list[dict[str, Any]]) -> None:
        """The blocking layer's ``block`` events, into the log."""
        for ev in events:
            if self.pcap_name is not None:
                ev["pcap_filename"] = self.pcap_name
            self.log.write(ev)
            self.c.events += 1

    def _write(self, ev: dict[str, Any], a: bytes, b: bytes | None) -> None:
        """Write a non-detection event (session, context) and let the policy see it."""
        timer = self.stage_times
        t0 = time.perf_counter() if timer is not None else 0.0
        if self.in_iface is not None:
            ev["in_iface"] = self.in_iface
        if self.pcap_name is not None:
            ev["pcap_filename"] = self.pcap_name
        self._add_device(ev, a, b)
        self.log.write(ev)
        self.c.events += 1
        if self.policy is not None:
            self._alerts(self.policy.observe(ev))
        if timer is not None:
            timer.add("events", time.perf_counter() - t0)

    def _alerts(self, alerts: list[dict[str, Any]]) -> None:
        """The policy's alert events: handed to the hooks (the notifier queues it in the
        outbox, on disk), then logged (at once, live), kept for the summary and the metrics.
        Queued first: a crash between the two leaves an alert that is sent but not logged,
        never one that is logged and never sent."""
        for alert in alerts:
            if self.in_iface is not None:
                alert["in_iface"] = self.in_iface
            if self.pcap_name is not None:
                alert["pcap_filename"] = self.pcap_name
            self._add_device(alert, ip_bytes(alert["src_ip"]), None)
            if self.blocker is not None:
                # Acted on before the alert is written and sent: it says whether the block
                # worked.
                self._blocks(self.blocker.act_on_alert(alert, self.now))
            for hook in self.on_alert:
                hook(alert)
            self.log.write(alert)
            self.log.flush_now()
            self.c.events += 1
            level = alert["alert"]["level"]
            self.alert_levels[level] = self.alert_levels.get(level, 0) + 1
            self.alerts.append(alert)

    def _add_device(self, ev: dict[str, Any], a: bytes, b: bytes | None) -> None:
        """The envelope's ``device`` when the household knows the LAN side."""
        if self.household is None:
            return
        for raw in (a, b):
            if raw is None or not is_lan_address(raw):
                continue
            ip = ip_text(raw)
            dev = self.household.device_for(ip)
            if dev is not None:
                person = self.household.person_of(dev)
                ev["device"] = {"name": dev.name, "person": person.name if person else None,
                                "mac": dev.macs[0] if dev.macs else None, "ip": ip}
                return

    # ------------------------------------------------------------------ ending flows

    def _clock(self, now: float) -> None:
        """Timed work on packet time (or a live source's clock, ``advance``): idle-flow
        sweeps, the sessions' counter ticks and the policy's look at the help windows. The
        hot loop leaves the fast path once ``_next_sweep`` is reached."""
        if now >= self._sweep_due:
            self._sweep(now)
        if now >= self.sessions.next_tick:
            self.sessions.tick(now)
            if self.policy is not None:
                # A help window that opened or closed under a live session changes its alert.
                self._alerts(self.policy.tick(iso_timestamp(now)))
        self._next_sweep = min(self._sweep_due, self.sessions.next_tick)

    def _sweep(self, now: float) -> None:
        self._sweep_due = now + SWEEP_INTERVAL
        # Flows decided since they joined the pool of undecided ones leave it now.
        self.undecided = OrderedDict((i, f) for i, f in self.undecided.items() if f.inspecting)
        expired = []
        # No flow expires before the shortest timeout: only those idle longer are looked at.
        cutoff = now - MIN_TIMEOUT
        for f in [f for f in self.live.values() if f.last_ts < cutoff]:
            idle = now - f.last_ts
            if f.proto == UDP:
                # A lookup of no tool's name, seen on the wire, ends sooner; one of a
                # tool's names lives as long as the session it may be part of.
                limit = (TIMEOUT_DNS if f.dns_tools is not None and not f.dns_tools
                         and not f.from_log else TIMEOUT_UDP)
            elif f.closing:
                limit = TIMEOUT_TCP_CLOSED
            elif f.payload_pkts == 0:
                limit = TIMEOUT_TCP_NEW
            else:
                limit = TIMEOUT_TCP_ESTABLISHED
            if idle > limit:
                expired.append(f)
        for f in expired:
            self._finish(f)

    def _protection(self, f: Flow) -> int:
        """How much eviction spares a flow: 3 in a session and busy (flows.BUSY_BYTES), 2
        in a session, 1 with a detection (a scan, given only when a flow ends, is not
        one), 0 none of these."""
        if f.id in self.sessions.by_flow:
            return 3 if f.bytes_toserver + f.bytes_toclient >= BUSY_BYTES else 2
        return 1 if f.verdict is not None and f.verdict.role != "scan" else 0

    def _evict_undecided(self) -> None:
        """The pool of flows being inspected is full: its oldest flow that is still
        undecided and not protected ends (flows.MAX_INSPECTING). Flows decided since they
        joined, or protected, just leave the pool."""
        pool, live = self.undecided, self.live
        while len(pool) > self.limits.max_inspecting:
            fid, f = pool.popitem(last=False)
            if not f.inspecting or fid not in live or self._protection(f):
                continue
            self.c.flows_evicted += 1
            self.c.flows_evicted_undecided += 1
            self._finish(f)

    def _evict_idle(self) -> None:
        """The flow table is full (flows.MAX_FLOWS): among the oldest EVICT_SAMPLE flows,
        the least protected (``_protection``) ends: of flows in no session, the least
        recently active; of a session's, the one that carried least (a flood's flows can
        join a session of their own, and be newer than a real session's last packet, but
        not carry what it does). The others move to the back. A flow of a session ends only
        when all the sample are (counted apart, as is a detection's)."""
        live = self.live
        sample = []
        for f in islice(live.values(), EVICT_SAMPLE):
            level = self._protection(f)
            worth = f.last_ts if level < 2 else f.bytes_toserver + f.bytes_toclient
            sample.append((level, worth, f))
        if not sample:
            return
        level, worth, victim = min(sample, key=lambda x: (x[0], x[1]))
        for lv, w, f in sample:
            if f is not victim and (lv, w) > (level, worth):
                live.move_to_end(f.id)
        self.c.flows_evicted += 1
        if level:
            self.c.flows_evicted_protected += 1
        self._finish(victim)

    def _finish(self, f: Flow) -> None:
        """A flow ends (timeout, eviction, end of input): last look, then forget it."""
        if not f.from_log:  # a resolver log's pseudo-flow is in no table
            table = self.tables[f.proto]
            table.pop(f.key, None)
            table.pop(f.rkey, None)
        self.live.pop(f.id, None)
        self.undecided.pop(f.id, None)
        if f.inspecting and f.candidates and f.payload_pkts:
            f.closing = True
            self._inspect(f, f.last_ts)
        if f.verdict is None and f.proto == TCP and f.client_syn and f.payload_pkts == 0:
            tool = self.sigs.scan_ports.get((TCP, f.server_port))
            if tool is not None:
                answer = ("refused (RST)" if f.rst and not f.server_synack else
                          "accepted (SYN-ACK), then nothing" if f.server_synack else
                          "no answer")
                self._detect(f, Detection(tool, "scan", "low", [
                    Evidence("port", f"tcp/{f.server_port}",
                             f"SYN with no handshake; {answer}")]), f.last_ts)
        fnd = self.findings.get(f.id)
        if fnd is not None:
            fnd.bytes_toserver, fnd.bytes_toclient = f.bytes_toserver, f.bytes_toclient
        self.sessions.on_flow_end(f, f.last_ts)

    def flow_counters(self, conns: Iterable[Conn], now: float
                      ) -> list[tuple[int, bytes, bytes, int, int]]:
        """Connection tracking's word on flows (the nflog source: netwatch sees only the
        first packets of each connection). A known flow takes conntrack's packet and byte
        counters, which cover all its packets, and ends when conntrack destroys it. Returns
        the flows worth asking about again, those with a detection or in a session, as
        (proto, client, server, client port, server port)."""
        if now > self.now:
            self.now = now
        for c in conns:
            table = self.tables.get(c.proto)
            key = c.client + c.server + _PORTS(c.cport, c.sport)
            f = table.get(key) if table else None
            if f is None:
                continue
            d = 0 if key == f.key else 1
            if c.counted:
                grew = False
                for i, way in ((0, d), (1, 1 - d)):  # conntrack's original direction first
                    if c.bytes[i] > f.bytes[way]:
                        f.bytes[way], f.pkts[way] = c.bytes[i], max(f.pkts[way], c.pkts[i])
                        grew = True
                # Traffic since the last look: the flow was alive until now (within one
                # refresh). A DESTROY comes long after the last packet (TIME_WAIT, timeouts):
                # the flow ends at the last time it was seen growing.
                if grew and not c.ended and now > f.last_ts:
                    f.last_ts = now
            if c.ended:
                self._finish(f)
        if now >= self._next_sweep:
            self._clock(now)
        return [(f.proto, f.client_ip, f.server_ip, f.client_port, f.server_port)
                for f in self.live.values()
                if (f.verdict is not None and f.dns_tools is None)
                or f.id in self.sessions.by_flow]

    def end_flows(self) -> None:
        """Finish every flow, in the order they began."""
        for f in list(self.live.values()):
            self._finish(f)

    def finish(self) -> Result:
        """End of input."""
        self.end_flows()
        self.sessions.finish(self.now)
        self.log.flush()
        return Result(self.c, sorted(self.findings.values(), key=lambda x: x.flow_id),
                      list(self.alerts), getattr(self.household, "tz", None))

    def stats_event(self) -> dict[str, Any]:
        c = self.c
        return {
            "timestamp": iso_timestamp(self.now),
            "event_type": "stats",
            "stats": {k: getattr(c, k) for k in c.__dataclass_fields__},
        }
