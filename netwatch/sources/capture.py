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
    src = open_source(path, stats)
    return src.frames() if isinstance(src, PcapFile) else src


def open_source(path: str, stats: ReadStats | None = None) -> PcapFile | Iterator[Frame]:
    """Like ``open_capture``, but a classic pcap file comes back as a ``PcapFile``, which the
    pipeline walks in chunks. Same errors as ``open_capture``."""
    st = stats if stats is not None else ReadStats()
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the reader at the end
    except OSError as e:
        raise CaptureError(f"cannot open: {e.strerror or e}") from None
    try:
        head = fh.read(24)
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
        fh.seek(0)
        return _read_pcapng(fh, st)
    fh.close()
    raise CaptureError(f"not a pcap or pcapng capture (unknown magic {magic.hex()})")


class PcapFile:
    """A classic pcap file read in large chunks.

    The pipeline's hot loop walks the records of ``buf`` itself (a generator per packet
    costs more than the work on most packets) and calls ``refill`` when the next record
    does not fit; ``frames`` is the plain iterator for everything else."""

    def __init__(self, fh: BinaryIO, head: bytes, st: ReadStats):
        magic = head[:4]
        bo = "<" if magic in (PCAP_MAGIC_US_LE, PCAP_MAGIC_NS_LE) else ">"
        self.scale = 1e-9 if magic in (PCAP_MAGIC_NS_LE, PCAP_MAGIC_NS_BE) else 1e-6
        # The upper bits of the link type field carry FCS information.
        self.linktype = struct.unpack(bo + "I", head[20:24])[0] & 0x0FFFFFFF
        self.record = struct.Struct(bo + "IIII")
        self.fh: BinaryIO | None = fh
        self.st = st
        st.interfaces.append(self.linktype)

    def refill(self, buf: bytes, pos: int, need: int) -> bytes | None:
        """The unread part of ``buf`` (from ``pos``) plus more of the file, at least ``need``
        bytes long; None at the end of the file, noting a record cut short."""
        rest = buf[pos:]
        while len(rest) < need:
            more = self.fh.read(max(READ_CHUNK, need)) if self.fh is not None else b""
            if not more:
                if rest:
                    self.st.truncated = True
                    self.st.truncated_detail = ("file ends inside a record header"
                                                if len(rest) < 16 else "last packet cut short")
                self.close()
                return None
            rest += more
        return rest

    def implausible(self, incl: int) -> None:
        """A record length no capture tool writes: the rest of the file is skipped."""
        self.st.truncated = True
        self.st.truncated_detail = f"record length {incl} is not plausible; rest of file skipped"
        self.close()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

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


def _read_pcapng(fh: BinaryIO, st: ReadStats) -> Iterator[Frame]:
    data_parts: list[bytes] = []
    while True:
        chunk = fh.read(READ_CHUNK)
        if not chunk:
            break
        data_parts.append(chunk)
    fh.close()
    data = b"".join(data_parts)
    return _walk_pcapng(data, st)


def _walk_pcapng(data: bytes, st: ReadStats) -> Iterator[Frame]:
    pos = 0
    n = len(data)
    bo = "<"
    ifaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    u32 = struct.Struct("<I")
    while pos < n:
        if n - pos < 12:
            st.truncated = True
            st.truncated_detail = "file ends inside a block header"
            return
        btype_raw = data[pos:pos + 4]
        if btype_raw == PCAPNG_SHB:
            bom = data[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                bo = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                bo = ">"
            else:
                raise_bad = "section header has no byte-order magic"
                st.truncated = True
                st.truncated_detail = raise_bad
                return
            u32 = struct.Struct(bo + "I")
            ifaces = []  # interface ids are per section
        btype = u32.unpack_from(data, pos)[0]
        blen = u32.unpack_from(data, pos + 4)[0]
        if blen < 12 or blen % 4:
            st.truncated = True
            st.truncated_detail = f"block of impossible length {blen}; rest of file skipped"
            return
        if pos + blen > n:
            st.truncated = True
            st.truncated_detail = "last block cut short"
            return
        body = pos + 8
        if btype == 6 and blen >= 32:  # Enhanced Packet Block (28 bytes of fields and trailer)
            iface, ts_hi, ts_lo, incl, orig = struct.unpack_from(bo + "IIIII", data, body)
            if iface < len(ifaces) and incl <= blen:
                lt, unit = ifaces[iface]
                ts = ((ts_hi << 32) | ts_lo) * unit
                if ts > MAX_TIMESTAMP:
                    st.bad_timestamps += 1
                else:
                    st.packets += 1
                    yield ts, lt, data[body + 20:body + 20 + incl], wire_length(incl, orig)
        elif btype == 3 and blen >= 16:  # Simple Packet Block: no timestamp, interface 0
            if ifaces:
                # The block's length field is the original packet length (pcapng §4.4).
                orig = u32.unpack_from(data, body)[0]
                incl = min(orig, blen - 16)
                st.packets += 1
                yield 0.0, ifaces[0][0], data[body + 4:body + 4 + incl], wire_length(incl, orig)
        elif btype == 2 and blen >= 32:  # obsolete Packet Block
            iface, _drops, ts_hi, ts_lo, incl, orig = struct.unpack_from(bo + "HHIIII", data,
                                                                         body)
            if iface < len(ifaces):
                lt, unit = ifaces[iface]
                ts = ((ts_hi << 32) | ts_lo) * unit
                if ts > MAX_TIMESTAMP:
                    st.bad_timestamps += 1
                else:
                    st.packets += 1
                    yield ts, lt, data[body + 20:body + 20 + incl], wire_length(incl, orig)
        elif btype == 1:  # Interface Description Block
            lt = struct.unpack_from(bo + "H", data, body)[0]
            unit = _if_tsresol(data, body + 8, pos + blen - 4, bo)
            ifaces.append((lt, unit))
            st.interfaces.append(lt)
        pos += blen


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
