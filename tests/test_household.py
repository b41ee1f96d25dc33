"""The household file: validation names file, line and field; the queries answer for a given
time (never the wall clock), with daylight saving time right; secrets stay masked."""

from __future__ import annotations

import http.server
import os
import shutil
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from netwatch import household as household_mod
from netwatch.cli import main
from netwatch.household import (
    BANKING_DIR,
    COUNTRIES,
    PAYMENTS,
    Household,
    HouseholdError,
    HouseholdUnreadable,
    calendar_cache_path,
    describe,
    fetch_calendars,
    load_banking_lists,
    load_household,
    mask_url,
    normalise_mac,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "household"
EXAMPLE = ROOT / "deploy" / "household.example.yaml"
BRUSSELS = ZoneInfo("Europe/Brussels")
SECRETS = ("s3cret-topic-pieter", "hunter2pw", "AAbbCCddEEff", "123456789")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BRUSSELS)


@pytest.fixture(scope="module")
def full() -> Household:
    return load_household(str(DATA / "full.yaml"))


def write(tmp_path: Path, text: str, name: str = "h.yaml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(p)


def problems_of(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    with pytest.raises(HouseholdError) as e:
        load_household("h.yaml")
    return e.value.problems


# --- the shipped files ---------------------------------------------------------------------


def test_example_file_loads_without_problems_or_warnings() -> None:
    h = load_household(str(EXAMPLE))
    assert h.warnings == []
    assert h.tz.key == "Europe/Brussels"
    assert h.people["Maria"].language == "nl" and h.people["Maria"].country == "be"
    laptop = h.device_for("192.168.1.23")
    assert laptop is not None and laptop.name == "laptop" and laptop.policy == "alert"
    assert h.device_for("10.0.0.1", mac="3C:22:FB:11:22:33") is laptop
    assert [c.name for c in h.carers_for(h.person_of(laptop))] == ["Pieter"]
    assert h.banking_countries == ["be"]
    assert h.is_quiet(local(2026, 5, 1, 23, 30))
    hit = h.window_at(local(2026, 5, 3, 11, 0), laptop, "anydesk")
    assert hit is not None and hit.name == "Pieter helps on Sunday mornings"


def test_bundled_banking_lists_are_headed_and_hold_only_domains() -> None:
    lists = load_banking_lists()
    assert set(lists) == {*COUNTRIES, PAYMENTS}
    for cc in lists:
        text = (BANKING_DIR / f"{cc}.txt").read_text(encoding="utf-8")
        assert text.startswith("#"), cc
        assert "own public website domains" in text
        domains = lists[cc]
        assert len(domains) >= 5, cc
        assert len(set(domains)) == len(domains), cc
        for d in domains:
            assert "." in d and " " not in d and d == d.lower(), (cc, d)
    assert {"kbc.be", "belfius.be", "bnpparibasfortis.be"} <= set(lists["be"])
    assert {"paypal.com", "wise.com", "revolut.com"} <= set(lists[PAYMENTS])


# --- validation ----------------------------------------------------------------------------


# (file, expected line, field path, part of the message)
BAD = {
    "unknown top-level field": ("""
        people:
          Maria: nl
        devics: []
        """, 3, "devics", "unknown field (did you mean 'devices'?)"),
    "unknown device field": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            ips: [192.168.1.23]
            polcy: alert
        """, 7, "devices[0].polcy", "unknown field (did you mean 'policy'?)"),
    "policy not a choice": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            ips: [192.168.1.23]
          - name: pc
            person: Maria
            ips: [192.168.1.24]
            policy: blok
        """, 10, "devices[1].policy",
        "'blok' is not one of observe, alert, block-outside-windows, block"),
    "language": ("""
        people:
          Maria: es
        """, 2, "people.Maria.language", "'es' is not one of en, nl, fr, de"),
    "country": ("""
        people:
          Maria:
            language: nl
            country: gb
        """, 4, "people.Maria.country", "'gb' is not one of be, nl, fr, de, uk"),
    "time zone": ("""
        timezone: Europe/Brusels
        people:
          Maria: nl
        """, 1, "timezone", "did you mean 'Europe/Brussels'?"),
    "time zone that is not a place": ("""
        timezone: GMT
        people:
          Maria: nl
        """, 1, "timezone", "'GMT' is not a place"),
    "no days": ("""
        people:
          Maria: nl
        help_windows:
          - name: Sunday help
            days: []
            start: "10:00"
            end: "12:00"
        """, 5, "help_windows[0].days", "list at least one day"),
    "window empty": ("""
        people:
          Maria: nl
        help_windows:
          - name: Sunday help
            days: [sun]
            start: "10:00"
            end: "10:00"
        """, 7, "help_windows[0].end", "is the same as start"),
    "time": ("""
        people:
          Maria: nl
        quiet_hours:
          start: "22:00"
          end: "25:00"
        """, 5, "quiet_hours.end", "'25:00' is not a time"),
    "quiet hours empty": ("""
        people:
          Maria: nl
        quiet_hours:
          start: "22:00"
          end: "22:00"
        """, 5, "quiet_hours.end", "is the same as start"),
    "day name": ("""
        people:
          Maria: nl
        help_windows:
          - name: Sunday help
            days: [sat, sonday]
            start: "10:00"
            end: "12:00"
        """, 5, "help_windows[0].days[1]", "did you mean 'sunday'?"),
    "window without times": ("""
        people:
          Maria: nl
        help_windows:
          - name: Sunday help
            days: [sun]
            start: "10:00"
        """, 4, "help_windows[0].end", "missing (required)"),
    "window person": ("""
        people:
          Maria: nl
        help_windows:
          - name: Sunday help
            days: [sun]
            start: "10:00"
            end: "12:00"
            people: [Mario]
        """, 8, "help_windows[0].people[0]", "'Mario' is not one of the people (Maria)"),
    "window device": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            ips: [192.168.1.23]
        help_windows:
          - name: Sunday help
            days: [sun]
            start: "10:00"
            end: "12:00"
            devices: [labtop]
        """, 12, "help_windows[0].devices[0]", "did you mean 'laptop'?"),
    "window tool": ("""
        people:
          Maria: nl
        help_windows:
          - name: Sunday help
            days: [sun]
            start: "10:00"
            end: "12:00"
            tools: [anydesc]
        """, 8, "help_windows[0].tools[0]", "'anydesc' is not a tool netwatch knows"),
    "device person": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Jan
            ips: [192.168.1.23]
        """, 5, "devices[0].person", "'Jan' is not one of the people"),
    "device without identifier": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
        """, 4, "devices[0]", "give at least one of macs, ips or hostnames"),
    "IP": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            ips: [192.168.1.300]
        """, 6, "devices[0].ips[0]", "'192.168.1.300' is not an IP address"),
    "MAC": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            macs: 3c:22:fb:11:22
        """, 6, "devices[0].macs", "'3c:22:fb:11:22' is not a MAC address"),
    "MAC of two devices": ("""
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            macs: [3c:22:fb:11:22:33]
          - name: pc
            person: Maria
            macs: [3C-22-FB-11-22-33]
        """, 9, "devices[1].macs", "3c:22:fb:11:22:33 is already device 'laptop''s"),
    "required name": ("""
        people:
          Maria: nl
        carers:
          - language: nl
            notify: [ntfy://ntfy.sh/topic]
        """, 4, "carers[0].name", "missing (required)"),
    "field given twice": ("""
        people:
          Maria: nl
        quiet_hours:
          start: "22:00"
          start: "23:00"
          end: "07:00"
        """, 5, "quiet_hours.start", "given twice"),
    "notify not a URL": ("""
        people:
          Maria: nl
        carers:
          - name: Pieter
            language: nl
            notify: [ntfy.sh/topic-secret-xyz]
        """, 6, "carers[0].notify[0]", "is not an Apprise URL"),
    "carer looks after nobody known": ("""
        people:
          Maria: nl
        carers:
          - name: Pieter
            language: nl
            notify: [ntfy://ntfy.sh/t]
            for: [Maria, Jan]
        """, 7, "carers[0].for[1]", "'Jan' is not one of the people"),
    "trust rule that trusts everything": ("""
        people:
          Maria: nl
        trusted:
          - note: everything is fine
        """, 4, "trusted[0]", "give a tool, a peer or a peer_name"),
    "trusted peer": ("""
        people:
          Maria: nl
        trusted:
          - tool: rdp
            peer: office
        """, 5, "trusted[0].peer", "'office' is not an IP address or network"),
    "trusted tool": ("""
        people:
          Maria: nl
        trusted:
          - tool: remote-desktop-thing
        """, 4, "trusted[0].tool", "is not a tool netwatch knows"),
    "missing calendar": ("""
        people:
          Maria: nl
        help_windows:
          - name: Club
            ics: nowhere.ics
        """, 5, "help_windows[0].ics", "cannot read calendar file"),
    "calendar and weekly fields": ("""
        people:
          Maria: nl
        help_windows:
          - name: Club
            ics: club.ics
            days: [sun]
        """, 6, "help_windows[0].days", "not used with ics"),
    "banking country": ("""
        people:
          Maria: nl
        banking:
          countries: [be, lu]
        """, 4, "banking.countries[1]", "'lu' is not one of be, nl, fr, de, uk"),
    "banking extra": ("""
        people:
          Maria: nl
        banking:
          extra: [mybank]
        """, 4, "banking.extra[0]", "'mybank' is not a domain"),
    "people missing": ("""
        timezone: Europe/Brussels
        """, 1, "people", "missing (required)"),
    "not a mapping": ("""
        people:
          - Maria
        """, 2, "people[0]", "must be a set of 'field: value' lines"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_each_problem_names_file_line_and_field(case: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    text, line, path, message = BAD[case]
    shutil.copy(DATA / "club.ics", tmp_path / "club.ics")
    problems = problems_of(tmp_path, text, monkeypatch)
    prefix = f"h.yaml:{line}: {path}: "
    assert any(p.startswith(prefix) and message in p for p in problems), problems


def test_yaml_syntax_error_names_its_line(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    problems = problems_of(tmp_path, """
        people:
          Maria: nl
        devices:
          - name: laptop
           person: Maria
        """, monkeypatch)
    assert len(problems) == 1
    assert problems[0].startswith("h.yaml:5: yaml: "), problems


def test_all_problems_are_reported_at_once_in_line_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = problems_of(tmp_path, """
        timezone: Mars/Olympus
        people:
          Maria: xx
        devices:
          - name: laptop
            person: Maria
            ips: [nope]
            policy: blok
        """, monkeypatch)
    assert [p.split(":")[1] for p in problems] == ["1", "3", "7", "8"]
    assert problems[0].startswith("h.yaml:1: timezone: 'Mars/Olympus' is not a time zone")


def test_unreadable_file_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(HouseholdUnreadable) as e:
        load_household(str(tmp_path / "missing.yaml"))
    assert e.value.problems == [f"{tmp_path / 'missing.yaml'}: cannot read: "
                                "No such file or directory"]


def test_unparseable_calendar_is_a_problem(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(DATA / "broken.ics", tmp_path / "broken.ics")
    problems = problems_of(tmp_path, """
        people:
          Maria: nl
        help_windows:
          - name: Club
            ics: broken.ics
        """, monkeypatch)
    assert len(problems) == 1
    assert problems[0].startswith("h.yaml:5: help_windows[0].ics: ")
    assert "is not a usable iCalendar file" in problems[0]


def test_no_carer_to_notify_is_a_warning_not_an_error(tmp_path: Path) -> None:
    h = load_household(write(tmp_path, """
        people:
          Maria: nl
        carers:
          - name: Pieter
            language: nl
        """))
    assert len(h.warnings) == 1
    assert h.warnings[0].endswith("h.yaml:3: carers: no carer has a 'notify' address: nobody "
                                  "will be told of an alert")


def test_unquoted_times_and_macs_keep_what_was_typed(tmp_path: Path) -> None:
    # YAML 1.1 reads 10:00 and 12:34:56:00:11:22 as base-60 integers; the file means text.
    h = load_household(write(tmp_path, """
        timezone: Europe/Brussels
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            macs: 12:34:56:00:11:22
        help_windows:
          - name: Sunday help
            days: sun
            start: 10:00
            end: 24:00
        """))
    assert h.devices[0].macs == ["12:34:56:00:11:22"]
    hit = h.window_at(local(2026, 5, 3, 23, 59))
    assert hit is not None
    assert (hit.start, hit.end) == (local(2026, 5, 3, 10, 0), local(2026, 5, 4, 0, 0))


def test_whole_day_window(tmp_path: Path) -> None:
    h = load_household(write(tmp_path, """
        timezone: Europe/Brussels
        people:
          Maria: nl
        help_windows:
          - name: Visit
            days: [sat]
            start: "00:00"
            end: "24:00"
        """))
    hit = h.window_at(local(2026, 5, 2, 0, 0))
    assert hit is not None and (hit.start, hit.end) == (local(2026, 5, 2), local(2026, 5, 3))
    assert h.window_at(local(2026, 5, 3, 0, 0)) is None
    assert "Visit: sat 00:00-24:00" in describe(h, local(2026, 5, 1))


def test_names_are_matched_without_regard_to_case(full: Household) -> None:
    ipad = next(d for d in full.devices if d.name == "ipad")
    assert ipad.person == "Maria"  # written "maria" in the file
    assert full.windows[0].tools == ["anydesk", "teamviewer"]


def test_time_zone_defaults_to_the_systems(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("netwatch.household.system_timezone", lambda: "Europe/Paris")
    h = load_household(write(tmp_path, "people:\n  Maria: fr\n"))
    assert h.tz.key == "Europe/Paris"


def test_queries_refuse_naive_times(full: Household) -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        full.window_at(datetime(2026, 3, 29, 10, 30))


# --- devices -------------------------------------------------------------------------------


def test_device_for_ip_given_in_the_file(full: Household) -> None:
    d = full.device_for("192.168.1.23")
    assert d is not None and d.name == "laptop"
    desktop = full.device_for("fd00:0:0:0:0:0:0:30")
    assert desktop is not None and desktop.name == "desktop"
    assert full.device_for("192.168.1.99") is None
    assert full.device_for("not-an-ip") is None


def test_device_for_mac_wins_over_ip(full: Household) -> None:
    d = full.device_for("192.168.1.30", mac="3c:22:fb:11:22:33")
    assert d is not None and d.name == "laptop"


def test_device_for_ip_from_the_leases_by_mac_and_by_hostname(full: Household) -> None:
    by_mac = full.device_for("192.168.1.40")
    assert by_mac is not None and by_mac.name == "laptop"
    by_host = full.device_for("192.168.1.41")  # lease hostname Marias-iPad
    assert by_host is not None and by_host.name == "ipad"
    assert full.device_for("192.168.1.42") is None  # a lease, but no device of ours


def test_leases_are_read_again_when_the_file_changes(tmp_path: Path) -> None:
    leases = tmp_path / "dhcp.leases"
    leases.write_text("1774800000 3c:22:fb:11:22:33 192.168.1.40 * *\n")
    h = load_household(write(tmp_path, """
        people:
          Maria: nl
        devices:
          - name: laptop
            person: Maria
            macs: [3c:22:fb:11:22:33]
        dhcp_leases: dhcp.leases
        """))
    assert h.device_for("192.168.1.40") is not None
    leases.write_text("1774800000 3c:22:fb:11:22:33 192.168.1.77 * *\n")
    st = leases.stat()
    os.utime(leases, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert h.device_for("192.168.1.40") is None
    laptop = h.device_for("192.168.1.77")
    assert laptop is not None and laptop.name == "laptop"


def test_missing_leases_file_is_a_warning(tmp_path: Path) -> None:
    h = load_household(write(tmp_path, """
        people:
          Maria: nl
        dhcp_leases: nowhere.leases
        """))
    assert any(":3: dhcp_leases: cannot read" in w for w in h.warnings)
    assert h.device_for("192.168.1.40") is None


@pytest.mark.parametrize("text,mac", [("3C:22:FB:11:22:33", "3c:22:fb:11:22:33"),
                                      ("3c-22-fb-11-22-33", "3c:22:fb:11:22:33"),
                                      ("3c22.fb11.2233", "3c:22:fb:11:22:33"),
                                      ("3c:22:fb:11:22", None), ("3c:22-fb:11:22:33", None)])
def test_mac_spellings(text: str, mac: str | None) -> None:
    assert normalise_mac(text) == mac


def test_person_and_carers_of_a_device(full: Household) -> None:
    desktop = full.device_for("192.168.1.30")
    jean = full.person_of(desktop)
    assert jean is not None and jean.name == "Jean"
    assert [c.name for c in full.carers_for(jean)] == ["Claire"]
    assert [c.name for c in full.carers_for(full.people["Maria"])] == ["Pieter", "Claire"]
    # A device nobody knows: everyone hears of it.
    assert full.person_of(None) is None
    assert [c.name for c in full.carers_for(None)] == ["Pieter", "Claire"]


# --- weekly help windows -------------------------------------------------------------------


def test_weekly_window_is_open_from_start_until_just_before_end(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    assert full.window_at(local(2026, 5, 3, 9, 59), laptop, "anydesk") is None
    hit = full.window_at(local(2026, 5, 3, 10, 0), laptop, "anydesk")
    assert hit is not None and hit.name == "Pieter helps on Sunday mornings"
    assert hit.start.tzinfo is full.tz
    assert full.window_at(local(2026, 5, 3, 11, 59, 59), laptop, "anydesk") is not None
    assert full.window_at(local(2026, 5, 3, 12, 0), laptop, "anydesk") is None
    assert full.window_at(local(2026, 5, 2, 11, 0), laptop, "anydesk") is None  # a Saturday


def test_window_at_respects_people_devices_and_tools(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    desktop = full.device_for("192.168.1.30")
    sunday = local(2026, 5, 3, 11, 0)
    assert full.window_at(sunday, laptop, "rustdesk") is None  # not a tool Pieter uses
    assert full.window_at(sunday, laptop, None) is None  # unknown tool: only "any tool"
    assert full.window_at(sunday, desktop, "anydesk") is None  # Jean's computer
    assert full.window_at(sunday, None, "anydesk") is None  # unknown device


def test_window_across_midnight(full: Household) -> None:
    desktop = full.device_for("192.168.1.30")
    assert full.window_at(local(2026, 5, 1, 21, 59), desktop, "vnc") is None  # Friday
    hit = full.window_at(local(2026, 5, 1, 22, 0), desktop, "vnc")
    assert hit is not None and hit.name == "Late chess with Jean"
    after_midnight = full.window_at(local(2026, 5, 2, 0, 30), desktop, "vnc")
    assert after_midnight is not None
    assert (after_midnight.start, after_midnight.end) == (local(2026, 5, 1, 22, 0),
                                                          local(2026, 5, 2, 1, 0))
    assert full.window_at(local(2026, 5, 2, 1, 0), desktop, "vnc") is None
    assert full.window_at(local(2026, 5, 2, 22, 30), desktop, "vnc") is None  # Saturday


def test_full_day_names_and_groups(tmp_path: Path) -> None:
    h = load_household(write(tmp_path, """
        timezone: Europe/Brussels
        people:
          Maria: nl
        help_windows:
          - name: Weekday evenings
            days: weekdays
            start: "18:00"
            end: "19:00"
          - name: Saturday
            days: [SATURDAY]
            start: "09:00"
            end: "10:00"
        """))
    assert [h.window_at(local(2026, 5, d, 18, 30)) is not None for d in range(4, 11)] == \
        [True, True, True, True, True, False, False]
    sat = h.window_at(local(2026, 5, 9, 9, 30))
    assert sat is not None and sat.name == "Saturday"


@pytest.mark.parametrize("day,start_utc", [
    ((2026, 3, 22), utc(2026, 3, 22, 9, 0)),   # winter time, UTC+1
    ((2026, 3, 29), utc(2026, 3, 29, 8, 0)),   # clocks went forward at 02:00 that morning
    ((2026, 10, 18), utc(2026, 10, 18, 8, 0)),  # summer time, UTC+2
    ((2026, 10, 25), utc(2026, 10, 25, 9, 0)),  # clocks went back at 03:00 that morning
])
def test_sunday_window_on_daylight_saving_weekends(full: Household, day: tuple[int, int, int],
                                                   start_utc: datetime) -> None:
    laptop = full.device_for("192.168.1.23")
    hit = full.window_at(start_utc, laptop, "teamviewer")
    assert hit is not None
    assert hit.start.astimezone(UTC) == start_utc
    assert hit.end.astimezone(UTC) == start_utc + timedelta(hours=2)
    assert (hit.start.date(), hit.start.hour) == (datetime(*day).date(), 10)
    assert full.window_at(start_utc - timedelta(seconds=1), laptop, "teamviewer") is None


def test_next_windows_across_the_spring_change(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    hits = [h for h in full.next_windows(utc(2026, 3, 27, 12, 0), 6, laptop)
            if h.name.startswith("Pieter")]
    assert [h.start.astimezone(UTC) for h in hits[:2]] == [utc(2026, 3, 29, 8, 0),
                                                           utc(2026, 4, 5, 8, 0)]


def test_next_windows_across_the_autumn_change() -> None:
    h = load_household(str(EXAMPLE))
    hits = h.next_windows(utc(2026, 10, 17, 12, 0), 3)
    assert [x.start.astimezone(UTC) for x in hits] == [
        utc(2026, 10, 18, 8, 0), utc(2026, 10, 25, 9, 0), utc(2026, 11, 1, 9, 0)]
    assert all(x.start.strftime("%a %H:%M") == "Sun 10:00" for x in hits)


def test_next_windows_starts_with_the_one_open_now(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    hits = full.next_windows(local(2026, 5, 3, 11, 0), 2, laptop)
    assert hits[0].start == local(2026, 5, 3, 10, 0)
    assert hits[0].contains(local(2026, 5, 3, 11, 0))


def test_next_windows_without_windows_or_count(full: Household, tmp_path: Path) -> None:
    assert full.next_windows(utc(2026, 5, 1), 0) == []
    h = load_household(write(tmp_path, "people:\n  Maria: nl\n"))
    assert h.next_windows(utc(2026, 5, 1)) == []


# --- calendar help windows -----------------------------------------------------------------


def test_calendar_weekly_event_with_dst(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    before = full.window_at(local(2026, 3, 15, 15, 0), laptop, "rustdesk")
    assert before is not None and before.name == "Computer club"
    assert before.summary == "Computer club helps with the laptop"
    assert before.start.astimezone(UTC) == utc(2026, 3, 15, 13, 0)
    after = full.window_at(local(2026, 3, 29, 15, 0), laptop, "rustdesk")
    assert after is not None and after.start.astimezone(UTC) == utc(2026, 3, 29, 12, 0)


def test_calendar_exdate_is_skipped(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    assert full.window_at(local(2026, 3, 22, 15, 0), laptop, "rustdesk") is None


def test_calendar_moved_occurrence_is_honoured(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    assert full.window_at(local(2026, 4, 5, 15, 0), laptop, "rustdesk") is None
    moved = full.window_at(local(2026, 4, 6, 18, 30), laptop, "rustdesk")
    assert moved is not None and moved.summary == "Computer club (moved to Easter Monday)"
    club = [h for h in full.next_windows(local(2026, 3, 16, 0, 0), 12, laptop)
            if h.name == "Computer club"]
    assert [h.start for h in club[:3]] == [local(2026, 3, 29, 14, 0),
                                           local(2026, 4, 6, 18, 0), local(2026, 4, 12, 14, 0)]


def test_calendar_all_day_and_floating_events(full: Household) -> None:
    desktop = full.device_for("192.168.1.30")
    day = full.window_at(local(2026, 3, 29, 23, 30), desktop, "vnc")
    assert day is not None and day.summary == "Pieter visits all day"
    # Local midnight to midnight: 23 hours on the day the clocks go forward.
    assert (day.start, day.end) == (local(2026, 3, 29), local(2026, 3, 30))
    assert day.end.astimezone(UTC) - day.start.astimezone(UTC) == timedelta(hours=23)
    floating = full.window_at(utc(2026, 4, 1, 8, 30), desktop, "vnc")  # 10:30 in Brussels
    assert floating is not None and floating.summary.startswith("Bank appointment")
    assert full.window_at(utc(2026, 4, 2, 8, 30), desktop, "vnc") is None  # cancelled


def test_ics_url_is_not_fetched_at_load_and_warns(tmp_path: Path) -> None:
    path = write(tmp_path, """
        people:
          Maria: nl
        help_windows:
          - name: Family calendar
            ics_url: https://calendar.example.org/private-abc123/basic.ics
        """)
    h = load_household(path)
    calendar_warnings = [w for w in h.warnings if ": help_windows[0].ics_url: " in w]
    assert len(calendar_warnings) == 1
    assert calendar_warnings[0].endswith(":5: help_windows[0].ics_url: not downloaded yet: run "
                                         "'netwatch check-config --fetch FILE'; until then "
                                         "this window never opens")
    assert "private-abc123" not in repr(h)
    assert h.next_windows(utc(2026, 3, 16)) == []


@pytest.fixture
def calendar_server() -> Iterator[str]:
    body = (DATA / "club.ics").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            data = body if self.path.endswith(".ics") else b"<html>not a calendar</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_saves_the_calendar_beside_the_file(tmp_path: Path, calendar_server: str) -> None:
    path = write(tmp_path, f"""
        timezone: Europe/Brussels
        people:
          Maria: nl
        help_windows:
          - name: Computer Club
            ics_url: {calendar_server}/token-xyz/club.ics
          - name: Bad link
            ics_url: {calendar_server}/token-xyz/page
        """)
    results = fetch_calendars(path)
    assert [ok for ok, _ in results] == [True, False]
    assert all("token-xyz" not in msg for _, msg in results)
    cache = calendar_cache_path(path, "Computer Club")
    assert cache == str(tmp_path / ".computer-club.ics.cache")
    assert os.path.exists(cache)
    assert not os.path.exists(calendar_cache_path(path, "Bad link"))
    h = load_household(path)
    hit = h.window_at(local(2026, 3, 29, 15, 0))
    assert hit is not None and hit.name == "Computer Club"


# --- quiet hours, trust, banking -----------------------------------------------------------


@pytest.mark.parametrize("when,quiet", [
    (local(2026, 5, 1, 21, 59), False), (local(2026, 5, 1, 22, 0), True),
    (local(2026, 5, 2, 3, 0), True), (local(2026, 5, 2, 6, 59), True),
    (local(2026, 5, 2, 7, 0), False), (local(2026, 5, 2, 12, 0), False),
    (utc(2026, 5, 1, 20, 30), True),  # 22:30 in Brussels (summer time)
    (utc(2026, 1, 15, 21, 30), True),  # 22:30 in Brussels (winter time)
    (utc(2026, 1, 15, 20, 30), False),
])
def test_quiet_hours_across_midnight(full: Household, when: datetime, quiet: bool) -> None:
    assert full.is_quiet(when) is quiet


def test_trusted_rules(full: Household) -> None:
    laptop = full.device_for("192.168.1.23")
    desktop = full.device_for("192.168.1.30")
    rule = full.trusted_rule(laptop, "rdp", "203.0.113.5", None)
    assert rule is not None and rule.note == "office computer"
    assert full.trusted_rule(laptop, "rdp", "203.0.113.6", None) is None
    assert full.trusted_rule(desktop, "rdp", "203.0.113.5", None) is None
    assert full.trusted_rule(None, "rdp", "203.0.113.5", None) is None
    assert full.trusted_rule(laptop, "anydesk", "203.0.113.5", None) is None
    # A network, on any device.
    assert full.trusted_rule(None, "vnc", "198.51.100.77", None) is not None
    assert full.trusted_rule(None, "vnc", None, None) is None
    # A peer name covers the names under it, not look-alikes.
    assert full.trusted_rule(laptop, "teamviewer", None, "helpdesk.example.org.") is not None
    assert full.trusted_rule(laptop, "teamviewer", None, "eu.HELPDESK.example.org") is not None
    assert full.trusted_rule(laptop, "teamviewer", None, "nothelpdesk.example.org") is None
    assert full.trusted_rule(laptop, "teamviewer", "192.0.2.1", None) is None
    # A tool alone, for one device.
    assert full.trusted_rule(desktop, "quickassist", "192.0.2.1", "x.example") is not None
    assert full.trusted_rule(laptop, "quickassist", "192.0.2.1", "x.example") is None


@pytest.mark.parametrize("name,expected", [
    ("kbc.be", ("kbc.be", "be")), ("www.kbc.be", ("kbc.be", "be")),
    ("WWW.KBC.BE.", ("kbc.be", "be")), ("kbc.be.example.org", None), ("notkbc.be", None),
    ("www.rabobank.nl", ("rabobank.nl", "nl")), ("www.paypal.com", ("paypal.com", "payments")),
    ("login.mybank.example", ("mybank.example", "extra")),
    ("www.sparkasse.de", None),  # Germany is not one of this household's countries
])
def test_banking_names(full: Household, name: str, expected: tuple[str, str] | None) -> None:
    assert full.banking(name) == expected


def test_banking_answers_stay_the_same_when_names_come_again(full: Household) -> None:
    # Every name's answer, asked three times in turn (remembered from the second time on,
    # forgotten when the table is full), is the walk from the name up its parents.
    def walk(name: str) -> tuple[str, str] | None:
        labels = name.strip().rstrip(".").lower().split(".")
        for i in range(len(labels)):
            domain = ".".join(labels[i:])
            if domain in full.banking_domains:
                return domain, full.banking_domains[domain]
        return None

    domains = sorted(full.banking_domains)[:300]
    names = [f"{p}{d}{s}" for d in domains for p in ("", "www.", "a.b.", "not")
             for s in ("", ".", ".example.org")] + ["", ".", "a..kbc.be", "KBC.BE"]
    names += [f"host{i}.example.net" for i in range(household_mod.BANKING_NAMES)]
    assert sum(walk(n) is not None for n in names) >= 6 * len(domains) > 0
    for _ in range(3):
        for n in names:
            assert full.banking(n) == walk(n), n


def test_banking_countries_default_to_the_peoples(tmp_path: Path) -> None:
    h = load_household(write(tmp_path, """
        people:
          Maria: {language: nl, country: be}
          Hans: {language: de, country: de}
        """))
    assert h.banking_countries == ["be", "de"]
    assert h.banking("www.sparkasse.de") == ("sparkasse.de", "de")
    assert h.banking("www.barclays.co.uk") is None
    nobody = load_household(write(tmp_path, "people:\n  Maria: nl\n", "n.yaml"))
    assert nobody.banking_countries == list(COUNTRIES)
    assert nobody.banking("www.barclays.co.uk") == ("barclays.co.uk", "uk")


# --- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize("url,masked", [
    ("ntfy://ntfy.sh/grandma-alerts", "ntfy://ntfy.sh/****"),
    ("ntfys://user:pass@ntfy.example.org:8443/topic", "ntfys://****@ntfy.example.org:8443/****"),
    ("ntfy://grandma-alerts", "ntfy://****"),
    ("mailto://user:pw@gmail.com?to=x@example.org", "mailto://****@gmail.com/****"),
    ("tgram://123456789:AAbbCC/987", "tgram://****"),
    ("json://192.168.1.5:8080/hook", "json://192.168.1.5:8080/****"),
    ("https://ntfy.sh", "https://ntfy.sh"),
    ("not a url", "****"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_repr_and_str_never_show_notification_secrets(full: Household) -> None:
    for text in (repr(full), str(full), repr(full.carers), str(full.carers[0])):
        for secret in SECRETS:
            assert secret not in text
    assert "ntfy://ntfy.sh/****" in repr(full)
    assert full.carers[0].notify[0] == "ntfy://ntfy.sh/s3cret-topic-pieter"  # usable as is


def test_bad_notify_url_is_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = problems_of(tmp_path, BAD["notify not a URL"][0], monkeypatch)
    assert all("topic-secret-xyz" not in p for p in problems)


def test_url_in_the_wrong_field_is_masked_in_the_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = problems_of(tmp_path, """
        people:
          Maria: nl
        carers:
          - name: Pieter
            language: ntfy://ntfy.sh/topic-secret-xyz
        """, monkeypatch)
    assert problems == ["h.yaml:5: carers[0].language: 'ntfy://ntfy.sh/****' is not one of "
                        "en, nl, fr, de"]


# --- netwatch check-config -----------------------------------------------------------------


def test_check_config_prints_the_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(DATA / "full.yaml"),
                                       "--now", "2026-03-28T12:00"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for secret in SECRETS:
        assert secret not in result.output
    assert "ntfy://ntfy.sh/****" in out and "mailto://****@mail.example.org/****" in out
    assert "laptop (Maria's): policy block-outside-windows; MAC 3c:22:fb:11:22:33, " \
        "IP 192.168.1.23" in out
    assert "rdp on laptop with 203.0.113.5 (office computer)" in out
    assert "banking: countries be, nl; 39 domains" in out
    assert "quiet hours: 22:00-07:00" in out
    upcoming = out.split("next help windows from Sat 2026-03-28 12:00 CET:\n")[1].splitlines()
    assert len(upcoming) == 5
    assert upcoming[1] == "  Sun 2026-03-29 10:00 - 12:00 CEST  Pieter helps on Sunday mornings"


def test_check_config_now_with_an_offset(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(EXAMPLE),
                                       "--now", "2026-10-25T08:30:00+00:00"])
    assert result.exit_code == 0, result.output
    first = result.stdout.split("next help windows from ")[1].splitlines()[1]
    assert first == "  Sun 2026-10-25 10:00 - 12:00 CET  Pieter helps on Sunday mornings"


def test_check_config_problems_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, BAD["policy not a choice"][0])
    result = CliRunner().invoke(main, ["check-config", path])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:10: devices[1].policy: 'blok' is not one of observe, alert, "
        "block-outside-windows, block (did you mean 'block'?)"]


def test_check_config_unreadable_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "cannot read" in result.stderr


def test_check_config_bad_now_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["check-config", str(EXAMPLE), "--now", "sunday"])
    assert result.exit_code == 2
    assert "is not an ISO 8601 time" in result.output
