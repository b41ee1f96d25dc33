"""DNS answers and the name cache: which name a household device looked up for an address.

A later connection to that address carries the name as evidence, as Zeek's DNS-to-conn
correlation does. Message layout per RFC 1035 §4.1 (with §4.1.4 compression); AAAA per
RFC 3596.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
# Pi-hole ships dnsmasq with cache-size=10000; a home network's working set of names fits.
NAME_CACHE_SIZE = 10000
# Answers with a TTL of seconds (CDNs) are still followed by their connection a moment later;
# dnsmasq's min-cache-ttl is the same idea. A day bounds what a stale answer can claim.
MIN_TTL = 60
MAX_TTL = 86400
MAX_POINTERS = 16  # compression pointers followed per name (loops end here)
MAX_ANSWERS = 64

# A compression pointer to offset 12, where the question's name starts.
QNAME_POINTER = b"\xc0\x0c"

_hdr = struct.Struct("!HHHHHH").unpack_from
_rr = struct.Struct("!HHIH").unpack_from


class DnsError(ValueError):
    pass


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """Decode a (possibly compressed) name at ``pos``; return it and the position after it.
    Labels are gathered as bytes and decoded once, lower-cased (ASCII; any other byte
    reads as U+FFFD)."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    total = 0
    size = len(msg)
    while True:
        if pos >= size:
            raise DnsError("name runs past the message")
        ln = msg[pos]
        if ln == 0:
            pos += 1
            break
        if ln & 0xC0:
            if ln & 0xC0 != 0xC0:
                raise DnsError("unknown label type")
            if pos + 1 >= size:
                raise DnsError("cut compression pointer")
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_POINTERS:
                raise DnsError("compression loop")
            pos = ((ln & 0x3F) << 8) | msg[pos + 1]
            continue
        nxt = pos + 1 + ln
        if nxt > size:
            raise DnsError("label runs past the message")
        total += ln + 1
        if total > 255:
            raise DnsError("name longer than 255 bytes")
        labels.append(msg[pos + 1:nxt])
        pos = nxt
    return b".".join(labels).decode("ascii", "replace").lower(), (end if end >= 0 else pos)


# The question names already read, by their bytes on the wire: a household looks up the
# same few hundred names again and again. Bounded: emptied when full.
_QUESTIONS: dict[bytes, str] = {}
QUESTION_CACHE_SIZE = 4096


def question_name(msg: bytes) -> tuple[str, int]:
    """``read_name`` for the question's name at offset 12, from the names already read when
    its bytes up to the first zero byte are one of theirs. Such bytes, once read as a
    whole uncompressed name, can only be that name again (the labels' lengths lead to the
    same end). A name with a compression pointer or a zero byte inside a label is read,
    never kept: its length on the wire is not its text's plus two."""
    end = msg.find(0, 12)
    if end > 12:
        wire = msg[12:end + 1]
        name = _QUESTIONS.get(wire)
        if name is not None:
            return name, end + 1
        name, pos = read_name(msg, 12)
        if pos == end + 1 and len(name) + 2 == len(wire):
            if len(_QUESTIONS) >= QUESTION_CACHE_SIZE:
                _QUESTIONS.clear()
            _QUESTIONS[wire] = name
        return name, pos
    return read_name(msg, 12)


def parse_response(msg: bytes) -> tuple[str, list[tuple[bytes, int]], list[str]] | None:
    """(query name, [(address bytes, ttl)], [every name in the answer chain]) for a
    response; None for a query or a message without a question. Raises DnsError when bad."""
    if len(msg) < 12:
        raise DnsError("shorter than a DNS header")
    _id, flags, qd, an, _ns, _ar = _hdr(msg, 0)
    if not flags & 0x8000 or qd == 0:
        return None
    qname, pos = question_name(msg)
    pos += 4
    for _ in range(qd - 1):
        _n, pos = read_name(msg, pos)
        pos += 4
    addrs: list[tuple[bytes, int]] = []
    chain = [qname]
    for _ in range(min(an, MAX_ANSWERS)):
        if msg[pos:pos + 2] == QNAME_POINTER:
            # The usual answer name: a pointer to the question's (RFC 1035 §4.1.4).
            name, pos = qname, pos + 2
        else:
            name, pos = read_name(msg, pos)
        if pos + 10 > len(msg):
            raise DnsError("answer record cut short")
        rtype, _cls, ttl, rdlen = _rr(msg, pos)
        pos += 10
        rdata = msg[pos:pos + rdlen]
        if len(rdata) < rdlen:
            raise DnsError("answer data cut short")
        if rtype == TYPE_A and rdlen == 4 or rtype == TYPE_AAAA and rdlen == 16:
            addrs.append((rdata, ttl))
        elif rtype == TYPE_CNAME:
            target, _p = read_name(msg, pos)
            chain.append(target)
        if name not in chain:
            chain.append(name)
        pos += rdlen
    return qname, addrs, chain


class NameCache:
    """address -> (name, expiry), bounded (least recently written goes first), TTL-expired."""

    def __init__(self, size: int = NAME_CACHE_SIZE):
        self.size = size
        self._d: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def add(self, addr: bytes, name: str, ttl: int, now: float) -> None:
        ttl = min(max(ttl, MIN_TTL), MAX_TTL)
        d = self._d
        if addr in d:
            del d[addr]
        d[addr] = (name, now + ttl)
        if len(d) > self.size:
            d.popitem(last=False)

    def entries(self, now: float) -> list[tuple[str, str, float]]:
        """The names still valid at ``now`` as (address hex, name, expiry), oldest first:
        what the daemon keeps across a restart."""
        return [(a.hex(), name, exp) for a, (name, exp) in self._d.items() if exp >= now]

    def restore(self, entries: list[tuple[str, str, float]], now: float) -> None:
        """Take back ``entries`` (those expired by ``now`` are left out)."""
        for addr, name, exp in entries:
            if exp >= now:
                self._d[bytes.fromhex(addr)] = (name, float(exp))
                if len(self._d) > self.size:
                    self._d.popitem(last=False)

    def lookup(self, addr: bytes, now: float) -> str | None:
        hit = self._d.get(addr)
        if hit is None:
            return None
        if hit[1] < now:
            del self._d[addr]
            return None
        return hit[0]
