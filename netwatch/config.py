"""The daemon's settings file: how ``netwatch run`` is installed on this box.

Kept apart from the household file: the installer (or the OpenWrt package) writes this one
once (which source, which interface, where state and logs go, what listens where), while the
family edits the household file. ``deploy/netwatch.example.yaml`` explains every setting.
Every setting can also be given as a ``netwatch run`` option, which wins over the file.

Like the household file, it is read from PyYAML's node tree, so each problem names its line:
``FILE:LINE: setting: message``. Relative paths are taken from the file's own folder.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import yaml

from .flows import MAX_FLOWS, MAX_INSPECTING
from .household import read_text, yaml_problem

SOURCES = ("af_packet", "nflog", "dnslog", "pcap")
# The sources that sit on the traffic they see (a router, a gateway, a mirror port): auto
# blocking uses nftables only with these, never with a capture played back or a resolver's
# log.
LIVE_SOURCES = ("af_packet", "nflog")
DEFAULT_CONFIG = "/etc/netwatch/netwatch.yaml"
DEFAULT_HOUSEHOLD = "/etc/netwatch/household.yaml"
DEFAULT_STATE_DIR = "/var/lib/netwatch"
# netwatch.metrics' default port (Prometheus's exporter range) and the control endpoint's.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9731"
DEFAULT_CONTROL_LISTEN = "127.0.0.1:8787"
OFF = "off"  # a listen address that turns the listener off; a block backend too
# How the daemon carries out blocks (netwatch.block): "auto" is nftables where ``nft`` exists
# and may be used, the source is one of LIVE_SOURCES and the box routes, else the dry run;
# "off" never blocks, and "Block now" answers as a dry run.
BLOCK_BACKENDS = ("auto", "nftables", "dry-run", OFF)


class ConfigError(Exception):
    """Problems in a settings file, each ``FILE:LINE: setting: message``."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class ConfigUnreadable(ConfigError):
    """The file could not be read at all."""


@dataclass
class Settings:
    """What ``netwatch run`` needs; the defaults suit a Raspberry Pi with systemd."""

    source: str = "af_packet"
    interface: str | None = None  # af_packet: the interface to capture on
    household: str = DEFAULT_HOUSEHOLD
    state_dir: str = DEFAULT_STATE_DIR
    eve_log: str | None = None  # none: no event log
    eve_max_mib: float = 16.0  # the event log's own size cap
    metrics_listen: str = DEFAULT_METRICS_LISTEN  # "off": no metrics endpoint
    # The metrics also written to this file (a node exporter's text-file collector).
    metrics_textfile: str | None = None
    control_listen: str = DEFAULT_CONTROL_LISTEN  # "off": no control endpoint
    control_url: str | None = None  # the control endpoint as the carers' phones reach it
    host: str | None = None  # the box's name in events (EVE's host); default: node name
    user: str | None = None  # run as this user after opening the capture (when root)
    signatures: str | None = None  # a folder of signature files; default: the bundled ones
    promiscuous: bool = True  # af_packet: take frames for other machines (mirror port)
    ring_mib: int = 16  # af_packet: the kernel ring's size (and memory cost)
    nflog_group: int = 74  # nflog: the log group
    dnslog: str | None = None  # dnslog: the resolver's query log
    resolver: str = "127.0.0.1"  # dnslog: the resolver's own address
    pcap: str | None = None  # pcap: the capture to play
    pcap_speed: float = 1.0  # pcap: times faster than recorded (0: as fast as possible)
    block_backend: str = "auto"  # auto | nftables | dry-run | off (see BLOCK_BACKENDS)
    # The flow table's bounds (netwatch.flows.Limits, where the costs are measured).
    max_flows: int = MAX_FLOWS
    max_inspecting: int = MAX_INSPECTING

    def problems(self) -> list[str]:
        """What makes these settings unusable whatever their origin (flags or file)."""
        out = []
        if self.source == "af_packet" and not self.interface:
            out.append("interface: the af_packet source needs an interface (like eth0)")
        if self.source == "dnslog" and not self.dnslog:
            out.append("dnslog: the dnslog source needs the resolver's query log file")
        if self.source == "pcap" and not self.pcap:
            out.append("pcap: the pcap source needs a capture file")
        for name in ("metrics_listen", "control_listen"):
            value = getattr(self, name)
            if value != OFF and parse_listen(value) is None:
                out.append(f"{name}: {value!r} is not HOST:PORT (like 127.0.0.1:9731) or "
                           f"'{OFF}'")
        return out


_PATHS = ("household", "state_dir", "eve_log", "signatures", "dnslog", "pcap",
          "metrics_textfile")


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9731`` for IPv6) as a bind address, or None."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host.strip("[]"), int(port)


def _bool(text: str) -> bool | None:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    return None


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            return None
        return value if value >= 0 else None
    return read


# How each setting's text becomes its value (None: not valid), and what to write instead.
_READERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "source": (lambda t: t if t in SOURCES else None, "one of " + ", ".join(SOURCES)),
    "eve_max_mib": (_number(float), "a size in MiB, like 16 (0: no cap)"),
    "promiscuous": (_bool, "true or false"),
    "nflog_group": (_number(int), "a group number, like 74"),
    "ring_mib": (lambda t: _number(int)(t) or None, "a whole number of MiB, like 16"),
    "pcap_speed": (_number(float), "a speed factor, like 1 (0: as fast as possible)"),
    "max_flows": (lambda t: _number(int)(t) or None, "a whole number of flows, like 8192"),
    "max_inspecting": (lambda t: _number(int)(t) or None,
                       "a whole number of flows, like 2048"),
    "block_backend": (lambda t: t if t in BLOCK_BACKENDS else None,
                      "one of " + ", ".join(BLOCK_BACKENDS)),
}
NAMES = tuple(f.name for f in fields(Settings))


def looks_like_settings(path: str) -> bool:
    """Whether a YAML file is a daemon settings file rather than a household file: its top
    level names daemon settings and not the household's ``people``."""
    try:
        with open(path, encoding="utf-8") as fh:
            root = yaml.compose(fh.read(), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if not isinstance(root, yaml.MappingNode):
        return False
    keys = {k.value for k, _v in root.value if isinstance(k, yaml.ScalarNode)}
    return "people" not in keys and bool(keys & set(NAMES))


def load_settings(path: str) -> Settings:
    """Read a settings file; ``ConfigError`` lists every problem, each with its line."""
    text = read_text(path, ConfigUnreadable)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError([yaml_problem(path, e)]) from None
    settings = Settings()
    if root is None:
        return settings
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{path}:{root.start_mark.line + 1}: (file): must be "
                           "'setting: value' lines, like 'interface: eth0'"])
    folder = os.path.dirname(os.path.abspath(path))
    problems: list[str] = []
    seen: set[str] = set()
    for k, v in root.value:
        line = k.start_mark.line + 1
        key = k.value if isinstance(k, yaml.ScalarNode) else ""
        if key not in NAMES:
            close = difflib.get_close_matches(key, NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{path}:{line}: {key or '?'}: unknown setting{hint}")
            continue
        if key in seen:
            problems.append(f"{path}:{line}: {key}: given twice")
            continue
        seen.add(key)
        if not isinstance(v, yaml.ScalarNode):
            problems.append(f"{path}:{v.start_mark.line + 1}: {key}: must be a single value")
            continue
        if v.tag == "tag:yaml.org,2002:null" or not v.value.strip():
            continue  # left empty: the default
        value: Any = v.value.strip()
        reader = _READERS.get(key)
        if reader is not None:
            value = reader[0](value)
            if value is None:
                problems.append(f"{path}:{v.start_mark.line + 1}: {key}: "
                                f"{v.value.strip()!r} is not {reader[1]}")
                continue
        elif key in _PATHS:
            value = os.path.join(folder, os.path.expanduser(value))
        setattr(settings, key, value)
    if not problems:
        problems += [f"{path}:{_line_of(root, p.split(':', 1)[0])}: {p}"
                     for p in settings.problems()]
    if problems:
        raise ConfigError(problems)
    return settings


def _line_of(root: yaml.MappingNode, key: str) -> int:
    for k, _v in root.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return int(k.start_mark.line) + 1
    return 1


def describe(s: Settings) -> str:
    """What was understood, for ``check-config``."""
    lines = [f"source: {s.source}" + (f" on {s.interface}" if s.interface else "")
             + (f" ({s.ring_mib} MiB ring)" if s.source == "af_packet" else "")]
    if s.source == "pcap":
        lines.append(f"capture: {s.pcap} at {s.pcap_speed:g}x")
    if s.source == "dnslog":
        lines.append(f"resolver log: {s.dnslog} (resolver {s.resolver})")
    if s.source == "nflog":
        lines.append(f"nflog group: {s.nflog_group}")
    lines += [f"household: {s.household}", f"state folder: {s.state_dir}",
              f"event log: {s.eve_log or 'none'}"
              + (f" (kept under {s.eve_max_mib:g} MiB)" if s.eve_log and s.eve_max_mib else ""),
              f"metrics: {s.metrics_listen}"
              + (f", written to {s.metrics_textfile}" if s.metrics_textfile else ""),
              f"control endpoint: {s.control_listen}"
              + (f", links point at {s.control_url}" if s.control_url else ""),
              f"blocking: {describe_blocking(s)}",
              f"runs as: {s.user or 'the user that starts it'}"]
    return "\n".join(lines) + "\n"


def describe_blocking(s: Settings) -> str:
    """What ``block_backend`` means for these settings (without asking the system)."""
    if s.block_backend == OFF:
        return "off (alerts only; Block now is a dry run)"
    if s.block_backend == "nftables":
        return "nftables (table inet netwatch)"
    if s.block_backend == "dry-run":
        return "dry run (decided and logged, the network is not changed)"
    if s.source not in LIVE_SOURCES:
        return f"auto: a dry run (the {s.source} source does not sit on the live traffic)"
    return "auto: nftables where nft may be used and this box routes, else a dry run"
