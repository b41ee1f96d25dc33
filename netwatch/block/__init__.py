"""Blocking: the decisions of the policy and the carers' "Block now" made real, safely.

The pieces, in the order a decision goes through them (after Zeek's NetControl: one
framework that is asked to block, allow, list and reconcile, and backends that carry it out):

```
policy decision / "Block now" / netwatch block add
        │
        ▼
layer.BlockLayer     block, allow, remove, list, reconcile, observe_name; a ``block`` event
        │            for each change; state written to the state folder before acting
        ▼
safety.Safety        never the router, the resolvers, the box, the carers' devices, the
        │            household's never_block list; a cap on the addresses of one rule
        ▼
backend              nftables.NftablesBackend (table ``inet netwatch``: sets of device .
                     peer pairs with per-element timeouts; conntrack entries deleted and
                     both ends reset) or dryrun.DryRunBackend (changes nothing)
```
"""

from .layer import Block, BlockLayer, make_backend

__all__ = ["Block", "BlockLayer", "make_backend"]
