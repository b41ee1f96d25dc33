"""Capture files: classic pcap and pcapng, read with struct on the hot path.

A capture yields ``(timestamp, linktype, frame, wire_len)`` tuples: ``wire_len`` is the
packet's original length on the wire, which volumes are counted in; a capture taken with a
snap length keeps fewer bytes (``len(frame)``) than the wire carried. pcapng files may hold several
interfaces with different link types and timestamp resolutions; each Enhanced Packet Block
names its interface, so the link type travels with every frame.

Formats: pcap per the tcpdump/libpcap file format (draft-ietf-opsawg-pcap), pcapng per
draft-ietf-opsawg-pcapng (SHB 0x0A0D0D0A, IDB 1, SPB 3, EPB 6, obsolete PB 2).
dpkt's pcapng reader keeps only the first interface, which is why this reader exists.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

PCAP_MAGIC_US_LE = b"\xd4\xc3\xb2\xa1"
PCAP_MAGIC_US_BE = b"\xa1\xb2\xc3\xd4"
PCAP_MAGIC_NS_LE = b"\x4d\x3c\xb2\xa1"
PCAP_MAGIC_NS_BE = b"\xa1\xb2\x3c\x4d"
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

# A frame larger than this is a corrupt length field, not a packet: 256 KiB is the largest
# snaplen libpcap uses (MAXIMUM_SNAPLEN in pcap-int.h), and tcpdump refuses larger records.
MAX_RECORD = 262144
# A packet time past the last second of the year 9999 is a corrupt record, not a packet:
# no calendar the event log writes reaches it (pcapng's 64-bit timestamps can).
MAX_TIMESTAMP = 253402300799.0
# Reading in large chunks keeps syscalls off the per-packet path.
READ_CHUNK = 1 << 20

Frame = tuple[float, int, bytes, int]


def wire_length(captured: int, original: int) -> int:
    """The packet's length on the wire: the record's original length, unless that field is
    smaller than what was captured or larger than any packet can be (a corrupt record)."""
    if captured <= original <= MAX_RECORD:
        return original
    return captured


class CaptureError(Exception):
    """The file is not a capture this reader understands (or cannot be opened)."""


@dataclass
class ReadStats:
    """What the reader noticed about a file besides its packets."""

    packets: int = 0
    truncated: bool = False
    truncated_detail: str = ""
    interfaces: list[int] = field(default_factory=list)
    bad_timestamps: int = 0  # records skipped for a time past MAX_TIMESTAMP (malformed)


def open_capture(path: str, stats: ReadStats | None = None) -> Iterator[Frame]:
    """Open ``path`` and return an iterator over its frames.

    Raises CaptureError at once when the file cannot be read or has no capture header, so
    a caller can report the file before any packet is processed. A file that ends inside a
    record is not an error: the iterator stops and ``stats.truncated`` is set.
    """
    return open_source(path, stats).frames()


def open_source(path: str, stats: ReadStats | None = None) -> PcapFile | PcapngFile:
    """Like ``open_capture``, but the file comes back as a ``PcapFile`` or a ``PcapngFile``,
    whose records the pipeline walks in place, chunk by chunk. Same errors as
    ``open_capture``."""
    st = stats if stats is not None else ReadStats()
    try:
        # Unbuffered: every read is a large chunk (see ChunkedFile.more).
        fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the reader at the end
    except OSError as e:
        raise CaptureError(f"cannot open: {e.strerror or e}") from None
    try:
        head = fh.read(24)
        while 0 < len(head) < 24:  # a pipe may hand the header over in pieces
            more = fh.read(24 - len(head))
            if not more:
                break
            head += more
    except OSError as e:
        fh.close()
        raise CaptureError(f"cannot read: {e.strerror or e}") from None
    if len(head) == 0:
        fh.close()
        raise CaptureError("empty file")
    magic = head[:4]
    if magic in (PCAP_MAGIC_US_LE, PCAP_MAGIC_US_BE, PCAP_MAGIC_NS_LE, PCAP_MAGIC_NS_BE):
        if len(head) < 24:
            fh.close()
            raise CaptureError("pcap header cut short")
        return PcapFile(fh, head, st)
    if magic == PCAPNG_SHB:
        return PcapngFile(fh, head, st)
    fh.close()
    raise CaptureError(f"not a pcap or pcapng capture (unknown magic {magic.hex()})")


class ChunkedFile:
    """A capture file read in large chunks, whatever its size: at most a chunk (or one
    record, if larger) is held at a time. The pipeline's hot loops walk the records of a
    chunk in place (a generator per packet costs more than the work on most packets) and
    ask for the next chunk when a record does not fit."""

    def __init__(self, fh: BinaryIO, st: ReadStats, data: bytes):
        self.fh: BinaryIO | None = fh
        self.st = st
        # Bytes read past the header, before the first chunk (a pipe cannot seek back).
        self.data = data
        self.seekable = fh.seekable()
        # The file offset the next read starts at (the end of the last chunk read).
        self.offset = fh.tell() if self.seekable else 0

    def more(self, buf: bytes, pos: int, need: int) -> bytes:
        """The file from ``buf[pos]`` on, at least ``need`` bytes, or fewer at the end of the
        file. The unread part of ``buf`` is read again from the file (the page cache) rather
        than joined to the next chunk: joining copies the whole new chunk once more."""
        rest = len(buf) - pos
        fh = self.fh
        if fh is None:
            return buf[pos:]
        if self.data:
            data, self.data = buf[pos:] + self.data, b""
        elif rest and self.seekable:
            self.offset -= rest
            fh.seek(self.offset)
            data = b""
        else:
            data = buf[pos:]
        while len(data) < need or not data:
            more = fh.read(max(READ_CHUNK, need - len(data)))
            if not more:
                break
            self.offset += len(more)
            data = data + more if data else more
        return data

    def cut(self, detail: str) -> None:
        """The file ends inside a record, or a record cannot be one: note it and stop."""
        self.st.truncated = True
        self.st.truncated_detail = detail
        self.close()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class PcapFile(ChunkedFile):
    """A classic pcap file: the records of ``buf`` are walked by the pipeline's hot loop
    (``Pipeline.feed_pcap``), calling ``refill`` when the next record does not fit;
    ``frames`` is the plain iterator for everything else."""

    def __init__(self, fh: BinaryIO, head: bytes, st: ReadStats):
        super().__init__(fh, st, b"")
        magic = head[:4]
        bo = "<" if magic in (PCAP_MAGIC_US_LE, PCAP_MAGIC_NS_LE) else ">"
        self.scale = 1e-9 if magic in (PCAP_MAGIC_NS_LE, PCAP_MAGIC_NS_BE) else 1e-6
        # The upper bits of the link type field carry FCS information.
        self.linktype = struct.unpack(bo + "I", head[20:24])[0] & 0x0FFFFFFF
        self.record = struct.Struct(bo + "IIII")
        st.interfaces.append(self.linktype)

    def refill(self, buf: bytes, pos: int, need: int) -> bytes | None:
        """The unread part of ``buf`` (from ``pos``) plus more of the file, at least ``need``
        bytes long; None at the end of the file, noting a record cut short."""
        data = self.more(buf, pos, need)
        if len(data) >= need:
            return data
        if data:
            self.cut("file ends inside a record header" if len(data) < 16
                     else "last packet cut short")
        self.close()
        return None

    def implausible(self, incl: int) -> None:
        """A record length no capture tool writes: the rest of the file is skipped."""
        self.cut(f"record length {incl} is not plausible; rest of file skipped")

    def frames(self) -> Iterator[Frame]:
        unpack_rec = self.record.unpack_from
        scale, linktype, st = self.scale, self.linktype, self.st
        buf, pos = b"", 0
        try:
            while True:
                if len(buf) - pos < 16:
                    more = self.refill(buf, pos, 16)
                    if more is None:
                        return
                    buf, pos = more, 0
                sec, frac, incl, orig = unpack_rec(buf, pos)
                if incl > MAX_RECORD:
                    self.implausible(incl)
                    return
                end = pos + 16 + incl
                if end > len(buf):
                    more = self.refill(buf, pos, 16 + incl)
                    if more is None:
                        return
                    buf, pos = more, 0
                    end = 16 + incl
                st.packets += 1
                yield sec + frac * scale, linktype, buf[pos + 16:end], wire_length(incl, orig)
                pos = end
        finally:
            self.close()


# The fixed part of an Enhanced Packet Block: type, length, interface, timestamp (high,
# low), captured length, original length; then the packet, options and the length again.
EPB_FIELDS = 28
EPB_OVERHEAD = 32
# A block longer than this is a corrupt length field: the largest packet (MAX_RECORD) with
# its block's fields leaves ample room for options; refusing longer ones keeps the reader's
# memory bounded whatever a length field says.
MAX_BLOCK = 4 << 20


class PcapngFile(ChunkedFile):
    """A pcapng file, walked block by block from chunks: memory stays at a chunk whatever
    the file's size. ``Pipeline.feed_pcapng`` walks Enhanced Packet Blocks in place (the
    common case: one unpack per packet, as for classic pcap) and hands every other block to
    ``walk``, which keeps the section's byte order and interfaces; ``frames`` is the plain
    iterator."""

    def __init__(self, fh: BinaryIO, head: bytes, st: ReadStats):
        super().__init__(fh, st, head)
        # Interfaces of the current section: (link type, seconds per timestamp unit).
        self.ifaces: list[tuple[int, float]] = []
        self._byte_order("<")
        # Where ``walk`` stopped: the offset of the first block not wholly in the buffer,
        # and how many bytes that block needs; ``broken`` once the file cannot be walked on.
        self.left = 0
        self.need = 12
        self.broken = False

    def _byte_order(self, bo: str) -> None:
        self.bo = bo
        self.u32 = struct.Struct(bo + "I")
        self.epb = struct.Struct(bo + "IIIIIII")

    def refill(self, buf: bytes, pos: int, need: int) -> bytes | None:
        """The unread part of ``buf`` plus more of the file: ``need`` bytes, or what is left
        at the end of the file; None when nothing is."""
        data = self.more(buf, pos, need)
        if data:
            return data
        self.close()
        return None

    def walk(self, data: bytes, pos: int, n: int, limit: int = -1) -> Iterator[Frame]:
        """The frames of the whole blocks in ``data[pos:n]`` (at most ``limit`` blocks, if
        given), keeping the section's state; the caller counts them. Stops at a block not
        wholly there (``left`` and ``need`` say where and how much), or for good
        (``broken``) at one that cannot be a block."""
        while pos < n and limit != 0:
            limit -= 1
            self.left, self.need = pos, 12
            if n - pos < 12:
                return
            if data[pos:pos + 4] == PCAPNG_SHB:
                bom = data[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    self._byte_order("<")
                elif bom == b"\x1a\x2b\x3c\x4d":
                    self._byte_order(">")
                else:
                    self.broken = True
                    self.cut("section header has no byte-order magic")
                    return
                self.ifaces = []  # interface ids are per section
            u32, bo, ifaces = self.u32, self.bo, self.ifaces
            btype = u32.unpack_from(data, pos)[0]
            blen = u32.unpack_from(data, pos + 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                self.broken = True
                self.cut(f"block of impossible length {blen}; rest of file skipped")
                return
            if pos + blen > n:
                self.need = blen
                return
            body = pos + 8
            if btype == 6 and blen >= EPB_OVERHEAD:  # Enhanced Packet Block
                _t, _l, iface, ts_hi, ts_lo, incl, orig = self.epb.unpack_from(data, pos)
                if iface < len(ifaces) and incl <= blen:
                    lt, unit = ifaces[iface]
                    ts = ((ts_hi << 32) | ts_lo) * unit
                    if ts > MAX_TIMESTAMP:
                        self.st.bad_timestamps += 1
                    else:
                        yield ts, lt, data[body + 20:body + 20 + incl], wire_length(incl, orig)
            elif btype == 3 and blen >= 16:  # Simple Packet Block: no timestamp, interface 0
                if ifaces:
                    # The block's length field is the original packet length (pcapng §4.4).
                    orig = u32.unpack_from(data, body)[0]
                    incl = min(orig, blen - 16)
                    yield (0.0, ifaces[0][0], data[body + 4:body + 4 + incl],
                           wire_length(incl, orig))
            elif btype == 2 and blen >= 32:  # obsolete Packet Block
                iface, _drops, ts_hi, ts_lo, incl, orig = struct.unpack_from(bo + "HHIIII",
                                                                             data, body)
                if iface < len(ifaces):
                    lt, unit = ifaces[iface]
                    ts = ((ts_hi << 32) | ts_lo) * unit
                    if ts > MAX_TIMESTAMP:
                        self.st.bad_timestamps += 1
                    else:
                        yield ts, lt, data[body + 20:body + 20 + incl], wire_length(incl, orig)
            elif btype == 1:  # Interface Description Block
                lt = struct.unpack_from(bo + "H", data, body)[0]
                unit = _if_tsresol(data, body + 8, pos + blen - 4, bo)
                ifaces.append((lt, unit))
                self.st.interfaces.append(lt)
            pos += blen
        self.left, self.need = pos, 12

    def ended(self, buf: bytes, pos: int) -> None:
        """The file ended with ``buf[pos:]`` unwalked: note a block cut short."""
        if len(buf) > pos and not self.broken:
            self.cut("file ends inside a block header" if len(buf) - pos < 12
                     else "last block cut short")
        self.close()

    def frames(self) -> Iterator[Frame]:
        buf, pos = b"", 0
        try:
            while not self.broken:
                more = self.refill(buf, pos, self.need)
                if more is None:
                    return
                buf = more
                at_end = len(buf) < self.need
                for frame in self.walk(buf, 0, len(buf)):
                    self.st.packets += 1
                    yield frame
                pos = self.left
                if at_end:
                    self.ended(buf, pos)
                    return
        finally:
            self.close()


def _if_tsresol(data: bytes, opt: int, end: int, bo: str) -> float:
    """Seconds per timestamp unit from an IDB's options (if_tsresol, code 9); default 1 µs."""
    while opt + 4 <= end:
        code, length = struct.unpack_from(bo + "HH", data, opt)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = data[opt + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        opt += 4 + ((length + 3) & ~3)
    return 1e-6
