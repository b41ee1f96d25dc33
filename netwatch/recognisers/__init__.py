"""Recognisers: small sans-I/O objects that look at a flow's first bytes and give a verdict.

A recogniser is registered by name with ``@register``. It is built once per run with the
loaded signatures, then called with a ``FlowView`` each time new payload arrives on a flow it
is still a candidate for. It answers with a ``Detection``, ``None`` (not yet), or ``GIVE_UP``
(this flow is certainly not mine: stop calling me for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..signatures import SignatureSet

CONFIDENCE_RANK = {"low": 0, "medium": 1, "high": 2}


@dataclass(slots=True)
class Evidence:
    """One thing a detection rests on: its kind, the value seen and how it matched."""

    kind: str  # handshake, sni, certificate, dns, http_host, port, payload, alpn, address,
    # proxy (the target a proxy or gateway was asked for)
    value: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        d = {"kind": self.kind, "value": self.value}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(slots=True)
class Detection:
    """A recogniser's verdict on a flow: the tool, its role, how sure, and why."""

    tool: str
    role: str
    confidence: str
    evidence: list[Evidence] = field(default_factory=list)
    # The product within the tool, when the handshake names it (an RFB server offering
    # Apple's security type is macOS Screen Sharing); "" when it cannot be told.
    variant: str = ""

    def outranks(self, other: Detection | None) -> bool:
        """True when this detection says more than ``other`` and deserves a new event."""
        if other is None:
            return True
        if (self.tool, self.role) != (other.tool, other.role):
            return CONFIDENCE_RANK[self.confidence] >= CONFIDENCE_RANK[other.confidence]
        return CONFIDENCE_RANK[self.confidence] > CONFIDENCE_RANK[other.confidence]


class FlowView(Protocol):
    """What a recogniser may read of a flow (see flows.Flow)."""

    proto: int

    @property
    def server_port(self) -> int: ...

    @property
    def client_port(self) -> int: ...

    @property
    def server_ip(self) -> bytes: ...

    @property
    def client_ip(self) -> bytes: ...

    @property
    def streams(self) -> list[bytearray]:
        """Reassembled first bytes: [client->server, server->client]."""

    @property
    def segments(self) -> list[list[bytes]]:
        """First payload packets each way, in arrival order."""


class _Giveup:
    __slots__ = ()

    def __repr__(self) -> str:
        return "GIVE_UP"


GIVE_UP = _Giveup()
Result = Detection | None | _Giveup


class Recogniser:
    """Base class: subclasses set ``name`` and ``protos`` and implement ``inspect``."""

    name = ""
    protos: tuple[int, ...] = (6,)

    def __init__(self, signatures: SignatureSet):
        self.signatures = signatures

    def inspect(self, flow: FlowView) -> Result:  # pragma: no cover - interface
        raise NotImplementedError

    def could_start(self, proto: int, first: int) -> bool:
        """Whether a flow whose first payload byte (either direction) is ``first`` could be
        this protocol. The pipeline asks once per flow, so that a TLS connection is shown to
        the TLS recogniser alone; say True when unsure."""
        return True


REGISTRY: dict[str, type[Recogniser]] = {}


def register(cls: type[Recogniser]) -> type[Recogniser]:
    if cls.name in REGISTRY:
        raise ValueError(f"recogniser {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Recogniser]]:
    """Import the built-in recogniser modules (each registers itself) and return them."""
    from . import citrix, http, nomachine, payload, radmin, rdp, rfb, tls, x11  # noqa: F401

    return REGISTRY

