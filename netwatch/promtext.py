"""Prometheus's text format without prometheus-client, for a router build that leaves it out.

OpenWrt's package feed has no prometheus-client. ``netwatch.metrics`` then takes the few
names it uses from here: metric families with ``add_metric``, a registry of collectors and
``generate_latest``, writing version 0.0.4 of the text format (labels in name order)
(prometheus.io/docs/instrumenting/exposition_formats) as prometheus-client does: counters
named without ``_total`` in HELP and TYPE, info metrics as ``NAME_info`` gauges, values as
Go prints floats. A test compares the two byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metric:
    name: str
    documentation: str
    type: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


class _Family(Metric):
    kind = "untyped"
    suffix = ""

    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None):
        if self.kind == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        super().__init__(name, documentation, self.kind)
        self._labels = list(labels or [])
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: Any) -> None:
        self.samples.append((self.name + self.suffix, dict(zip(self._labels, labels)),
                             float(value)))


class CounterMetricFamily(_Family):
    kind = "counter"
    suffix = "_total"


class GaugeMetricFamily(_Family):
    kind = "gauge"


class InfoMetricFamily(_Family):
    kind = "info"
    suffix = "_info"

    def add_metric(self, labels: Sequence[str], value: Any) -> None:  # value: a dict
        both = dict(zip(self._labels, labels))
        both.update(value)
        self.samples.append((self.name + self.suffix, both, 1.0))


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class CollectorRegistry:
    def __init__(self) -> None:
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect(self) -> Iterator[Metric]:
        for c in self._collectors:
            yield from c.collect()


def _go_float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    point = text.find(".")
    if v > 0 and "e" not in text and point > 6:
        # Go (and so Prometheus's own exporters) writes 7 or more whole digits with an
        # exponent: 1275674.0 is 1.275674e+06.
        digits = text.replace(".", "").rstrip("0")
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{mantissa}e+{point - 1:02d}"
    return text


def _escape(text: str, quote: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r'\"') if quote else text


def generate_latest(registry: CollectorRegistry) -> bytes:
    out = []
    for m in registry.collect():
        name, kind = m.name, m.type
        if kind == "info":
            name, kind = name + "_info", "gauge"
        elif kind == "counter":
            name += "_total"
        out.append(f"# HELP {name} {_escape(m.documentation, False)}\n")
        out.append(f"# TYPE {name} {kind}\n")
        for s in m.samples:  # prometheus-client's samples carry more fields after these
            sample, labels, value = s[0], s[1], s[2]
            text = ",".join(f'{k}="{_escape(v, True)}"' for k, v in sorted(labels.items()))
            out.append(f"{sample}{{{text}}} {_go_float(value)}\n" if text
                       else f"{sample} {_go_float(value)}\n")
    return "".join(out).encode("utf-8")
