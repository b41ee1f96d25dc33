"""What a carer reads: alerts rendered in their language from the message catalogue.

The policy describes an alert with codes and parameters (``title_code``, ``reason_codes``);
this module turns them into sentences with the catalogue of the carer's language
(``netwatch/locale/<lang>.toml``: English, Dutch, French, German), with times in the
household's time zone. Nothing is built by gluing words in code: every sentence is a
catalogue template with named places.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "nl", "fr", "de")
DEFAULT_LANGUAGE = "en"
DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Action:
    """A button or link in a message."""

    kind: str  # "block" | "allow"
    label: str
    url: str


@dataclass
class Message:
    """One alert for one carer, ready for the outbox."""

    key: str  # "<session_id>:<carer>": one conversation per session and carer
    alert_id: str
    session_id: int
    carer: str
    language: str
    severity: str
    title: str
    body: str
    tags: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    created: float = 0.0


@cache
def catalogue(language: str) -> dict[str, dict[str, str]]:
    """The catalogue of a language (English for one netwatch does not have)."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    with open(LOCALE_DIR / f"{language}.toml", "rb") as fh:
        return tomllib.load(fh)


# What a remote party chose is escaped before a person reads it (netwatch/shown.py).
from .shown import SHOWN_MAX, shown  # noqa: E402,F401


def text(language: str, key: str, **params: Any) -> str:
    """The template ``section.name`` of a language, filled in."""
    section, name = key.split(".", 1)
    template = catalogue(language)[section][name]
    return template.format(**params)


# ---------------------------------------------------------------- the pieces of sentences

def duration(language: str, seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return text(language, "duration.less_than_minute")
    if minutes < 120:
        return text(language, "duration.minutes", n=minutes)
    hours = minutes / 60
    if hours < 48:
        return text(language, "duration.hours", n=f"{hours:.0f}")
    return text(language, "duration.days", n=f"{hours / 24:.0f}")


def who(language: str, w: dict[str, Any]) -> str:
    """The device and its person: {"person", "device", "ip"}."""
    if w.get("device") and w.get("person"):
        return text(language, "who.person_device", person=w["person"], device=w["device"])
    if w.get("device"):
        return text(language, "who.device", device=w["device"])
    return text(language, "who.ip", ip=w.get("ip", "?"))


def window(language: str, w: dict[str, Any], tz: ZoneInfo | None) -> str:
    """A help window {"name", "start", "end"} (ISO times) in the household's time zone."""
    start = datetime.fromisoformat(w["start"])
    end = datetime.fromisoformat(w["end"])
    if tz is not None:
        start, end = start.astimezone(tz), end.astimezone(tz)
    day = text(language, f"days.{DAY_KEYS[start.weekday()]}")
    return text(language, "window.text", name=w["name"], day=day, start=f"{start:%H:%M}",
                end=f"{end:%H:%M}")


def title(language: str, code: dict[str, Any]) -> str:
    p = code["params"]
    return text(language, f"title.{code['code']}", tool=p["tool"], who=who(language, p["who"]),
                duration=duration(language, p.get("duration_s", 0)))


def reason(language: str, code: dict[str, Any], tz: ZoneInfo | None) -> str:
    """One reason sentence from its code and parameters."""
    c, p = code["code"], code["params"]
    tool = p.get("tool", "")
    if c in ("inside", "outside", "outside_none", "other_tools"):
        state = p["state"]
        if state == "active":
            what = text(language, "reason.active", tool=tool, who=who(language, p["who"]),
                        duration=duration(language, p["duration_s"]))
        else:
            what = text(language, "reason.connecting", tool=tool, who=who(language, p["who"]))
        tools = text(language, "reason.or").join(p.get("tools", []))
        win = window(language, p["window"], tz) if p.get("window") else ""
        return text(language, f"reason.{c}", what=what, window=win, tools=tools, tool=tool)
    if c in ("relayed", "dns_only"):
        return text(language, f"reason.{c}", tool=tool)
    if c == "banking":
        # A bank is named by the DNS name looked up when the list has no name for it.
        return text(language, "reason.banking", banks=", ".join(map(shown, p["banks"])))
    if c in ("return_peer", "return_device", "download"):
        return text(language, f"reason.{c}", tool=tool, ago=duration(language, p["ago_s"]))
    if c in BLOCK_CODES:
        return text(language, f"reason.{c}", tool=tool)
    raise KeyError(f"no sentence for reason code {c!r}")


# The blocking decision (policy) and its outcome (netwatch/block), as alert reasons.
BLOCK_CODES = ("blocking", "blocking_outside", "block_done", "block_dry_run", "block_refused",
               "block_failed")


def advice(language: str, alert: dict[str, Any], country: str | None) -> list[str]:
    """What the carer can do, after the seeds' advice: call the person on another phone;
    if banking was opened, call the bank's blocking line from another phone."""
    if alert["level"] == "info":
        return [text(language, "advice.expected")]
    person = alert.get("title_code", {}).get("params", {}).get("who", {}).get("person")
    out = [text(language, "advice.call", person=person) if person
           else text(language, "advice.call_nobody")]
    if any(r["code"] == "banking" for r in alert.get("reason_codes", [])):
        line = text(language, f"advice.line_{country}") if country in (
            "be", "uk", "de", "fr", "nl") else ""
        out.append(text(language, "advice.bank", line=line))
    out.append(text(language, "advice.never"))
    return out


# ---------------------------------------------------------------- whole messages

SEVERITY_TAGS = {"info": ["information_source"], "warning": ["warning"],
                 "critical": ["rotating_light"]}


def render(event: dict[str, Any], carer: str, language: str, tz: ZoneInfo | None,
           country: str | None = None, links: Sequence[tuple[str, str]] = ()) -> Message:
    """An ``alert`` event as a message for one carer: title, body, buttons."""
    alert = event["alert"]
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    when = datetime.fromisoformat(event["timestamp"])
    if tz is not None:
        when = when.astimezone(tz)
    day = text(lang, f"days.{DAY_KEYS[when.weekday()]}")
    head = title(lang, alert["title_code"])
    level = text(lang, "severity." + alert["level"])
    lines = [f"{level}: {head}",
             f"{text(lang, 'label.time')}: {day} {when:%Y-%m-%d %H:%M %Z}"]
    device = event.get("device") or {}
    if device.get("name"):
        lines.append(f"{text(lang, 'label.device')}: {device['name']}"
                     + (f" ({device['person']})" if device.get("person") else ""))
    lines.append("")
    lines += [f"- {reason(lang, r, tz)}" for r in alert["reason_codes"]]
    lines.append("")
    lines.append(text(lang, "advice.heading"))
    lines += [f"- {a}" for a in advice(lang, alert, country)]
    actions = [Action(kind, text(lang, f"label.{kind}"), url) for kind, url in links]
    if actions:
        lines.append("")
        lines += [f"{a.label}: {a.url}" for a in actions]
    return Message(key=f"{alert['session_id']}:{carer}", alert_id=alert["id"],
                   session_id=alert["session_id"], carer=carer, language=lang,
                   severity=alert["level"], title=head, body="\n".join(lines),
                   tags=list(SEVERITY_TAGS[alert["level"]]), actions=actions,
                   created=when.timestamp())


def event_time(event: dict[str, Any]) -> float:
    """An event's time as epoch seconds."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def test_message(language: str) -> tuple[str, str]:
    """The title and body of ``netwatch alert test``."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return text(lang, "test.title"), text(lang, "test.body")
