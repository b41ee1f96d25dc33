"""The dry-run backend: remembers what it was asked and changes nothing on the network.

Used where ``nft`` is missing or netwatch may not change the firewall, and by tests of the
layer above. Its pairs expire on the clock it is given, as the kernel's set elements do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

Pair = tuple[str, str]


class DryRunBackend:
    name = "dry-run"
    dry_run = True

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.pairs: dict[Pair, float] = {}  # (device address, peer) -> expiry
        self.installed = False
        self.cuts: list[Pair] = []

    def install(self, force: bool = False) -> None:
        self.installed = True

    def uninstall(self) -> None:
        self.installed = False
        self.pairs.clear()

    def add(self, pairs: Iterable[Pair], timeout_s: float) -> None:
        until = self.clock() + timeout_s
        for p in pairs:
            self.pairs[p] = until

    def remove(self, pairs: Iterable[Pair]) -> None:
        for p in pairs:
            self.pairs.pop(p, None)

    def elements(self) -> set[Pair]:
        now = self.clock()
        return {p for p, until in self.pairs.items() if until > now}

    def cut(self, pairs: Iterable[Pair]) -> int:
        self.cuts += list(pairs)
        return 0
