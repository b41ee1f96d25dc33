"""A household file cannot stall or crash netwatch: recurrence rules that cannot be meant
are refused at validation with FILE:LINE, expansions are bounded, huge values are quoted
by a short prefix, thresholds must be finite."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from netwatch.cli import main
from netwatch.household import HouseholdError, load_household

EVENT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//netwatch tests//bounds//EN
BEGIN:VEVENT
UID:w@netwatch.test
DTSTAMP:20260101T000000Z
DTSTART:20260315T140000Z
DTEND:20260315T160000Z
{rule}
SUMMARY:Help
END:VEVENT
END:VCALENDAR
"""

HOUSEHOLD = """\
people:
  Maria: nl
help_windows:
  - name: Club
    ics: club.ics
"""


def _problems(tmp_path: Path, rule: str) -> list[str]:
    (tmp_path / "club.ics").write_text(EVENT.format(rule=rule).replace("\n", "\r\n"))
    (tmp_path / "h.yaml").write_text(HOUSEHOLD)
    try:
        load_household(str(tmp_path / "h.yaml"))
    except HouseholdError as e:
        return e.problems
    return []


@pytest.mark.parametrize("rule, why", [
    ("RRULE:FREQ=DAILY;INTERVAL=0", "INTERVAL must be 1 or more"),
    ("RRULE:FREQ=WEEKLY;INTERVAL=-2", "INTERVAL must be 1 or more"),
    ("RRULE:FREQ=SECONDLY", "every second"),
    ("RRULE:FREQ=MINUTELY;INTERVAL=5", "every minute"),
    ("RRULE:FREQ=HOURLY;BYMINUTE=0,10,20,30,40,50;BYSECOND=0,15,30,45",
     "times a day"),
    ("RRULE:FREQ=DAILY;BYHOUR=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18;"
     "BYMINUTE=0,5,10,15,20,25", "times a day"),
])
def test_rules_that_cannot_be_meant_are_refused_with_file_and_line(
        tmp_path: Path, rule: str, why: str) -> None:
    problems = _problems(tmp_path, rule)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{tmp_path / 'h.yaml'}:5: help_windows[0].ics: ")
    assert "club.ics is not a usable iCalendar file: line 9: " in problems[0]
    assert why in problems[0]


@pytest.mark.parametrize("rule", ["RRULE:FREQ=WEEKLY;BYDAY=SU",
                                  "RRULE:FREQ=HOURLY;INTERVAL=2;BYHOUR=8,10,12,14",
                                  "RRULE:FREQ=DAILY;BYHOUR=9,14;BYMINUTE=0,30"])
def test_rules_a_household_writes_still_load(tmp_path: Path, rule: str) -> None:
    assert _problems(tmp_path, rule) == []


def test_check_config_with_interval_zero_exits_1_without_a_traceback(tmp_path: Path) -> None:
    _problems(tmp_path, "RRULE:FREQ=DAILY;INTERVAL=0")
    res = CliRunner().invoke(main, ["check-config", str(tmp_path / "h.yaml"),
                                    "--now", "2026-03-16T09:00+01:00"])
    assert res.exit_code == 1, res.output
    assert "INTERVAL must be 1 or more" in res.output


def _load(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "h.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
    try:
        load_household(str(tmp_path / "h.yaml"))
    except HouseholdError as e:
        return e.problems
    return []


@pytest.mark.parametrize("value", ["inf", ".inf", "nan", ".nan", "-5", "0", "1e400"])
def test_session_thresholds_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    problems = _load(tmp_path, f"""
        people:
          Maria: nl
        sessions:
          active_bytes_per_s: {value}
        """)
    assert len(problems) == 1 and "sessions.active_bytes_per_s" in problems[0], problems


def test_a_huge_value_is_quoted_by_a_short_prefix(tmp_path: Path) -> None:
    huge = "x" * 2_000_000
    problems = _load(tmp_path, f"""
        people:
          Maria: nl
        timezone: {huge}
        devices:
          - name: laptop
            person: Maria
            ips: [{huge}]
        sessions:
          active_bytes_per_s: {huge}
        """)
    assert len(problems) == 3, [p[:100] for p in problems]
    assert all(len(p) < 400 for p in problems), [len(p) for p in problems]
    assert all("xxxxxxxxxx" in p and "…" in p for p in problems)


def test_a_device_listed_twice_among_many_is_found(tmp_path: Path) -> None:
    devices = "".join(f"  - name: d{i}\n    person: Maria\n    ips: [10.1.{i // 250}.{i % 250}]\n"
                      for i in range(3000))
    problems = _load(tmp_path, "people:\n  Maria: nl\ndevices:\n" + devices
                     + "  - name: D17\n    person: Maria\n    ips: [10.9.9.9]\n")
    assert len(problems) == 1 and "device 'D17' is listed twice" in problems[0], problems
