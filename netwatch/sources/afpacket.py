"""The ``af_packet`` source: every frame on an interface, read in batches from a kernel ring.

For a box that is the home's gateway, or that sits on a switch's mirror port. The socket is
an AF_PACKET one on the interface with a TPACKET_V3 receive ring: the kernel fills blocks of
a memory area shared with netwatch and hands a block over when it is full or
``RETIRE_TIMEOUT_MS`` after its first frame; netwatch walks each block in place and gives it
back. A classic BPF filter keeps what netwatch never reads out of the ring. Where the ring
cannot be set up (an old or stripped kernel), frames are read with plain ``recv`` calls,
many per poll.

Layouts from linux/if_packet.h (the kernel's UAPI header; Documentation/networking/
packet_mmap.rst describes their use), all in the machine's byte order:

- ``struct tpacket_req3`` (PACKET_RX_RING): u32 tp_block_size, tp_block_nr, tp_frame_size,
  tp_frame_nr, tp_retire_blk_tov, tp_sizeof_priv, tp_feature_req_word;
- ``struct tpacket_block_desc``: u32 version, u32 offset_to_priv, then
  ``struct tpacket_hdr_v1``: u32 block_status (offset 8), u32 num_pkts (12),
  u32 offset_to_first_pkt (16), u32 blk_len (20: the bytes in use, this header included),
  u64 seq_num (24), two timestamps;
- ``struct tpacket3_hdr``: u32 tp_next_offset (0), tp_sec (4), tp_nsec (8), tp_snaplen
  (12), tp_len (16), tp_status (20), u16 tp_mac (24), tp_net (26), then
  ``struct tpacket_hdr_variant1``: u32 tp_rxhash (28), u32 tp_vlan_tci (32),
  u16 tp_vlan_tpid (36), u16 tp_padding (38);
- ``struct tpacket_stats_v3`` (PACKET_STATISTICS): u32 tp_packets, tp_drops,
  tp_freeze_q_cnt; reset by each read, and tp_packets already counts the drops
  (net/packet/af_packet.c, packet_getsockopt);
- ``struct packet_mreq`` (PACKET_ADD_MEMBERSHIP): int mr_ifindex, u16 mr_type, u16 mr_alen,
  u8 mr_address[8].

The daemon reads the ring with ``walk``: the frames of each ready block are handed in place,
as offsets into the ring, to the pipeline's counting rules (the same per-packet work as a
replay), and the block goes back to the kernel once they are done; only a frame that needs
the full path is sliced out. ``poll`` gives the same frames as a list of tuples (the
``LiveSource`` shape, each block copied out and given back at once) for tests and tools.

Kernels strip 802.1Q/802.1ad tags into the packet's metadata (hardware VLAN offload, or
``skb_vlan_untag`` on receive): a frame whose ``tp_status`` has TP_STATUS_VLAN_VALID gets its
tag put back from ``tp_vlan_tci`` (and ``tp_vlan_tpid`` when TP_STATUS_VLAN_TPID_VALID), so
it reads as it was on the wire.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ..decode import LINKTYPE_ETHERNET, LINKTYPE_RAW, PROTO_UDP
from . import Frame

# What ``walk`` is handed (netwatch.pipeline.Pipeline.feed_walk): the fast path
# ``fast(buf, o, n, wire, ts)``, True when it counted the frame ``buf[o:o + n]`` in place;
# the full path ``full(ts, linktype, frame, wire)``, which returns the time until which the
# fast path may be used (the pipeline's next timed work); and that time now.
FastCount = Callable[[bytes, int, int, int, float], bool]
FullPath = Callable[[float, int, bytes, int], float]
Count4 = Callable[[int, bytes, int, int, int, int, float], bool]
Lookup4 = Callable[[bytes, int, int, int, float, bytes], bool]
Full4 = Callable[[bytes, int, int, int, float, int, bytes, int], float]


class Paths(NamedTuple):
    """Optionally, the pipeline's paths for a frame whose fields the walk read with its
    ring header (one unpack, as the file loops read them with a record's; see
    pipeline.FrameFields): for plain IPv4, the shared counting rules (pipeline.fast_ipv4),
    the lookup path (Pipeline._lookup4) and the full path from those fields
    (Pipeline._full4, returning the new ``until`` as ``full`` does); for IPv6, its
    counting rules (pipeline.fast_ipv6)."""

    count4: Count4
    lookup4: Lookup4
    full4: Full4
    count6: FastCount


# What ``walk`` returns: frames, their bytes on the wire, the bytes captured, the frames
# the fast path counted, the last frame's time.
Walked = tuple[int, int, int, int, float]
Walk = Callable[[FastCount, FullPath, float, Paths], Walked]

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100

# Link types by the interface's ARPHRD_ type (/sys/class/net/IF/type, linux/if_arp.h):
# Ethernet and loopback frames start with an Ethernet header; tun devices (ARPHRD_NONE)
# and raw-IP modems (ARPHRD_RAWIP) with the IP header.
ARPHRD_LINKTYPES = {1: LINKTYPE_ETHERNET, 772: LINKTYPE_ETHERNET, 65534: LINKTYPE_RAW,
                    519: LINKTYPE_RAW}

# The ring: BLOCK_NR blocks of BLOCK_SIZE bytes, 16 MiB in all by default (``ring_mib``).
# What it must hold is a burst while Python is busy or not scheduled: on this project's
# 2-core development machine (heavily shared), the home mix sent at 42,000 packets/s
# (286 Mbit/s) for 2.2 s lost 8.4 % of its packets with a 4 MiB ring and none with 16 MiB.
# Its cost is that memory itself: the kernel allocates the blocks when the capture opens,
# they cannot be swapped, and they count in netwatch's RSS once filled. 16 MiB holds about
# 17,000 frames of the home mix (860 bytes on average, 82 bytes of header each): 0.15 s at
# 120,000 packets/s. For comparison, libpcap's default buffer (tcpdump, ndpiReader) is a
# 2 MiB ring; Suricata and Zeek size theirs in their settings too. A Raspberry Pi has the
# memory (1.6 % of a Pi 3's 1 GiB); a router short of it sets ``ring_mib`` lower (or uses
# the nflog source). The block size must be a multiple of the page size (packet_mmap.rst).
BLOCK_SIZE = 1 << 18
BLOCK_NR = 64
# Frames are packed in a V3 block whatever their size; the frame size only sets the kernel's
# count of frames (tp_frame_nr), and must be a multiple of TPACKET_ALIGNMENT (16).
FRAME_SIZE = 2048
# A block is handed to netwatch at the latest this long after its first frame, so one
# handshake packet on a quiet network reaches the recognisers within 0.1 s, not when the
# block fills (libpcap uses its caller's timeout: ndpiReader's 500 ms, tcpdump's 1 s). Under
# load blocks fill long before: a 256 KiB block holds about 270 frames of the home mix.
RETIRE_TIMEOUT_MS = 100
# Frames handed over per poll at most: the daemon's loop keeps turning (clock, signals).
MAX_BATCH = 4096
# The plain-recv fallback reads into a buffer this large (the largest frame a 64 KiB GSO
# packet and its link header make).
RECV_BUFFER = 65536 + 256

_BLOCK_HDR = struct.Struct("=IIII")  # block_status, num_pkts, offset_to_first_pkt, blk_len
_PKT_HDR = struct.Struct("=IIIIIIH")  # tp_next_offset … tp_mac
def _not_counted(*_args: Any) -> bool:
    return False


def _no_full4(*_args: Any) -> float:
    raise AssertionError("not called: no frame takes the combined path without the paths")


# The usual tp_mac of an Ethernet frame (the header and a sockaddr_ll rounded up to 16, less
# the 14-byte link header; net/packet/af_packet.c): the combined unpack is made for it.
ETHERNET_MAC_OFFSET = 82
_VLAN = struct.Struct("=IH")  # tp_vlan_tci, tp_vlan_tpid (at 32)
_STATUS = struct.Struct("=I")
_NATIVE = "<" if sys.byteorder == "little" else ">"  # "=" as FrameFields reads it
_TAG = struct.Struct("!HH")
_STATS_V3 = struct.Struct("=III")
_STATS_V1 = struct.Struct("=II")

# The classic BPF program attached to the socket: keep IPv4, IPv6 and VLAN-tagged frames
# (netwatch decodes nothing else), with the whole frame. Generated once with
#   tcpdump -dd 'ether proto 0x0800 or ether proto 0x86dd or ether proto 0x8100
#                or ether proto 0x88a8'
# (tcpdump 4.99); struct sock_filter is (u16 code, u8 jt, u8 jf, u32 k), linux/filter.h.
ETHERNET_FILTER: tuple[tuple[int, int, int, int], ...] = (
    (0x28, 0, 0, 0x0000000C),  # ldh [12]            the EtherType (after the kernel took
                               #                     any VLAN tag out: the inner one)
    (0x15, 3, 0, 0x00000800),  # jeq #0x800   jt 5   IPv4: keep
    (0x15, 2, 0, 0x000086DD),  # jeq #0x86dd  jt 5   IPv6: keep
    (0x15, 1, 0, 0x00008100),  # jeq #0x8100  jt 5   802.1Q tag still in the frame: keep
    (0x15, 0, 1, 0x000088A8),  # jeq #0x88a8  jt 5 jf 6   802.1ad (QinQ): keep, else drop
    (0x06, 0, 0, 0x00040000),  # ret #262144          keep, up to 256 KiB of the frame
    (0x06, 0, 0, 0x00000000),  # ret #0               drop (ARP, LLDP, STP, …)
)


class SourceError(Exception):
    """The interface cannot be captured on (missing, no permission, not a known link)."""


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]
                  ) -> None:
    """SO_ATTACH_FILTER with ``struct sock_fprog`` (u16 len, then a pointer to the
    instructions; linux/filter.h). The kernel copies the program, so the buffer only has
    to live through the call."""
    code = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(code, len(code))
    # Native alignment ("@"): the pointer starts at its own alignment after the u16.
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def interface_linktype(iface: str) -> int:
    """The pcap link type of the interface's frames, from its ARPHRD_ type."""
    try:
        with open(f"/sys/class/net/{iface}/type", encoding="ascii") as fh:
            arphrd = int(fh.read().strip())
    except FileNotFoundError:
        raise SourceError(f"no network interface named {iface!r}") from None
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read the type of interface {iface!r}: {e}") from None
    lt = ARPHRD_LINKTYPES.get(arphrd)
    if lt is None:
        raise SourceError(f"interface {iface!r} has link type {arphrd} (linux/if_arp.h), "
                          "which netwatch does not read: use an Ethernet interface")
    return lt


class Ring:
    """A TPACKET_V3 receive ring: ``block_nr`` blocks of ``block_size`` bytes in ``mm`` (the
    socket's mapping, or any buffer laid out the same way), handed over in turn by the
    kernel. Counts the frames and wire bytes it hands on."""

    def __init__(self, mm: mmap.mmap, block_size: int, block_nr: int, linktype: int):
        self.mm = mm
        self.block_size = block_size
        self.block_nr = block_nr
        self.linktype = linktype
        self.block = 0  # the next block the kernel hands over
        self.packets = self.bytes = 0
        self._ff: Any = None  # see _frame_fields

    def ready(self) -> bool:
        """Whether the next block has been handed over."""
        return bool(_STATUS.unpack_from(self.mm, self.block * self.block_size + 8)[0]
                    & TP_STATUS_USER)

    def _hold(self) -> tuple[int, int, int, int] | None:
        """The next block if it is ready, left in the ring: where it starts, its frame
        count, where its first frame starts and where its bytes in use end (offsets in the
        ring). The kernel leaves it alone until ``_release``."""
        base = self.block * self.block_size
        status, num, first, length = _BLOCK_HDR.unpack_from(self.mm, base + 8)
        if not status & TP_STATUS_USER:
            return None
        return base, num, base + first, base + min(length, self.block_size)

    def _release(self, base: int) -> None:
        """The block at ``base`` back to the kernel, and the next one's turn."""
        _STATUS.pack_into(self.mm, base + 8, TP_STATUS_KERNEL)
        self.block = (self.block + 1) % self.block_nr

    def _take(self) -> tuple[bytes, int, int] | None:
        """The next block if it is ready: a copy of its bytes in use, its frame count and
        the offset of its first frame; the block itself goes back to the kernel."""
        held = self._hold()
        if held is None:
            return None
        base, num, first, end = held
        buf = self.mm[base:end]
        self._release(base)
        return buf, num, first - base

    def _frame_fields(self) -> Any:
        """The ring header, then (at the usual tp_mac) the fields of the frame that
        ``pipeline.FrameFields`` reads: one unpack (made once)."""
        if self._ff is None:
            from ..pipeline import FrameFields  # the pipeline imports this module's types
            self._ff = FrameFields(_NATIVE + f"IIIIIIH{ETHERNET_MAC_OFFSET - _PKT_HDR.size}x")
        return self._ff

    def walk(self, fast: FastCount, full: FullPath, until: float,
             paths: Paths | None = None) -> Walked:
        """The ready blocks (up to about MAX_BATCH frames), each frame to ``fast`` in place
        while its time is before ``until``, to ``full`` otherwise or when ``fast`` does not
        count it (see FastCount above). A frame whose VLAN tag the kernel took out gets it
        back (a copy, on the full path: the fast path reads untagged Ethernet only).

        The frames are read where the kernel wrote them, and each block goes back to the
        kernel once its frames are done (64 blocks by default: one held for the moment of
        its walk leaves the kernel the others). Copying each block out first cost about 7 %
        of the running daemon's samples at 100,000 pps: a copy reads every byte of every
        frame, the walk only the headers and the frames the full path slices out.

        Given the pipeline's ``paths``, a frame at the usual offset has its ring header and
        the fields of a plain IPv4 frame read in one unpack, and goes to them directly, as a
        file record does in ``Pipeline.feed_pcap``; an IPv6 frame there goes to the IPv6
        counting rules; ``fast`` and ``full`` take the others."""
        unpack_pkt = _PKT_HDR.unpack_from
        linktype = self.linktype
        ethernet = linktype == LINKTYPE_ETHERNET
        vlan_valid = TP_STATUS_VLAN_VALID
        packets = nbytes = captured = counted = 0
        ts = 0.0
        ff = self._frame_fields()
        wide, wide_size = ff.struct.unpack_from, ff.struct.size
        ipv4, ipv6, frag_mask = ff.ipv4, ff.ipv6, ff.frag
        if paths is None or not ethernet:
            mac_usual = -1  # ``fast`` and ``full`` alone
            count4 = lookup4 = count6 = _not_counted
            full4 = _no_full4
        else:
            mac_usual = ETHERNET_MAC_OFFSET
            count4, lookup4, full4, count6 = paths
        udp = PROTO_UDP
        buf: Any = self.mm  # read as bytes are: indexed, sliced (a copy), unpacked
        while packets < MAX_BATCH:
            held = self._hold()
            if held is None:
                break
            base, num, p, end = held
            packets += num
            last = end - wide_size  # a frame header from here on: the short unpack
            try:
                for _ in range(num):
                    if p <= last:
                        (nxt, sec, nsec, snap, wire, status, mac, eth, vihl, frag, pr, key,
                         b44, flags) = wide(buf, p)
                    else:
                        nxt, sec, nsec, snap, wire, status, mac = unpack_pkt(buf, p)
                        eth = 0
                    ts = 1e-9 * nsec + sec  # float first: no int-to-float detour
                    o = p + mac
                    if (mac == mac_usual and eth == ipv4 and vihl == 0x45
                            and not frag & frag_mask and snap >= 42 and not status & vlan_valid):
                        nbytes += wire
                        captured += snap
                        if ts < until and (count4(pr, key, flags, b44, snap, wire, ts) or pr == udp
                                           and lookup4(buf, o, snap, wire, ts, key)):
                            counted += 1
                        else:
                            until = full4(buf, o, snap, wire, ts, pr, key, flags)
                        p += nxt
                        continue
                    if mac == mac_usual and eth == ipv6 and not status & vlan_valid:
                        nbytes += wire
                        captured += snap
                        if ts < until and count6(buf, o, snap, wire, ts):
                            counted += 1
                        else:
                            until = full(ts, linktype, buf[o:o + snap], wire)
                        p += nxt
                        continue
                    if status & vlan_valid:
                        # The tag's 4 bytes were on the wire, and are in the frame again.
                        wire += 4
                        nbytes += wire
                        captured += snap + 4
                        until = full(ts, linktype, _tagged(buf, p, o, snap, status), wire)
                        p += nxt
                        continue
                    nbytes += wire
                    captured += snap
                    if ethernet and ts < until and fast(buf, o, snap, wire, ts):
                        counted += 1
                    else:
                        until = full(ts, linktype, buf[o:o + snap], wire)
                    p += nxt
            finally:
                self._release(base)
        self.packets += packets
        self.bytes += nbytes
        return packets, nbytes, captured, counted, ts

    def frames(self, out: list[Frame], limit: int = MAX_BATCH) -> None:
        """The ready blocks' frames as tuples, into ``out`` (up to about ``limit``)."""
        unpack_pkt, linktype = _PKT_HDR.unpack_from, self.linktype
        while len(out) < limit:
            block = self._take()
            if block is None:
                return
            buf, num, p = block
            for _ in range(num):
                nxt, sec, nsec, snap, wire, status, mac = unpack_pkt(buf, p)
                o = p + mac
                if status & TP_STATUS_VLAN_VALID:
                    frame = _tagged(buf, p, o, snap, status)
                    wire += 4
                else:
                    frame = buf[o:o + snap]
                out.append((sec + nsec * 1e-9, linktype, frame, wire))
                self.bytes += wire
                p += nxt
            self.packets += num

    def close(self) -> None:
        self.mm.close()


def _tagged(buf: bytes, hdr: int, start: int, snap: int, status: int) -> bytes:
    """The frame at ``buf[start:start + snap]`` with the VLAN tag the kernel took out
    (``tp_vlan_tci``, and ``tp_vlan_tpid`` when valid, of the frame's header at ``hdr``)
    put back after the two MAC addresses, as it was on the wire."""
    tci, tpid = _VLAN.unpack_from(buf, hdr + 32)
    if not status & TP_STATUS_VLAN_TPID_VALID:
        tpid = ETH_P_8021Q
    return buf[start:start + 12] + _TAG.pack(tpid, tci & 0xFFFF) + buf[start + 12:start + snap]


class AfPacketSource:
    """Frames on ``iface`` (see the module's docstring). ``ring=False`` forces the plain
    recv reader; ``promiscuous`` (the default) also takes frames for other machines, as a
    mirror port delivers them."""

    name = "af_packet"
    kind = "frames"

    def __init__(self, iface: str, *, promiscuous: bool = True, ring: bool = True,
                 block_size: int = BLOCK_SIZE, block_nr: int = BLOCK_NR,
                 clock: Callable[[], float] = time.time):
        self.iface = iface
        self.linktype = interface_linktype(iface)
        self.clock = clock
        self.block_size = block_size
        self.block_nr = block_nr
        self.recv_packets = self.recv_bytes = 0  # read with plain recv calls
        self.received = self.dropped = 0
        self.ring_problem: str | None = None  # why the ring is not used, when it is not
        self._ring: Ring | None = None
        try:
            # Protocol 0: nothing is queued until bind(), after the filter is in place.
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise SourceError("capturing needs CAP_NET_RAW (run as root, or give netwatch "
                              "that capability)") from None
        except OSError as e:
            raise SourceError(f"cannot open an AF_PACKET socket: {e.strerror or e}") from None
        try:
            if self.linktype == LINKTYPE_ETHERNET:
                attach_filter(self.sock, ETHERNET_FILTER)
            if ring:
                self._setup_ring()
            else:
                self.ring_problem = "turned off"
            self.sock.bind((iface, ETH_P_ALL))
            if promiscuous:
                mreq = struct.pack("=iHH8s", socket.if_nametoindex(iface), PACKET_MR_PROMISC,
                                   0, b"")
                self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as e:
            self.close()
            raise SourceError(f"cannot capture on {iface}: {e.strerror or e}") from None
        self._poller = select.poll()
        self._poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        if self._ring is None:
            self.sock.setblocking(False)
            self._buf = bytearray(RECV_BUFFER)

    @property
    def ring(self) -> bool:
        return self._ring is not None

    @property
    def in_place(self) -> bool:
        """Whether ``walk`` may be used (there is a ring to walk)."""
        return self._ring is not None

    @property
    def packets(self) -> int:
        return self.recv_packets + (self._ring.packets if self._ring is not None else 0)

    @property
    def bytes(self) -> int:
        return self.recv_bytes + (self._ring.bytes if self._ring is not None else 0)

    def _setup_ring(self) -> None:
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = struct.pack("=7I", self.block_size, self.block_nr, FRAME_SIZE,
                              self.block_size // FRAME_SIZE * self.block_nr,
                              RETIRE_TIMEOUT_MS, 0, 0)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            mm = mmap.mmap(self.sock.fileno(), self.block_size * self.block_nr,
                           mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._ring = Ring(mm, self.block_size, self.block_nr, self.linktype)
        except OSError as e:
            # The socket is still good for plain reads, at TPACKET_V1's defaults.
            self.ring_problem = e.strerror or str(e)
            self._ring = None
            self.sock.close()
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            if self.linktype == LINKTYPE_ETHERNET:
                attach_filter(self.sock, ETHERNET_FILTER)

    # ------------------------------------------------------------------ reading

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a block to be handed over; whether one is ready."""
        ring = self._ring
        assert ring is not None
        if not ring.ready():
            self._poller.poll(max(0, int(timeout_s * 1000)))
        return ring.ready()

    def walk(self, fast: FastCount, full: FullPath, until: float,
             paths: Paths | None = None) -> Walked:
        """The ring's ready frames in place (``Ring.walk``; the daemon's hot loop)."""
        assert self._ring is not None
        return self._ring.walk(fast, full, until, paths)

    def poll(self, timeout_s: float) -> list[Frame]:
        """The frames that arrived, waiting up to ``timeout_s`` when there are none."""
        out: list[Frame] = []
        if self._ring is not None:
            if self.wait(timeout_s):
                self._ring.frames(out)
        else:
            self._recv(out)
            if not out:
                self._poller.poll(max(0, int(timeout_s * 1000)))
                self._recv(out)
            self.recv_packets += len(out)
        return out

    def _recv(self, out: list[Frame]) -> None:
        """The fallback: what is queued, one recv each (MSG_TRUNC gives the frame's full
        length, which is also its length on the wire). Tags the kernel took out stay out
        (they would need PACKET_AUXDATA)."""
        buf, sock, linktype = self._buf, self.sock, self.linktype
        now = self.clock()
        while len(out) < MAX_BATCH:
            try:
                n = sock.recv_into(buf, len(buf), socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return
            out.append((now, linktype, bytes(buf[:min(n, len(buf))]), n))
            self.recv_bytes += n

    # ------------------------------------------------------------------ the rest

    def stats(self) -> dict[str, Any]:
        """Cumulative: frames and bytes handed over, and the kernel's PACKET_STATISTICS
        (which resets on each read, so it is added up here)."""
        if self.sock.fileno() >= 0:
            layout = _STATS_V3 if self._ring is not None else _STATS_V1
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, layout.size)
            got, drops = layout.unpack(raw)[:2]
            self.received += got
            self.dropped += drops
        return {"packets": self.packets, "bytes": self.bytes, "received": self.received,
                "dropped": self.dropped, "ring": self.ring}

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        sock = getattr(self, "sock", None)
        if sock is not None and sock.fileno() >= 0:
            sock.close()


def afpacket_available() -> str | None:
    """None when this process may open AF_PACKET sockets, else why not."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return "opening an AF_PACKET socket needs CAP_NET_RAW"
    except OSError as e:
        return f"this kernel has no AF_PACKET sockets: {e.strerror or e}"
    if not os.path.isdir("/sys/class/net"):
        return "no /sys/class/net to find interfaces in"
    return None
