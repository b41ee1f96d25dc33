"""The message catalogue and what a carer reads, in English, Dutch, French and German."""

from __future__ import annotations

import json
import string
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from conftest import SYNTHETIC
from netwatch import messages
from netwatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
BRUSSELS = ZoneInfo("Europe/Brussels")


def _fields(template: str) -> set[str]:
    return {f for _l, f, _s, _c in string.Formatter().parse(template) if f}


def _keys(cat: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    return {f"{s}.{k}": _fields(v) for s, sec in cat.items() for k, v in sec.items()}


@pytest.mark.parametrize("language", ["nl", "fr", "de"])
def test_every_language_has_every_sentence_with_the_same_places(language: str) -> None:
    en, other = _keys(messages.catalogue("en")), _keys(messages.catalogue(language))
    assert other.keys() == en.keys()
    for key, fields in en.items():
        assert other[key] == fields, key


@pytest.fixture(scope="module")
def demo_alert(tmp_path_factory: pytest.TempPathFactory) -> dict:
    log = tmp_path_factory.mktemp("demo") / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(SYNTHETIC / "demo-anydesk-scam.pcap"),
                                    "--household", str(ROOT / "deploy" /
                                                       "household.example.yaml"),
                                    "--eve-log", str(log)])
    assert res.exit_code == 0, res.output
    events = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    alerts = [e for e in events if e["event_type"] == "alert"]
    return alerts[-1]  # the one with the bank


def test_english_rendering_matches_the_event_log(demo_alert: dict) -> None:
    a = demo_alert["alert"]
    assert messages.title("en", a["title_code"]) == a["title"]
    assert [messages.reason("en", c, BRUSSELS) for c in a["reason_codes"]] == a["reasons"]


EXPECTED = {
    "en": ("AnyDesk is controlling Maria's laptop", "Online banking (kbc.be)", "Card Stop",
           "Block now", "Tue 2024-03-05 15:04 CET"),
    "nl": ("AnyDesk bestuurt de laptop van Maria", "internetbankieren (kbc.be)", "Card Stop",
           "Nu blokkeren", "di 2024-03-05 15:04 CET"),
    "fr": ("AnyDesk contrôle l'appareil « laptop » de Maria", "La banque en ligne (kbc.be)",
           "Card Stop", "Bloquer maintenant", "mar. 2024-03-05 15:04 CET"),
    "de": ("AnyDesk steuert Marias Gerät „laptop“", "Online-Banking (kbc.be)", "Card Stop",
           "Jetzt sperren", "Di 2024-03-05 15:04 CET"),
}


@pytest.mark.parametrize("language", list(EXPECTED))
def test_a_carer_reads_the_alert_in_their_language(demo_alert: dict, language: str) -> None:
    links = [("block", "https://netwatch.local/a/BLOCK"),
             ("allow", "https://netwatch.local/a/ALLOW")]
    m = messages.render(demo_alert, "Pieter", language, BRUSSELS, "be", links)
    title, bank, line, block, when = EXPECTED[language]
    assert m.title == title
    assert bank in m.body and line in m.body and when in m.body
    assert [a.label for a in m.actions][0] == block
    assert [a.url for a in m.actions] == [u for _k, u in links]
    assert m.key == f"{demo_alert['alert']['session_id']}:Pieter"
    assert m.severity == "critical" and "rotating_light" in m.tags
    # every reason is there, and no English left in another language's reasons
    reasons = [x for x in m.body.splitlines() if x.startswith("- ")]
    assert len(reasons) >= len(demo_alert["alert"]["reasons"])
    if language != "en":
        assert "outside the expected" not in m.body and "What to do" not in m.body


def test_unknown_language_falls_back_to_english(demo_alert: dict) -> None:
    m = messages.render(demo_alert, "Pieter", "xx", BRUSSELS)
    assert m.language == "en" and m.title == demo_alert["alert"]["title"]


def test_durations_and_test_messages() -> None:
    assert messages.duration("en", 59) == "less than a minute"
    assert messages.duration("nl", 20 * 60) == "20 min"
    assert messages.duration("de", 3 * 86400) == "3 Tagen"
    for lang in messages.LANGUAGES:
        title, body = messages.test_message(lang)
        assert "netwatch" in title and body


def _session_event(ts: str, state: str, started: str) -> dict:
    return {"timestamp": ts, "event_type": "session", "src_ip": "192.168.1.23",
            "session": {"id": 7, "tool": "anydesk", "state": state, "relayed": True,
                        "started": started, "active_since": started, "duration_s": 0,
                        "bytes_toserver": 0, "bytes_toclient": 0, "flows": [],
                        "peers": ["198.51.100.77"]}}


def test_a_long_session_is_reported_again_as_still_active() -> None:
    from datetime import datetime

    from netwatch.household import load_household
    from netwatch.policy import decide

    h = load_household(str(ROOT / "deploy" / "household.example.yaml"))
    start = "2024-03-05T14:00:00.000000+0000"
    events = [_session_event(start, "active", start),
              _session_event("2024-03-05T14:05:00.000000+0000", "active", start),   # too soon
              _session_event("2024-03-05T14:20:00.000000+0000", "active", start)]   # 20 min
    out = decide(events, h, datetime.fromisoformat("2024-03-05T15:00:00+00:00"))
    assert [a["alert"]["level"] for a in out] == ["critical", "critical"]
    assert out[1]["alert"]["title"] == "AnyDesk still controlling Maria's laptop: active for 20 min"
    nl = messages.title("nl", out[1]["alert"]["title_code"])
    assert nl == "AnyDesk bestuurt de laptop van Maria nog steeds: al 20 min actief"
