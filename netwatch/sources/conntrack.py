"""Connection counters and ends from conntrack, over ctnetlink.

In nflog mode the router hands netwatch only the first packets of each connection, so the
volume of a session and the moment it ends come from the kernel's connection tracking:

- events (multicast groups NFNLGRP_CONNTRACK_NEW/UPDATE/DESTROY): a DESTROY carries the
  connection's final packet and byte counters in each direction when accounting is on
  (``net.netfilter.nf_conntrack_acct=1``);
- a GET for one connection's tuple answers with its counters now; netwatch asks this for
  the few connections it follows (those with a detection or in a session).

Layouts from linux/netfilter/nfnetlink_conntrack.h (CTA_* attributes, tuples nested as
CTA_TUPLE_IP {CTA_IP_V4_SRC…} and CTA_TUPLE_PROTO {CTA_PROTO_NUM, ports}; counters are
big-endian u64) and linux/netfilter/nfnetlink.h (groups, subsystem 1 = ctnetlink).
"""

from __future__ import annotations

import select
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from .netlink import (
    NLM_F_REQUEST,
    NLMSG_ERROR,
    REQUEST_TIMEOUT_S,
    NetfilterSocket,
    attr,
    error_code,
    message,
    nested,
    parse_attrs,
    walk,
)

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0  # also what an UPDATE event and a GET's answer are
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2  # a DESTROY event
NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3
NLM_F_CREATE = 0x400  # on an event: the connection is new

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2

ACCT_SYSCTL = Path("/proc/sys/net/netfilter/nf_conntrack_acct")

_U64 = struct.Struct("!Q").unpack
_PORT = struct.Struct("!H")


@dataclass(slots=True)
class Conn:
    """One connection as conntrack reports it. ``client``/``cport`` is the side that opened
    it (the original tuple's source); ``server``/``sport`` the side that answered (the reply
    tuple's source: the real server also behind a port forward). Counters are IP bytes,
    original direction first."""

    proto: int
    client: bytes
    server: bytes
    cport: int
    sport: int
    pkts: tuple[int, int] = (0, 0)
    bytes: tuple[int, int] = (0, 0)
    ended: bool = False
    new: bool = False
    counted: bool = False  # the kernel sent counters (accounting is on)


def parse_conn(buf: bytes | memoryview, body: int, end: int, mtype: int, flags: int
               ) -> Conn | None:
    """A ctnetlink message body (after nlmsghdr) as a Conn; None if it lacks a tuple."""
    top = parse_attrs(buf, body + 4, end)  # skip nfgenmsg
    orig, reply = _tuple(top.get(CTA_TUPLE_ORIG)), _tuple(top.get(CTA_TUPLE_REPLY))
    if orig is None:
        return None
    proto, src, _dst, sp, _dp = orig
    if reply is not None:
        server, sport = reply[1], reply[3]
    else:
        server, sport = orig[2], orig[4]
    c = Conn(proto, src, server, sp, sport, ended=(mtype & 0xFF) == IPCTNL_MSG_CT_DELETE,
             new=bool(flags & NLM_F_CREATE))
    co, cr = _counters(top.get(CTA_COUNTERS_ORIG)), _counters(top.get(CTA_COUNTERS_REPLY))
    if co is not None and cr is not None:
        c.pkts = (co[0], cr[0])
        c.bytes = (co[1], cr[1])
        c.counted = True
    return c


def _tuple(raw: bytes | None) -> tuple[int, bytes, bytes, int, int] | None:
    if raw is None:
        return None
    t = parse_attrs(raw, 0, len(raw))
    ip = parse_attrs(t.get(CTA_TUPLE_IP, b""), 0, len(t.get(CTA_TUPLE_IP, b"")))
    pr = parse_attrs(t.get(CTA_TUPLE_PROTO, b""), 0, len(t.get(CTA_TUPLE_PROTO, b"")))
    src = ip.get(CTA_IP_V4_SRC) or ip.get(CTA_IP_V6_SRC)
    dst = ip.get(CTA_IP_V4_DST) or ip.get(CTA_IP_V6_DST)
    num = pr.get(CTA_PROTO_NUM)
    if src is None or dst is None or not num:
        return None
    sp = pr.get(CTA_PROTO_SRC_PORT)
    dp = pr.get(CTA_PROTO_DST_PORT)
    return (num[0], src, dst, _PORT.unpack(sp)[0] if sp and len(sp) == 2 else 0,
            _PORT.unpack(dp)[0] if dp and len(dp) == 2 else 0)


def _counters(raw: bytes | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    a = parse_attrs(raw, 0, len(raw))
    p, b = a.get(CTA_COUNTERS_PACKETS), a.get(CTA_COUNTERS_BYTES)
    if p is None or b is None or len(p) != 8 or len(b) != 8:
        return None
    return _U64(p)[0], _U64(b)[0]


def tuple_attr(proto: int, src: bytes, dst: bytes, sport: int, dport: int,
               which: int = CTA_TUPLE_ORIG) -> bytes:
    """A tuple attribute for a GET (original or reply direction)."""
    v6 = len(src) == 16
    ip = nested(CTA_TUPLE_IP, attr(CTA_IP_V6_SRC if v6 else CTA_IP_V4_SRC, src),
                attr(CTA_IP_V6_DST if v6 else CTA_IP_V4_DST, dst))
    pr = nested(CTA_TUPLE_PROTO, attr(CTA_PROTO_NUM, bytes((proto,))),
                attr(CTA_PROTO_SRC_PORT, _PORT.pack(sport)),
                attr(CTA_PROTO_DST_PORT, _PORT.pack(dport)))
    return nested(which, ip, pr)


def enable_accounting() -> str | None:
    """Turn conntrack accounting on; None when it is on, else why it is not. Accounting
    applies to connections created after it is switched on."""
    try:
        if ACCT_SYSCTL.read_text().strip() == "1":
            return None
        ACCT_SYSCTL.write_text("1\n")
        return None
    except OSError as e:
        return f"cannot set net.netfilter.nf_conntrack_acct=1 ({e.strerror or e}): " \
               f"connection volumes and ends are not known"


class ConntrackEvents:
    """Subscribed to conntrack's NEW, UPDATE and DESTROY events."""

    def __init__(self, new: bool = False, update: bool = False) -> None:
        groups = [NFNLGRP_CONNTRACK_DESTROY]
        if new:
            groups.append(NFNLGRP_CONNTRACK_NEW)
        if update:
            groups.append(NFNLGRP_CONNTRACK_UPDATE)
        self.nl = NetfilterSocket(tuple(groups))
        self.malformed = 0

    def fileno(self) -> int:
        return self.nl.fileno()

    def read(self) -> list[Conn]:
        """Every event waiting now (never blocks)."""
        out: list[Conn] = []
        while True:
            n = self.nl.recv(block=False)
            if n == 0:
                return out
            for mtype, flags, body, end in walk(self.nl.view, n):
                if mtype >> 8 != NFNL_SUBSYS_CTNETLINK:
                    continue
                c = parse_conn(self.nl.view, body, end, mtype, flags)
                if c is None:
                    self.malformed += 1
                else:
                    out.append(c)

    def close(self) -> None:
        self.nl.close()


class ConntrackQuery:
    """Asks conntrack for single connections' counters."""

    def __init__(self) -> None:
        self.nl = NetfilterSocket(())
        self.errors = 0

    def get(self, keys: list[tuple[int, bytes, bytes, int, int]]) -> list[Conn]:
        """The connections between these ends (proto, client, server, cport, sport) that
        conntrack still holds; the others are gone and left out. Each is asked for by its
        original tuple (the client reached the server's own address) and by its reply tuple
        (the server answers the client itself: a port forward to a LAN server, where the
        original tuple holds the router's address instead)."""
        pending = {}
        for proto, cip, sip, cp, sp in keys:
            fam = socket.AF_INET6 if len(cip) == 16 else socket.AF_INET
            for t in (tuple_attr(proto, cip, sip, cp, sp, CTA_TUPLE_ORIG),
                      tuple_attr(proto, sip, cip, sp, cp, CTA_TUPLE_REPLY)):
                seq = self.nl.next_seq()
                self.nl.send(message(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, NLM_F_REQUEST,
                                     fam, t, seq=seq))
                pending[seq] = True
        found: dict[tuple[int, bytes, bytes, int, int], Conn] = {}
        while pending:
            ready, _, _ = select.select([self.nl.sock], [], [], REQUEST_TIMEOUT_S)
            if not ready:
                self.errors += len(pending)
                break
            n = self.nl.recv(block=False)
            for mtype, flags, body, end in walk(self.nl.view, n):
                seq = struct.unpack_from("=I", self.nl.view, body - 8)[0]
                pending.pop(seq, None)
                if mtype == NLMSG_ERROR:
                    if error_code(self.nl.view, body) not in (0, 2):  # 2: ENOENT, gone
                        self.errors += 1
                    continue
                c = parse_conn(self.nl.view, body, end, mtype, flags)
                if c is not None:
                    found[(c.proto, c.client, c.server, c.cport, c.sport)] = c
        return list(found.values())

    def close(self) -> None:
        self.nl.close()
