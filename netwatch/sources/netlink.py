"""A small netfilter netlink client: messages and attributes with socket and struct.

The nflog source reads two netfilter subsystems over ``AF_NETLINK``/``NETLINK_NETFILTER``:
the packet log (nfnetlink_log) and conntrack (ctnetlink). Both speak the same framing, which
is all this module knows:

- a netlink message: ``struct nlmsghdr`` (u32 length, u16 type, u16 flags, u32 seq,
  u32 pid; host byte order), padded to 4 bytes (linux/netlink.h);
- netfilter's family header after it: ``struct nfgenmsg`` (u8 family, u8 version,
  be16 res_id), and the message type ``subsystem << 8 | message``
  (linux/netfilter/nfnetlink.h);
- attributes: ``struct nlattr`` (u16 length, u16 type; host byte order), value padded to
  4 bytes; the top two type bits are the NLA_F_NESTED / NLA_F_NET_BYTEORDER flags.

pyroute2 has no nfnetlink_log support, and the work here is a few slices per message, so no
dependency is added for it.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from collections.abc import Iterator

AF_NETLINK = getattr(socket, "AF_NETLINK", 16)
NETLINK_NETFILTER = 12  # linux/netlink.h; not exported by Python's socket module
SOL_NETLINK = 270  # linux/socket.h
NETLINK_ADD_MEMBERSHIP = 1  # linux/netlink.h
NETLINK_NO_ENOBUFS = 5

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
NFNETLINK_V0 = 0

NLMSG_HDR = struct.Struct("=IHHII")
NFGENMSG = struct.Struct("=BBH")  # res_id is big-endian: packed by hand below
NLATTR = struct.Struct("=HH")
HDR_LEN = NLMSG_HDR.size + NFGENMSG.size

# A receive buffer this large holds a few thousand logged packets of a burst while Python
# is busy (the kernel default, ~200 KiB, holds ~100 full-size ones). Set with
# SO_RCVBUFFORCE where CAP_NET_ADMIN allows, otherwise capped by net.core.rmem_max.
RCVBUF = 8 << 20
# One recv reads up to this much: a batch of many netlink messages (larger than the
# biggest batch nfnetlink_log sends, 128 KiB, so none is cut).
RECV_BYTES = 1 << 18
# The kernel acknowledges a configuration request at once; silence means a broken socket.
REQUEST_TIMEOUT_S = 2.0

Attrs = dict[int, bytes]


class NetlinkError(OSError):
    """The kernel refused a request (an NLMSG_ERROR with a negative code)."""


def align(n: int) -> int:
    return (n + 3) & ~3


def attr(atype: int, value: bytes) -> bytes:
    """One attribute, padded."""
    n = NLATTR.size + len(value)
    return NLATTR.pack(n, atype) + value + b"\0" * (align(n) - n)


def nested(atype: int, *children: bytes) -> bytes:
    return attr(atype | NLA_F_NESTED, b"".join(children))


def message(subsys: int, msg: int, flags: int, family: int, body: bytes, seq: int = 0,
            res_id: int = 0) -> bytes:
    """A netfilter netlink message: nlmsghdr, nfgenmsg, attributes."""
    payload = bytes((family, NFNETLINK_V0)) + struct.pack("!H", res_id) + body
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), (subsys << 8) | msg, flags, seq,
                          0) + payload


def parse_attrs(buf: bytes | memoryview, pos: int, end: int) -> Attrs:
    """The attributes between ``pos`` and ``end``, by type (flags stripped); a cut-short
    attribute ends the walk."""
    out: Attrs = {}
    unpack = NLATTR.unpack_from
    while pos + 4 <= end:
        n, t = unpack(buf, pos)
        if n < 4 or pos + n > end:
            break
        out[t & NLA_TYPE_MASK] = bytes(buf[pos + 4:pos + n])
        pos += align(n)
    return out


def walk(buf: bytes | memoryview, n: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, flags, start of the body after the header, end) of each message in a batch;
    a message whose length does not fit ends the batch."""
    pos = 0
    unpack = NLMSG_HDR.unpack_from
    while pos + NLMSG_HDR.size <= n:
        length, mtype, flags, _seq, _pid = unpack(buf, pos)
        if length < NLMSG_HDR.size or pos + length > n:
            return
        yield mtype, flags, pos + NLMSG_HDR.size, pos + length
        pos += align(length)


def error_code(buf: bytes | memoryview, body: int) -> int:
    """The (positive) errno of an NLMSG_ERROR; 0 is an acknowledgement."""
    return -struct.unpack_from("=i", buf, body)[0]


class NetfilterSocket:
    """An ``AF_NETLINK`` socket on NETLINK_NETFILTER, optionally subscribed to multicast
    groups, with a large receive buffer."""

    def __init__(self, groups: tuple[int, ...] = (), rcvbuf: int = RCVBUF):
        self.sock = socket.socket(AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        for g in groups:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
        self.buf = bytearray(RECV_BYTES)
        self.view = memoryview(self.buf)
        self.seq = 0
        self.overruns = 0  # ENOBUFS: the kernel dropped messages for this socket

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, (0, 0))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def recv(self, block: bool = True) -> int:
        """Read one batch into ``buf``; its length (0 when nothing is waiting)."""
        while True:
            try:
                return self.sock.recv_into(self.buf, 0, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return 0
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise

    def request(self, data: bytes) -> None:
        """Send a request that is answered with an acknowledgement; raise on an error."""
        self.send(data)
        while True:
            ready, _, _ = select.select([self.sock], [], [], REQUEST_TIMEOUT_S)
            if not ready:
                raise NetlinkError(errno.ETIMEDOUT, "no answer from the kernel")
            n = self.recv(block=False)
            for mtype, _flags, body, _end in walk(self.view, n):
                if mtype == NLMSG_ERROR:
                    code = error_code(self.view, body)
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return
            if n == 0:
                return

    def close(self) -> None:
        self.sock.close()
