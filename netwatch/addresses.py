"""Which addresses belong to the home network (the LAN side of the router).

The checks work on the raw address bytes as they sit in a packet (4 bytes for IPv4, 16 for
IPv6): a network is kept as an integer and a mask, so a check is a few integer operations
rather than building an ``ipaddress`` object per call (the checks run on every TLS flow
inspected and every session)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ipaddress

    Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Networks by the length of their raw addresses (4 or 16): (network as an integer, mask).
Prefixes = dict[int, tuple[tuple[int, int], ...]]

# RFC 1918 private IPv4, RFC 6598 shared (carrier-grade NAT) space, link-local (RFC 3927,
# RFC 4291), loopback, and IPv6 unique-local (RFC 4193). Python's ``is_private`` also
# counts the documentation ranges, which stand for internet hosts in examples and tests.
LAN_NETWORKS = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128",
)


def prefixes(networks: Iterable[Network]) -> Prefixes:
    """The networks as integer prefixes, grouped by address length, for ``in_prefixes``."""
    out: dict[int, list[tuple[int, int]]] = {4: [], 16: []}
    for n in networks:
        out[4 if n.version == 4 else 16].append((int(n.network_address), int(n.netmask)))
    return {k: tuple(v) for k, v in out.items()}


def in_prefixes(raw: bytes, table: Prefixes) -> bool:
    """Whether the raw address ``raw`` is inside one of ``table``'s networks (an address of
    another length than 4 or 16 bytes is in none)."""
    nets = table.get(len(raw))
    if not nets:
        return False
    v = int.from_bytes(raw, "big")
    for net, mask in nets:
        if v & mask == net:
            return True
    return False


@functools.cache
def _lan() -> Prefixes:
    """``LAN_NETWORKS`` as prefixes, made at the first check: ``ipaddress`` costs about a
    millisecond to import, and a replay that checks no address never needs it."""
    import ipaddress

    return prefixes(ipaddress.ip_network(n) for n in LAN_NETWORKS)


def is_lan_address(raw: bytes) -> bool:
    return in_prefixes(raw, _lan())


def ip_bytes(text: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(text).packed


def ip_text(raw: bytes) -> str:
    """An address's usual text: dotted IPv4, RFC 5952 IPv6 (as ``inet_ntop`` writes it)."""
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    # Imported here: ``socket`` builds its enums at import, a few milliseconds of every
    # start-up, and a capture of IPv4 alone never needs it.
    import socket

    return socket.inet_ntop(socket.AF_INET6, raw)
