"""TPACKET_V3 receive rings laid out in memory as the kernel fills them, for testing (and
timing) netwatch.sources.afpacket.Ring without a socket.

The layout is the kernel's (linux/if_packet.h, net/packet/af_packet.c): a block starts with
its 48-byte ``tpacket_block_desc``; each frame has a 48-byte ``tpacket3_hdr`` and starts at
``tp_mac`` (82 on Ethernet: the header and a ``sockaddr_ll`` rounded up to 16, less the
14-byte link header); frames follow each other at 8-byte alignment (``tp_next_offset``).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netwatch.sources.afpacket import (
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    Ring,
)

BLOCK_HEADER = 48
FRAME_HEADER = struct.Struct("=IIIIIIHHIIHH")  # tpacket3_hdr up to tp_padding (40 bytes)
MAC_OFFSET = 82


@dataclass
class RingFrame:
    """One frame as the kernel hands it over: the bytes it keeps (a VLAN tag taken out),
    its length on the wire (without that tag), and the tag (TCI, TPID or None) if any."""

    ts: float
    frame: bytes
    wire: int
    vlan: tuple[int, int | None] | None = None


def blocks(frames: Iterable[RingFrame], block_size: int) -> Iterator[bytes]:
    """The frames packed into blocks of ``block_size`` bytes, each ready for netwatch
    (TP_STATUS_USER)."""
    body = bytearray()
    num = 0
    p = BLOCK_HEADER

    def close() -> bytes:
        head = struct.pack("=IIIIIIQ", 3, 0, TP_STATUS_USER, num, BLOCK_HEADER, p, 0)
        out = head.ljust(BLOCK_HEADER, b"\0") + bytes(body)
        return out.ljust(block_size, b"\0")

    for f in frames:
        size = -(-(MAC_OFFSET + len(f.frame)) // 8) * 8
        if p + size > block_size:
            yield close()
            body.clear()
            num, p = 0, BLOCK_HEADER
        status = TP_STATUS_USER
        tci = tpid = 0
        if f.vlan is not None:
            status |= TP_STATUS_VLAN_VALID
            tci = f.vlan[0]
            if f.vlan[1] is not None:
                status |= TP_STATUS_VLAN_TPID_VALID
                tpid = f.vlan[1]
        sec = int(f.ts)
        nsec = round((f.ts - sec) * 1e9)
        head = FRAME_HEADER.pack(size, sec, nsec, len(f.frame), f.wire, status, MAC_OFFSET,
                                 MAC_OFFSET + 14, 0, tci, tpid, 0)
        body += head.ljust(MAC_OFFSET, b"\0") + f.frame
        body += bytes(size - MAC_OFFSET - len(f.frame))
        num += 1
        p += size
    if num:
        yield close()


class FakeRing:
    """A ``Ring`` over anonymous memory, filled with ``load`` as the kernel would fill the
    socket's: a block is written only once netwatch has given it back."""

    def __init__(self, block_size: int, block_nr: int, linktype: int = 1):
        self.mm = mmap.mmap(-1, block_size * block_nr)
        self.ring = Ring(self.mm, block_size, block_nr, linktype)
        self.block_size, self.block_nr = block_size, block_nr
        self.next = 0  # the block the kernel fills next

    def load(self, pending: Iterator[bytes]) -> bool:
        """Fill every free block from ``pending``; False once ``pending`` is used up."""
        size = self.block_size
        while True:
            base = self.next * size
            if struct.unpack_from("=I", self.mm, base + 8)[0] != TP_STATUS_KERNEL:
                return True
            block = next(pending, None)
            if block is None:
                return False
            self.mm[base:base + size] = block
            self.next = (self.next + 1) % self.block_nr
