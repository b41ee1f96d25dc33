"""The nftables backend: netwatch's table ``inet netwatch``, driven with ``nft -j -f -``.

What it adds to the table (beside the capture chains of the nflog source, which it never
touches; the table is created with ``add``, never flushed):

- sets ``block_v4_pairs`` (``ipv4_addr . ipv4_addr``) and ``block_v6_pairs`` with the
  ``timeout`` flag: one element per device address . peer, each with its own timeout, so
  the kernel lifts an expired block even when netwatch is not running;
- a regular chain ``block_rules``: traffic between a pair, in either direction, is
  rejected with a TCP reset (TCP) or dropped (anything else); packets netwatch itself sends
  to end a session carry ``KICK_MARK`` and pass, and so do resets (the reject rule's own
  resets leave through the output hook);
- base chains ``block_forward`` (the box routes the house's traffic), ``block_input`` and
  ``block_output`` (the box is one end) that jump to ``block_rules``.

An established session ends at once: its conntrack entries are deleted and each end is sent
one out-of-window ACK (see netwatch/block/reset.py); the end answers with an ACK carrying
its exact sequence numbers, that answer meets the reject rule, and the reset it draws is
accepted. Both programs see "connection reset" within milliseconds, even a viewer that was
only waiting for the next screen update.

Commands are the JSON form of the ruleset (libnftables-json(5)), each batch one transaction.
By hand: ``nft list table inet netwatch``; ``nft delete table inet netwatch`` removes all of
netwatch's rules (blocks and capture).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import subprocess
from collections.abc import Iterable
from typing import Any

from ..nft import NftError, nft_command
from .layer import BackendError, Pair
from .reset import KICK_MARK, kick

log = logging.getLogger("netwatch.block")

FAMILY = "inet"
TABLE = "netwatch"
SETS = {4: "block_v4_pairs", 6: "block_v6_pairs"}
SET_TYPES = {4: ["ipv4_addr", "ipv4_addr"], 6: ["ipv6_addr", "ipv6_addr"]}
RULES_CHAIN = "block_rules"
# Base chains by hook. Priority filter - 10: before fw4's filter chains (0) and the capture
# chains (-1), after conntrack (-200): a blocked packet is never seen as accepted first.
BASE_CHAINS = {"block_forward": "forward", "block_input": "input", "block_output": "output"}
PRIORITY = -10
# `nft` and `conntrack` answer a few commands in milliseconds; a hung one is a broken system.
TOOL_TIMEOUT_S = 10.0
# The sets' own bound: far above what the safety layer's caps allow all blocks together.
SET_SIZE = 65536

_CT_TUPLE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


def _spec(**more: Any) -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, **more}


def _match_pair(proto: str, first: str, second: str, set_name: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"concat": [
        {"payload": {"protocol": proto, "field": first}},
        {"payload": {"protocol": proto, "field": second}}]}, "right": "@" + set_name}}


def rules() -> list[list[dict[str, Any]]]:
    """``block_rules``: the mark exemption, then reset/drop for each family and direction."""
    out: list[list[dict[str, Any]]] = [[
        {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": KICK_MARK}},
        {"return": None}]]
    # Resets pass: the reject rule's own resets leave through the output hook (and would be
    # dropped by the output chain), and a reset only ever ends a connection.
    out.append([{"match": {"op": "in", "left": {"payload": {"protocol": "tcp",
                                                            "field": "flags"}},
                           "right": "rst"}}, {"return": None}])
    tcp = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}
    for version, proto in ((4, "ip"), (6, "ip6")):
        for first, second in (("saddr", "daddr"), ("daddr", "saddr")):
            m = _match_pair(proto, first, second, SETS[version])
            out.append([m, tcp, {"reject": {"type": "tcp reset"}}])
            out.append([m, {"drop": None}])
    # Changes nothing (the chain ends here), but a table that mentions conntrack makes the
    # kernel track connections in its network namespace, and the tracked entries are how
    # ``cut`` finds the connections of a pair to end them.
    out.append([{"match": {"op": "in", "left": {"ct": {"key": "state"}},
                           "right": "untracked"}}, {"return": None}])
    return out


class NftablesBackend:
    name = "nftables"
    dry_run = False

    def __init__(self, nft: str = "nft", conntrack: str = "conntrack", reset: bool = True):
        self.nft = nft
        self.conntrack = conntrack
        self.reset = reset
        self.installed = False  # by this process (a block then costs one nft call less)

    # ------------------------------------------------------------------ nft

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        try:
            return nft_command(args, stdin, self.nft)
        except NftError as e:
            raise BackendError(str(e)) from None

    def apply(self, commands: list[dict[str, Any]]) -> None:
        """One transaction: all of ``commands`` or none."""
        if commands:
            self._run(["-j", "-f", "-"], json.dumps({"nftables": commands}))

    def install(self, force: bool = False) -> None:
        """The table (added, never flushed), the sets (kept with their elements) and the
        chains (netwatch's own block chains are rewritten, nothing else). Once per process
        unless ``force``: a table deleted meanwhile is noticed by ``add``."""
        if self.installed and not force:
            return
        cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
        for v, name in SETS.items():
            cmds.append({"add": {"set": _spec(name=name, type=SET_TYPES[v],
                                              flags=["timeout"], size=SET_SIZE)}})
        cmds.append({"add": {"chain": _spec(name=RULES_CHAIN)}})
        cmds.append({"flush": {"chain": _spec(name=RULES_CHAIN)}})
        for expr in rules():
            cmds.append({"add": {"rule": _spec(chain=RULES_CHAIN, expr=expr)}})
        for name, hook in BASE_CHAINS.items():
            cmds.append({"add": {"chain": _spec(name=name, type="filter", hook=hook,
                                                prio=PRIORITY, policy="accept")}})
            cmds.append({"flush": {"chain": _spec(name=name)}})
            cmds.append({"add": {"rule": _spec(chain=name, expr=[
                {"jump": {"target": RULES_CHAIN}}])}})
        self.apply(cmds)
        self.installed = True

    def uninstall(self) -> None:
        """Remove the block chains and sets; the table too when nothing else of netwatch's
        (the capture chains) is in it."""
        self.installed = False
        items = self._table()
        if items is None:
            return
        mine = set(BASE_CHAINS) | {RULES_CHAIN}
        others = [o for o in items if "chain" in o and o["chain"]["name"] not in mine
                  or "set" in o and o["set"]["name"] not in SETS.values()
                  or any(k in o for k in ("map", "flowtable", "counter", "quota", "limit"))]
        if not others:
            self.apply([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
            return
        present = {o["chain"]["name"] for o in items if "chain" in o}
        sets = {o["set"]["name"] for o in items if "set" in o}
        cmds: list[dict[str, Any]] = [{"delete": {"chain": _spec(name=n)}}
                                      for n in BASE_CHAINS if n in present]
        if RULES_CHAIN in present:
            cmds.append({"delete": {"chain": _spec(name=RULES_CHAIN)}})
        cmds += [{"delete": {"set": _spec(name=n)}} for n in SETS.values() if n in sets]
        self.apply(cmds)

    def _table(self) -> list[dict[str, Any]] | None:
        try:
            out = self._run(["-j", "list", "table", FAMILY, TABLE])
        except BackendError as e:
            if "No such file or directory" in str(e):
                return None
            raise
        return [o for o in json.loads(out).get("nftables", []) if "metainfo" not in o]

    # ------------------------------------------------------------------ elements

    def elements(self, versions: Iterable[int] = (4, 6)) -> set[Pair]:
        out: set[Pair] = set()
        for name in (SETS[v] for v in sorted(set(versions))):
            try:
                text = self._run(["-j", "list", "set", FAMILY, TABLE, name])
            except BackendError as err:
                if "No such file or directory" in str(err):
                    continue
                raise
            for o in json.loads(text).get("nftables", []):
                for item in (o.get("set") or {}).get("elem", []):
                    val = item.get("elem", {}).get("val", item) if isinstance(item, dict) \
                        else item
                    parts = val.get("concat") if isinstance(val, dict) else None
                    if isinstance(parts, list) and len(parts) == 2:
                        out.add((str(parts[0]), str(parts[1])))
        return out

    def add(self, pairs: Iterable[Pair], timeout_s: float) -> None:
        """Add the pairs with this timeout; pairs already there get the new timeout (the
        kernel keeps an element's old timeout on ``add``, so they are deleted first)."""
        pairs = list(pairs)
        if not pairs:
            return
        timeout = max(1, math.ceil(timeout_s))
        present = self.elements({_version(a) for a, _ in pairs})
        again = [p for p in pairs if p in present]
        cmds = self._elements("delete", again) + self._elements("add", pairs, timeout)
        try:
            self.apply(cmds)
        except BackendError as e:
            if "No such file or directory" not in str(e):
                raise
            self.install(force=True)  # the table went (a reboot, by hand): make it again
            self.apply(self._elements("add", pairs, timeout))

    def remove(self, pairs: Iterable[Pair]) -> None:
        pairs = list(pairs)
        if not pairs:
            return
        present = self.elements({_version(a) for a, _ in pairs})
        self.apply(self._elements("delete", [p for p in pairs if p in present]))

    def _elements(self, verb: str, pairs: list[Pair],
                  timeout: int | None = None) -> list[dict[str, Any]]:
        by_set: dict[str, list[Any]] = {}
        for a, b in pairs:
            val: dict[str, Any] = {"concat": [a, b]}
            by_set.setdefault(SETS[_version(a)], []).append(
                {"elem": {"val": val, "timeout": timeout}} if timeout is not None else val)
        return [{verb: {"element": _spec(name=name, elem=elems)}}
                for name, elems in by_set.items()]

    # ------------------------------------------------------------------ ending sessions

    def cut(self, pairs: Iterable[Pair]) -> int:
        """End the pairs' established connections now: delete their conntrack entries and
        reset both ends of each TCP one. The number of connections found."""
        found = 0
        for a, b in pairs:
            fam = ["-f", "ipv6"] if _version(a) == 6 else []
            for src, dst in ((a, b), (b, a)):
                for line in self._conntrack(["-D", *fam, "--orig-src", src, "--orig-dst", dst]):
                    m = _CT_TUPLE.search(line)
                    if m is None:
                        continue
                    found += 1
                    if self.reset and line.startswith("tcp") and _version(a) == 4:
                        try:
                            kick(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))
                        except OSError as e:
                            log.warning("block: could not reset %s:%s -> %s:%s: %s",
                                        *m.groups(), e)
        return found

    def _conntrack(self, args: list[str]) -> list[str]:
        try:
            p = subprocess.run([self.conntrack, *args], capture_output=True, text=True,
                               timeout=TOOL_TIMEOUT_S, check=False)
        except FileNotFoundError:
            log.warning("block: conntrack is not installed: established sessions end at "
                        "their next packet")
            return []
        except subprocess.TimeoutExpired:
            raise BackendError(f"conntrack did not answer within {TOOL_TIMEOUT_S:.0f} s"
                               ) from None
        # conntrack exits 1 when nothing matched ("0 flow entries have been deleted").
        return p.stdout.splitlines()


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version
