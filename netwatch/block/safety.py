"""The safety rules every block goes through, in one place above the backends.

A block never cuts:

- the router (the default gateways of the box), nor the DNS resolvers (``nameserver`` lines
  of resolv.conf, and OpenWrt's upstream list): the house must stay online and able to look
  names up, whatever else is blocked;
- the box itself (its own addresses), so netwatch and the carers' links keep working;
- the carers' own devices (a device whose person is also a carer), and anything on the
  household's ``never_block`` list (addresses, networks or device names);
- loopback, multicast and unspecified addresses, which are never a remote-control peer.

A rule naming any of these (as the device or as a peer) is refused as a whole, with the
reason: a rule the family did not mean is worse than no rule. One rule holds at most
``MAX_PEERS`` peers and ``MAX_DEVICE_ADDRESSES`` device addresses.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# A tool's relays and ID servers: AnyDesk and TeamViewer each answer with a handful of
# addresses per name, and a session rarely touches more than a few names; 64 leaves room
# for a block that lasts hours while refusing a rule that would cut a whole cloud.
MAX_PEERS = 64
# IPv4, an IPv6 global and a temporary address or two: a device rarely has more.
MAX_DEVICE_ADDRESSES = 8
RESOLV_FILES = ("/etc/resolv.conf", "/tmp/resolv.conf.d/resolv.conf.auto")
# `ip` answers in milliseconds; a hung one is a broken system, not a reason to wait.
IP_TIMEOUT_S = 5.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class Safety:
    """Protected addresses and networks, each with why it is protected."""

    protected: list[tuple[Network, str]] = field(default_factory=list)
    # Device names that must never be blocked (carers' devices, never_block names).
    protected_devices: dict[str, str] = field(default_factory=dict)

    def protect(self, address: str, why: str) -> None:
        try:
            net = ipaddress.ip_network(address.split("%", 1)[0], strict=False)
        except ValueError:
            return
        self.protected.append((net, why))

    def why_protected(self, address: str) -> str | None:
        """Why ``address`` may never be blocked, or None."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"{address!r} is not an IP address"
        if ip.is_loopback or ip.is_multicast or ip.is_unspecified:
            return f"{ip} is a loopback, multicast or unspecified address"
        for net, why in self.protected:
            if ip.version == net.version and ip in net:
                return f"{ip} is {why}"
        return None

    def check(self, device: str | None, device_addresses: Iterable[str],
              peers: Iterable[str]) -> str | None:
        """Why a rule (a device's addresses against peers) is refused, or None."""
        if device is not None and device.lower() in self.protected_devices:
            return f"device {device} is {self.protected_devices[device.lower()]}"
        addrs, remote = list(device_addresses), list(peers)
        if not addrs:
            return "the device has no known address"
        if len(addrs) > MAX_DEVICE_ADDRESSES:
            return (f"the device has {len(addrs)} addresses, more than the {MAX_DEVICE_ADDRESSES} "
                    "one rule may hold")
        if len(remote) > MAX_PEERS:
            return f"{len(remote)} peers, more than the {MAX_PEERS} one rule may hold"
        for a in addrs:
            why = self.why_protected(a)
            # The box as the device end is allowed (input/output hooks): netwatch running on
            # the computer it watches. Everything else protected is refused.
            if why is not None and not why.endswith(BOX):
                return "the device address " + why
        for p in remote:
            why = self.why_protected(p)
            if why is not None:
                return "the peer " + why
        return None


BOX = "this box's own address"


def from_system(household: Any = None, *, box: Iterable[str] | None = None,
                routers: Iterable[str] | None = None,
                resolvers: Iterable[str] | None = None) -> Safety:
    """The rules for this machine: its addresses, default gateways and resolvers read from
    the system (unless given), and the household's carers' devices and never_block list."""
    s = Safety()
    for a in routers if routers is not None else default_gateways():
        s.protect(a, "the router (a default gateway)")
    for a in resolvers if resolvers is not None else system_resolvers():
        s.protect(a, "a DNS resolver")
    for a in box if box is not None else own_addresses():
        s.protect(a, BOX)
    if household is not None:
        carers = {c.name.lower() for c in getattr(household, "carers", [])}
        for d in getattr(household, "devices", []):
            if d.person.lower() in carers:
                s.protected_devices[d.name.lower()] = f"a carer's device ({d.person})"
                for ip in d.ips:
                    s.protect(ip, f"carer {d.person}'s device {d.name}")
        for entry in getattr(household, "never_block", []):
            if entry.device is not None:
                s.protected_devices[entry.device.lower()] = "on the household's never_block list"
                for d in getattr(household, "devices", []):
                    if d.name == entry.device:
                        for ip in d.ips:
                            s.protect(ip, f"device {d.name} on the never_block list")
            if entry.network is not None:
                s.protect(str(entry.network), "on the household's never_block list"
                          + (f" ({entry.note})" if entry.note else ""))
    return s


def _ip_json(args: list[str]) -> list[dict[str, Any]]:
    try:
        p = subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                           timeout=IP_TIMEOUT_S, check=False)
        data = json.loads(p.stdout or "[]") if p.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    return data if isinstance(data, list) else []


def own_addresses() -> list[str]:
    """Every address of this box's interfaces."""
    return [str(a["local"]) for link in _ip_json(["addr", "show"])
            for a in link.get("addr_info", []) if a.get("local")]


def default_gateways() -> list[str]:
    return [str(r["gateway"]) for fam in ("-4", "-6")
            for r in _ip_json([fam, "route", "show", "default"]) if r.get("gateway")]


def system_resolvers(files: Iterable[str] = RESOLV_FILES) -> list[str]:
    out: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                out.append(parts[1])
    return out
