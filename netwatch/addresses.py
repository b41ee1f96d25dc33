"""Which addresses belong to the home network (the LAN side of the router)."""

from __future__ import annotations

import ipaddress

# RFC 1918 private IPv4, RFC 6598 shared (carrier-grade NAT) space, link-local (RFC 3927,
# RFC 4291), loopback, and IPv6 unique-local (RFC 4193). Python's ``is_private`` also
# counts the documentation ranges, which stand for internet hosts in examples and tests.
LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128",
))


def is_lan_address(raw: bytes) -> bool:
    addr = ipaddress.ip_address(raw)
    return any(addr.version == n.version and addr in n for n in LAN_NETWORKS)


def ip_bytes(text: str) -> bytes:
    return ipaddress.ip_address(text).packed
