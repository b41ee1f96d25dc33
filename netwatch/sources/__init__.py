"""Where packets (or what stands for them) come from.

``capture`` reads capture files for ``netwatch replay``. The others are *live sources* for
``netwatch run`` (netwatch.daemon), chosen by the daemon's ``source`` setting:

- ``af_packet`` (netwatch.sources.afpacket): every frame on an interface, from a kernel ring;
- ``nflog``: on a router, the first packets of each connection and DNS answers, from an
  nftables log group, with conntrack's counters;
- ``dnslog``: a resolver's query log, for a box that is only the LAN's DNS server;
- ``pcap``: a capture file played back on the wall clock, for demos and tests.

Every live source has the same small shape (``LiveSource`` below), so the daemon's loop is
one loop whatever the source:

- ``name`` (``"af_packet"``, ``"nflog"`` …) and ``iface`` (what it reads: an interface, a
  log group, a file), for the logs, the metrics and EVE's ``in_iface``;
- ``kind``: ``"frames"`` (the default when absent) or ``"lookups"`` (dnslog, whose ``poll``
  returns resolver lookups for ``Pipeline.feed_lookups`` instead of frames);
- ``poll(timeout_s)``: what arrived, waiting at most ``timeout_s`` seconds for something;
  an empty list on timeout. Frames are ``(ts, linktype, frame, wire_len)``: Unix time (the
  wall clock's timeline, so the daemon's clock and the packets' agree), a pcap LINKTYPE, the
  captured bytes, and the frame's length on the wire (volumes count this, not what was
  captured). A batch is bounded (a few thousand), so the daemon's loop keeps turning;
- ``stats()``: cumulative counters as plain numbers: ``packets`` and ``bytes`` handed over,
  and where the kernel says so ``received`` (packets it queued for netwatch, dropped ones
  included) and ``dropped`` (packets it had to drop because netwatch fell behind);
- ``close()``: give back what the source holds (sockets, a ring, nftables rules); safe to
  call twice.

A source that can hand its frames over in place (af_packet with its ring) says so with
``in_place`` (True), and the daemon then calls its ``wait(timeout_s)`` (whether frames are
ready) and ``walk(fast, full, until)`` through ``Pipeline.feed_walk`` instead of ``poll``:
the frames go to the pipeline's fast path as offsets into the source's buffer, with no list
of tuples in between (netwatch.sources.afpacket describes the contract).

A source that needs set-up after it is built (nflog's ``start()``) does it before the
daemon's first ``poll``; a source that must hear about the pipeline's flows (nflog's
``on_counters``) is handed the callback when built.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Frame = tuple[float, int, bytes, int]


@runtime_checkable
class LiveSource(Protocol):
    """What ``netwatch run`` asks of a live source (see the module's docstring)."""

    name: str
    iface: str

    def poll(self, timeout_s: float) -> list[Any]: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
