"""OpenWrt's UCI file for netwatch (``/etc/config/netwatch``) as the daemon's settings file.

On a router the settings live where every OpenWrt service keeps them, in UCI, so ``uci
set netwatch.main.interface=br-lan`` and LuCI work. The init script
(deploy/openwrt/files/netwatch.init) runs ``netwatch uci-config`` at each start and reload,
which writes the settings file ``netwatch run --config`` reads (netwatch.config). Only the
``netwatch`` section's options that are daemon settings are carried over, under the same
names; ``enabled`` is the init script's own. Each problem names its line, as
``FILE:LINE: option: message``; the written file is then checked like any settings file.

The file's grammar (uci(1), "File syntax"): ``config TYPE ['NAME']`` opens a section,
``option NAME 'VALUE'`` and ``list NAME 'VALUE'`` fill it, ``#`` starts a comment; values
are quoted with ' or " or bare words.
"""

from __future__ import annotations

import difflib
import os
import shlex
import tempfile
from dataclasses import dataclass, field, fields

import yaml

from .config import NAMES, ConfigError, Settings, load_settings

SECTION_TYPE = "netwatch"
INIT_ONLY = ("enabled",)  # read by the init script, not a daemon setting
BOOLEANS = tuple(f.name for f in fields(Settings) if isinstance(f.default, bool))
UCI_BOOLEANS = {"1": "true", "0": "false"}


@dataclass
class Section:
    type: str
    name: str | None
    line: int
    options: dict[str, tuple[str, int]] = field(default_factory=dict)  # value, line
    lists: dict[str, list[str]] = field(default_factory=dict)


def parse_uci(text: str, path: str = "-") -> list[Section]:
    """The sections of a UCI file; ``ConfigError`` lists every line it cannot read."""
    sections: list[Section] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as e:
            problems.append(f"{path}:{number}: (file): {e}")
            continue
        if not words:
            continue
        kind = words[0]
        if kind == "config" and len(words) in (2, 3):
            sections.append(Section(words[1], words[2] if len(words) == 3 else None, number))
        elif kind in ("option", "list") and len(words) == 3:
            if not sections:
                problems.append(f"{path}:{number}: {words[1]}: {kind} before any 'config' line")
            elif kind == "option":
                sections[-1].options[words[1]] = (words[2], number)
            else:
                sections[-1].lists.setdefault(words[1], []).append(words[2])
        else:
            problems.append(f"{path}:{number}: (file): not a 'config', 'option' or 'list' "
                            f"line: {raw.strip()!r}")
    if problems:
        raise ConfigError(problems)
    return sections


def settings_from_uci(text: str, path: str = "-") -> dict[str, tuple[str, int]]:
    """The daemon settings the ``netwatch`` section gives, by name, with their lines; empty
    values are left out (they keep the default). UCI's booleans ('1', '0') become true and
    false."""
    found = [s for s in parse_uci(text, path) if s.type == SECTION_TYPE]
    if not found:
        raise ConfigError([f"{path}:1: (file): no 'config {SECTION_TYPE}' section"])
    if len(found) > 1:
        raise ConfigError([f"{path}:{found[1].line}: (file): a second 'config "
                           f"{SECTION_TYPE}' section (one is read)"])
    section = found[0]
    problems = []
    out: dict[str, tuple[str, int]] = {}
    for name, (value, line) in section.options.items():
        if name in INIT_ONLY:
            continue
        if name not in NAMES:
            close = difflib.get_close_matches(name, NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{path}:{line}: {name}: unknown option{hint}")
        elif value.strip():
            value = value.strip()
            if name in BOOLEANS:
                value = UCI_BOOLEANS.get(value, value)
            out[name] = (value, line)
    for name in section.lists:
        problems.append(f"{path}:{section.line}: {name}: netwatch takes no 'list' options")
    if problems:
        raise ConfigError(problems)
    return out


def write_settings(uci_path: str, out_path: str) -> None:
    """Translate ``uci_path`` into the settings file ``out_path`` (replaced in one rename,
    only once it has been read back without a problem)."""
    try:
        with open(uci_path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{uci_path}: cannot read: {getattr(e, 'strerror', e) or e}"]
                          ) from None
    values = settings_from_uci(text, uci_path)
    body = (f"# Written by 'netwatch uci-config' from {uci_path} at each start: edit that "
            "file (uci set netwatch.main.OPTION=VALUE), not this one.\n")
    body += yaml.safe_dump({k: v for k, (v, _line) in values.items()},
                           default_flow_style=False, sort_keys=False)
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".netwatch-", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        try:
            load_settings(tmp)
        except ConfigError as e:  # each problem at its UCI line
            raise ConfigError([_at_uci_line(p, tmp, uci_path, values) for p in e.problems]
                              ) from None
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _at_uci_line(problem: str, tmp: str, uci_path: str,
                 values: dict[str, tuple[str, int]]) -> str:
    """``TMP:LINE: setting: message`` as ``UCI_FILE:UCI_LINE: setting: message``."""
    rest = problem.removeprefix(tmp + ":").split(":", 1)[-1].lstrip()
    name = rest.split(":", 1)[0]
    line = values[name][1] if name in values else 1
    return f"{uci_path}:{line}: {rest}"
