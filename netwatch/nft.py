"""netwatch's own nftables table, ``inet netwatch``, driven through ``nft -j``.

Every command netwatch sends names this table and nothing else: it never lists, flushes or
edits a table it does not own (OpenWrt's ``inet fw4``, a Debian host firewall). Parts of
netwatch add their own chains to the table (the nflog capture chains here; blocking keeps
its sets and chains beside them) and remove only their own; the table itself goes when the
last of netwatch's chains and sets has gone. By hand: ``nft delete table inet netwatch``.

Commands are the JSON form of the nftables ruleset (libnftables-json(5): a top-level
``{"nftables": [...]}`` list of ``add``/``flush``/``delete`` commands, applied by
``nft -j -f -`` as one transaction: all or nothing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

FAMILY = "inet"
TABLE = "netwatch"
# `nft` answers a ruleset of a few chains in milliseconds; a hung one is a broken system.
NFT_TIMEOUT_S = 10.0


class NftError(Exception):
    """nft is missing or refused a command (its message says why)."""


@dataclass(frozen=True, slots=True)
class Chain:
    """A base chain of netwatch's table: name, hook and priority (nft's numbers:
    filter 0, mangle -150, raw -300)."""

    name: str
    hook: str
    priority: int


def run_nft(commands: list[dict[str, Any]]) -> None:
    """Apply ``commands`` as one transaction."""
    nft_command(["-j", "-f", "-"], json.dumps({"nftables": commands}))


def list_table() -> list[dict[str, Any]] | None:
    """netwatch's table as nft's JSON objects (chains, rules, sets…); None if absent."""
    try:
        out = nft_command(["-j", "list", "table", FAMILY, TABLE], None)
    except NftError as e:
        if "No such file or directory" in str(e):
            return None
        raise
    items = json.loads(out).get("nftables", [])
    return [o for o in items if "metainfo" not in o]


def flowtables() -> list[str]:
    """The flowtables of other tables ("family table name"), read only: a flow that
    enters one skips the forward hook from then on (see the README on offloading)."""
    out = nft_command(["-j", "list", "flowtables"], None)
    found = [o["flowtable"] for o in json.loads(out).get("nftables", []) if "flowtable" in o]
    return [f"{f['family']} {f['table']} {f['name']}" for f in found if f["table"] != TABLE]


def install_chains(chains: list[Chain], rules: dict[str, list[list[dict[str, Any]]]]) -> None:
    """Create the table if needed, then each chain with exactly ``rules[chain.name]`` (a
    chain left by an earlier run that died is flushed and written again)."""
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for c in chains:
        spec = {"family": FAMILY, "table": TABLE, "name": c.name}
        cmds.append({"add": {"chain": dict(spec, type="filter", hook=c.hook, prio=c.priority,
                                           policy="accept")}})
        cmds.append({"flush": {"chain": spec}})
        for expr in rules.get(c.name, []):
            cmds.append({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": c.name,
                                          "expr": expr}}})
    run_nft(cmds)


def remove_chains(names: list[str]) -> bool:
    """Delete these chains of netwatch's table, then the table if nothing of netwatch's is
    left in it. True when the table is gone."""
    items = list_table()
    if items is None:
        return True
    present = {o["chain"]["name"] for o in items if "chain" in o}
    mine = [n for n in names if n in present]
    others = [o for o in items if not ("table" in o or "rule" in o
                                       or ("chain" in o and o["chain"]["name"] in mine))]
    # Flushed first, so the delete does not rely on the kernel removing the rules itself.
    cmds: list[dict[str, Any]] = []
    for n in mine:
        spec = {"family": FAMILY, "table": TABLE, "name": n}
        cmds += [{"flush": {"chain": spec}}, {"delete": {"chain": spec}}]
    if not others:
        cmds = [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}]
    if cmds:
        run_nft(cmds)
    return not others


def available() -> bool:
    return shutil.which("nft") is not None


def nft_command(args: list[str], stdin: str | None, nft: str = "nft") -> str:
    """Run ``nft`` (the binary ``nft``) with ``args`` and ``stdin``: its output, or NftError
    with one line saying why. The capture table and the blocking backend both use it."""
    argv = [nft, *args]
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           timeout=NFT_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise NftError("nft is not installed (the nftables package)") from None
    except subprocess.TimeoutExpired:
        raise NftError(f"nft did not answer within {NFT_TIMEOUT_S:.0f} s") from None
    if p.returncode != 0:
        raise NftError(f"nft {' '.join(args[:3])}: {p.stderr.strip() or p.returncode}")
    return p.stdout
