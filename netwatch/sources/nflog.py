"""The ``nflog`` source: on a router, the kernel hands netwatch only what it inspects.

netwatch adds its own nftables table (``inet netwatch``, see netwatch.nft) with capture
chains whose rules send two kinds of packets to an NFLOG group:

- the first ``first_packets`` packets of each connection, both directions counted together
  by conntrack (``ct packets 1-N``): everything the recognisers read;
- every DNS answer (TCP or UDP from port 53), which names the addresses later flows go to.

netwatch reads the group over netlink (nfnetlink_log). A flow's volume after its first
packets and its end come from conntrack (netwatch.sources.conntrack): events for the end,
and a GET every ``refresh_s`` for the flows the pipeline follows.

nfnetlink_log layouts from linux/netfilter/nfnetlink_log.h: messages are
``NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET``; attributes NFULA_PACKET_HDR
(be16 hw_protocol, u8 hook), NFULA_TIMESTAMP (be64 sec, be64 usec), NFULA_IFINDEX_INDEV /
OUTDEV (be32), NFULA_PAYLOAD (the packet from its IP header), NFULA_SEQ (be32, with
NFULNL_CFG_F_SEQ); configuration ``NFULNL_MSG_CONFIG`` with NFULA_CFG_CMD (u8 command),
NFULA_CFG_MODE (be32 copy_range, u8 copy_mode, u8 pad), NFULA_CFG_NLBUFSIZ, _TIMEOUT,
_QTHRESH (be32) and _FLAGS (be16).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from .. import nft
from ..decode import LINKTYPE_RAW
from .conntrack import Conn, ConntrackEvents, ConntrackQuery, enable_accounting
from .netlink import NLM_F_ACK, NLM_F_REQUEST, NetfilterSocket, NetlinkError, attr, message

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_PACKET_HDR = 1
NFULA_TIMESTAMP = 3
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_PAYLOAD = 9
NFULA_SEQ = 12
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULA_CFG_FLAGS = 6
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_CFG_CMD_PF_UNBIND = 4
NFULNL_COPY_PACKET = 2
NFULNL_CFG_F_SEQ = 0x0001

# The group netwatch reads unless told otherwise; ulogd's examples use 0-2 and OpenWrt's
# fw4 logs to the kernel log, not a group.
DEFAULT_GROUP = 74
# Packets of each connection passed to netwatch, both directions counted together as
# conntrack counts them. The pipeline inspects at most 24 payload packets of a flow
# (flows.INSPECT_PACKETS); the handshake and the pure ACKs between payload packets take
# the rest, and every recogniser gives its verdict on the corpus within 12 payload packets.
FIRST_PACKETS = 32
DNS_PORT = 53
# The whole packet: inspection reassembles TCP payload, and a packet cut short leaves a gap
# no later packet fills. 0xFFFF is the largest copy range nfnetlink_log accepts (a GRO
# packet on the router can be larger than the MTU).
COPY_RANGE = 0xFFFF
# The kernel gathers logged packets into one netlink message of up to this size, sent when
# full, when QUEUE_THRESHOLD packets wait, or after FLUSH_TIMEOUT (hundredths of a second):
# one wake-up per batch instead of per packet, at most 50 ms late. 128 KiB is the largest
# buffer nfnetlink_log allows (NFULNL_NLBUFSIZ limit in nfnetlink_log.c).
NLBUFSIZ = 131072
QUEUE_THRESHOLD = 64
FLUSH_TIMEOUT = 5
# A poll hands back at most this many packets, so the pipeline's clock and the conntrack
# counters keep up during a burst.
MAX_BATCH = 4096
# Conntrack counters of followed flows are read this often: twice per session tick
# (sessions.Thresholds.tick_s, 5 s), so every tick sees a fresh rate.
REFRESH_S = 2.5
# Conntrack's news (ends) go to the pipeline at most this often: a session's end is known
# half a second late at worst, and the pipeline's list of followed flows is not rebuilt on
# every batch of packets.
DELIVER_S = 0.5
# Capture chains run just before fw4's filter chains (priority filter = 0: input, forward,
# output) and after its mangle chains (-150), which only mark: they see every packet fw4
# is about to accept or drop. Conntrack (-200) has already counted the packet.
PRIORITY = -1
FORWARD = nft.Chain("capture_forward", "forward", PRIORITY)
OUTPUT = nft.Chain("capture_output", "output", PRIORITY)
INPUT = nft.Chain("capture_input", "input", PRIORITY)

_TS = struct.Struct("!QQ")
_BE32 = struct.Struct("!I")
_NLA = struct.Struct("=HH")
_NLMSG = struct.Struct("=IHHII")
_IP_LEN = struct.Struct("!H")

log = logging.getLogger("netwatch.nflog")

Packet = tuple[float, int, bytes, int]  # (ts, linktype, frame, wire_len)
FlowKey = tuple[int, bytes, bytes, int, int]
CounterSink = Callable[[list[Conn], float], list[FlowKey]]


class SourceError(Exception):
    """The source cannot start (no permission, no nfnetlink_log, group taken, nft fails)."""


# ---------------------------------------------------------------- the rules

def capture_rules(group: int, first_packets: int) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """(first packets of each connection, DNS answers) as nft JSON rule expressions."""
    l4: dict[str, Any] = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                    "right": {"set": ["tcp", "udp"]}}}
    sport: dict[str, Any] = {"payload": {"protocol": "th", "field": "sport"}}
    log: dict[str, Any] = {"log": {"group": group}}
    dns = [l4, {"match": {"op": "==", "left": sport, "right": DNS_PORT}}, log]
    # ct packets is 0 for a connection without accounting (created before it was turned
    # on): such connections would otherwise be logged whole, so the range starts at 1.
    first = [l4, {"match": {"op": "!=", "left": sport, "right": DNS_PORT}},
             {"match": {"op": "==", "left": {"ct": {"key": "packets"}},
                        "right": {"range": [1, first_packets]}}}, log]
    return first, dns


def chains_for(own_traffic: bool) -> list[nft.Chain]:
    return [FORWARD, OUTPUT, INPUT] if own_traffic else [FORWARD, OUTPUT]


def ruleset(group: int, first_packets: int, own_traffic: bool
            ) -> dict[str, list[list[dict[str, Any]]]]:
    """Rules per chain. Forwarded traffic gets both rules; the box's own output only its
    DNS answers (a resolver on the router, dnsmasq on OpenWrt, answers the LAN from
    there), unless ``own_traffic`` asks for the box's own connections too."""
    first, dns = capture_rules(group, first_packets)
    rules = {FORWARD.name: [first, dns], OUTPUT.name: [dns]}
    if own_traffic:
        rules[OUTPUT.name] = [first, dns]
        rules[INPUT.name] = [first, dns]
    return rules


# ---------------------------------------------------------------- the packet log

# A packet message's attributes before its payload, as ``Layout`` reads them: the unpack
# of their headers, the (length, type) pairs it must give (the payload's type last), the
# bytes it reads, and where the time's value, the sequence number's value and the payload's
# attribute start (-1: absent), offsets from the first attribute.
Shape = tuple[Any, tuple[int, ...], int, int, int, int]


class Layout:
    """The attributes of logged packets' messages before their payload, as messages walked
    in full had them.

    The kernel logs every packet of a kind with the same attributes in the same order
    (nfnetlink_log's __build_packet_message: the packet header, the log prefix, the
    interfaces, the hardware address, type, length and header, the time, the sequence
    number, the payload last); only the payload's length changes. A message whose
    attribute headers, read in one unpack, have the lengths and types of a known shape
    has its time, sequence number and payload where the shape says, and needs no walk. A
    message of no known shape is walked attribute by attribute, and its attributes become
    a shape when its payload comes last. A router has a few kinds: forwarded packets, and
    the answers of its own DNS resolver (no input interface, no hardware header), perhaps
    marked ones; the first MAX_SHAPES are kept, tried in the order they were learned. On
    a router's forwarded packets (11 attributes each) this reads a packet in about half
    the time of the walk."""

    MAX_SHAPES = 4

    __slots__ = ("shapes", "_made")

    def __init__(self) -> None:
        self.shapes: list[Shape] = []
        self._made: dict[str, Any] = {}  # unpacks by format: a shape learned again is cheap

    def learn(self, attrs: list[tuple[int, int, int]]) -> None:
        """The attributes ``(offset, length, type)`` of a message walked in full, its
        payload last (offsets from the first attribute)."""
        fmt, at = ["="], 0
        expected: list[int] = []
        ts = seq = -1
        for off, alen, atype in attrs[:-1]:
            fmt.append(f"{off - at}xHH")
            expected += (alen, atype)
            at = off + 4
            # As the walk reads them: the last of a kind counts.
            if atype == NFULA_TIMESTAMP and alen >= 20:
                ts = off + 4
            elif atype == NFULA_SEQ and alen >= 8:
                seq = off + 4
        payload = attrs[-1][0]
        fmt.append(f"{payload - at}x2xH")  # the payload's type (its length varies)
        form = "".join(fmt)
        unpack = self._made.get(form)
        if unpack is None:
            if len(self._made) >= 64:
                self._made.clear()  # a bound against messages of ever-new shapes
            unpack = self._made[form] = struct.Struct(form).unpack_from
        shape = (unpack, (*expected, NFULA_PAYLOAD), payload + 4, ts, seq, payload)
        if len(self.shapes) >= self.MAX_SHAPES:
            self.shapes[-1] = shape  # the first ones learned stay: the usual kinds
        else:
            self.shapes.append(shape)


def parse_packets(buf: bytes | memoryview, n: int, now: float, out: list[Packet],
                  last_seq: int | None = None, layout: Layout | None = None
                  ) -> tuple[int, int, int | None, int]:
    """Append the logged packets of one netlink batch to ``out``. Returns (packets,
    malformed messages, the last sequence number seen, packets missing between sequence
    numbers since ``last_seq``). A packet without a kernel timestamp gets ``now``.

    This runs once per packet that reaches Python: the batch is copied to bytes once, a
    message of a shape ``layout`` knows is read against it (see Layout), any other has its
    attributes walked with one unpack each, and the payload (always the last attribute,
    nfulnl_log_packet) is the only slice taken."""
    data = buf[:n] if isinstance(buf, bytes) else bytes(buf[:n])
    pos = count = bad = gaps = 0
    unpack_msg, unpack_nla = _NLMSG.unpack_from, _NLA.unpack_from
    be32, ts_unpack = _BE32.unpack_from, _TS.unpack_from
    want = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    append = out.append
    shapes = layout.shapes if layout is not None else ()
    while pos + 16 <= n:
        length, mtype, _f, _s, _p = unpack_msg(data, pos)
        if length < 16 or pos + length > n:
            bad += 1
            break
        end = pos + length
        a = pos + 20  # after nlmsghdr and nfgenmsg
        pos = (end + 3) & ~3
        if mtype != want:
            continue
        payload = None
        ts = now
        for unpack, expected, size, ts_at, seq_at, p in shapes:
            if a + size > end or unpack(data, a) != expected:
                continue
            p += a
            plen = unpack_nla(data, p)[0]
            if 4 <= plen and p + plen <= end and p + ((plen + 3) & ~3) >= end:
                payload = data[p + 4:p + plen]
                if seq_at >= 0:
                    seq = be32(data, a + seq_at)[0]
                    if last_seq is not None and seq != (last_seq + 1) & 0xFFFFFFFF:
                        gaps += (seq - last_seq - 1) & 0xFFFFFFFF
                    last_seq = seq
                if ts_at >= 0:
                    sec, usec = ts_unpack(data, a + ts_at)
                    ts = sec + usec * 1e-6
                a = end  # read: no walk
            break
        first = a
        attrs: list[tuple[int, int, int]] | None = [] if layout is not None else None
        while a + 4 <= end:
            alen, atype = unpack_nla(data, a)
            if alen < 4 or a + alen > end:
                attrs = None
                break
            if attrs is not None:
                attrs.append((a - first, alen, atype))
            # These three are never nested, so their type has no flag bits to mask.
            if atype == NFULA_PAYLOAD:
                payload = data[a + 4:a + alen]
            elif atype == NFULA_SEQ and alen >= 8:
                seq = be32(data, a + 4)[0]
                if last_seq is not None and seq != (last_seq + 1) & 0xFFFFFFFF:
                    gaps += (seq - last_seq - 1) & 0xFFFFFFFF
                last_seq = seq
            elif atype == NFULA_TIMESTAMP and alen >= 20:
                sec, usec = ts_unpack(data, a + 4)
                ts = sec + usec * 1e-6
            a += (alen + 3) & ~3
        if attrs and attrs[-1][2] == NFULA_PAYLOAD and layout is not None:
            layout.learn(attrs)
        if not payload or len(payload) < 8:
            bad += 1
            continue
        # The wire length from the IP header: the copy may be cut short.
        v = payload[0] >> 4
        wire = ((payload[2] << 8 | payload[3]) if v == 4 else
                40 + (payload[4] << 8 | payload[5]) if v == 6 else 0)
        lp = len(payload)
        append((ts, LINKTYPE_RAW, payload, wire if wire > lp else lp))
        count += 1
    return count, bad, last_seq, gaps


def wire_length(packet: bytes) -> int:
    """The packet's length on the wire, from its IP header (the copy may be cut short)."""
    if len(packet) >= 4 and packet[0] >> 4 == 4:
        return max(_IP_LEN.unpack_from(packet, 2)[0], len(packet))
    if len(packet) >= 6 and packet[0] >> 4 == 6:
        return max(40 + _IP_LEN.unpack_from(packet, 4)[0], len(packet))
    return len(packet)


class NflogReader:
    """A socket bound to one NFLOG group, copying whole packets."""

    def __init__(self, group: int, copy_range: int = COPY_RANGE):
        self.group = group
        self.nl = NetfilterSocket(())
        self.last_seq: int | None = None
        self.layout = Layout()  # the packet messages' attributes (parse_packets)
        self.gaps = 0
        self.malformed = 0
        try:
            self._configure(copy_range)
        except NetlinkError as e:
            self.nl.close()
            if e.errno == 16:  # EBUSY
                raise SourceError(f"nflog group {group} is already read by another program "
                                  f"(ulogd, tcpdump -i nflog:{group}, another netwatch)") from None
            raise SourceError(f"nflog group {group}: {e.strerror}") from None

    def _config(self, family: int, res_id: int, *attrs: bytes) -> None:
        self.nl.request(message(NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK,
                                family, b"".join(attrs), seq=self.nl.next_seq(),
                                res_id=res_id))

    def _configure(self, copy_range: int) -> None:
        # Kernels before 3.17 need the log handler bound per address family; newer ones
        # accept the commands and do nothing.
        for fam in (socket.AF_INET, socket.AF_INET6):
            for cmd in (NFULNL_CFG_CMD_PF_UNBIND, NFULNL_CFG_CMD_PF_BIND):
                try:
                    self._config(fam, 0, attr(NFULA_CFG_CMD, bytes((cmd,))))
                except NetlinkError:
                    pass
        self._config(socket.AF_UNSPEC, self.group,
                     attr(NFULA_CFG_CMD, bytes((NFULNL_CFG_CMD_BIND,))))
        self._config(socket.AF_UNSPEC, self.group,
                     attr(NFULA_CFG_MODE, struct.pack("!IBB", copy_range,
                                                      NFULNL_COPY_PACKET, 0)),
                     attr(NFULA_CFG_NLBUFSIZ, _BE32.pack(NLBUFSIZ)),
                     attr(NFULA_CFG_TIMEOUT, _BE32.pack(FLUSH_TIMEOUT)),
                     attr(NFULA_CFG_QTHRESH, _BE32.pack(QUEUE_THRESHOLD)),
                     attr(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ)))

    def fileno(self) -> int:
        return self.nl.fileno()

    def read(self, out: list[Packet], limit: int, now: float) -> int:
        """Read what is waiting (without blocking) into ``out``, up to about ``limit``
        packets; how many were added."""
        added = 0
        while added < limit:
            n = self.nl.recv(block=False)
            if n == 0:
                break
            count, bad, self.last_seq, gaps = parse_packets(self.nl.view, n, now, out,
                                                            self.last_seq, self.layout)
            added += count
            self.malformed += bad
            self.gaps += gaps
        return added

    def close(self) -> None:
        try:
            self._config(socket.AF_UNSPEC, self.group,
                         attr(NFULA_CFG_CMD, bytes((NFULNL_CFG_CMD_UNBIND,))))
        except (NetlinkError, OSError):
            pass
        self.nl.close()


# ---------------------------------------------------------------- the source

class NflogSource:
    """A live source on a router: logged first packets and DNS answers, plus conntrack's
    counters and ends for the flows the pipeline follows.

    ``on_counters(conns, now)`` (normally ``Pipeline.flow_counters``) receives conntrack's
    news at the start of each ``poll``, after the packets of the previous poll were fed,
    and returns the flows to keep asking about."""

    name = "nflog"

    def __init__(self, group: int = DEFAULT_GROUP, first_packets: int = FIRST_PACKETS,
                 own_traffic: bool = False, refresh_s: float = REFRESH_S,
                 on_counters: CounterSink | None = None,
                 clock: Callable[[], float] = time.time):
        self.group = group
        self.iface = f"nflog:{group}"
        self.first_packets = first_packets
        self.chains = chains_for(own_traffic)
        self.own_traffic = own_traffic
        self.refresh_s = refresh_s
        self.on_counters = on_counters
        self.clock = clock
        self.accounting_problem: str | None = None
        self.packets = self.bytes = 0
        self.conntrack_events = 0
        self.refreshes = 0
        self._pending: list[Conn] = []
        self._follow: list[FlowKey] = []
        self._next_refresh = 0.0
        self._next_deliver = 0.0
        self.reader: NflogReader | None = None
        self.events: ConntrackEvents | None = None
        self.query: ConntrackQuery | None = None
        self.rules_installed = False
        self.flowtables: list[str] = []

    def start(self) -> NflogSource:
        """Open the sockets, then add the rules (so no logged packet finds nobody)."""
        try:
            self.accounting_problem = enable_accounting()
            self.reader = NflogReader(self.group)
            self.events = ConntrackEvents()
            self.query = ConntrackQuery()
            nft.install_chains(self.chains, ruleset(self.group, self.first_packets,
                                                    self.own_traffic))
            self.rules_installed = True
            self.flowtables = nft.flowtables()
        except PermissionError:
            self.close()
            raise SourceError("the nflog source needs CAP_NET_ADMIN (run as root or give "
                              "netwatch that capability)") from None
        except (OSError, nft.NftError) as e:
            self.close()
            raise SourceError(str(e)) from None
        if self.accounting_problem:
            log.warning("%s", self.accounting_problem)
        if self.flowtables:
            log.warning("flow offloading is on (%s): an offloaded TCP connection leaves the "
                        "forward hook after its handshake, so its payload is not inspected; "
                        "see the README, 'Routers: the nflog source'", ", ".join(self.flowtables))
        return self

    def __enter__(self) -> NflogSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, timeout_s: float) -> list[Packet]:
        """The logged packets that arrive within ``timeout_s`` (empty on timeout)."""
        assert self.reader is not None and self.events is not None
        now = self.clock()
        if now >= self._next_deliver:
            self._next_deliver = now + DELIVER_S
            self._deliver(now)
        out: list[Packet] = []
        wait = min(timeout_s, self._next_deliver - now) if self._pending else timeout_s
        ready, _, _ = select.select([self.reader.fileno(), self.events.fileno()], [], [],
                                    max(0.0, wait))
        if self.events.fileno() in ready:
            got = self.events.read()
            self.conntrack_events += len(got)
            self._pending.extend(got)
        if self.reader.fileno() in ready:
            self.reader.read(out, MAX_BATCH, self.clock())
            self.packets += len(out)
            self.bytes += sum(p[3] for p in out)
        return out

    def _deliver(self, now: float) -> None:
        conns, self._pending = self._pending, []
        if now >= self._next_refresh:
            self._next_refresh = now + self.refresh_s
            if self._follow and self.query is not None:
                conns.extend(self.query.get(self._follow))
                self.refreshes += 1
        if self.on_counters is not None:
            self._follow = self.on_counters(conns, now)

    def stats(self) -> dict[str, Any]:
        r, e, q = self.reader, self.events, self.query
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            # Sequence gaps: the kernel could not queue a message; overruns: the socket's
            # buffer was full and the kernel dropped whole batches (count unknown).
            "received": self.packets + (r.gaps if r else 0),
            "dropped": (r.gaps if r else 0),
            "overruns": (r.nl.overruns if r else 0) + (e.nl.overruns if e else 0),
            "malformed": (r.malformed if r else 0) + (e.malformed if e else 0),
            "conntrack_events": self.conntrack_events,
            "conntrack_refreshes": self.refreshes,
            "conntrack_errors": q.errors if q else 0,
            "followed_flows": len(self._follow),
            "accounting": self.accounting_problem or "on",
            "flowtables": list(self.flowtables),
        }

    def close(self) -> None:
        """Remove the capture chains (and the table if nothing else of netwatch's is in it),
        then close the sockets."""
        if self.rules_installed:
            self.rules_installed = False
            try:
                nft.remove_chains([c.name for c in self.chains])
            except nft.NftError as e:
                log.error("could not remove netwatch's capture chains (%s); remove them by "
                          "hand: nft delete table inet netwatch", e)
        for part in (self.reader, self.events, self.query):
            if part is not None:
                part.close()
        self.reader = self.events = self.query = None


def nfnetlink_log_available() -> str | None:
    """None when this kernel lets netwatch bind an NFLOG group, else why not."""
    if not os.path.exists("/proc/net/netfilter/nfnetlink_log"):
        return "the kernel has no nfnetlink_log (CONFIG_NETFILTER_NETLINK_LOG)"
    return None
