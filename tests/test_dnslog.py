"""The dnslog source: dnsmasq's query log followed across rotation, parsed into lookups, and
turned into evidence, sessions and alerts for a box that is only the LAN's DNS server."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema

from conftest import ROOT, signatures
from netwatch import messages
from netwatch.eventlog import EventLog
from netwatch.household import load_household
from netwatch.pipeline import Pipeline
from netwatch.sources.dnslog import DnsLogSource, DnsmasqLog, LogFollower, read_log

BRUSSELS = ZoneInfo("Europe/Brussels")
SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (ROOT / "netwatch" / "schema" / "eve.schema.json").read_text()))
EXAMPLE_HOUSEHOLD = ROOT / "deploy" / "household.example.yaml"
LAPTOP = "192.168.1.23"  # Maria's laptop in the example household


def lines_at(when: datetime, *messages_: str) -> str:
    """dnsmasq log-file lines (ctime's stamp, no year) written at ``when``."""
    stamp = f"{when:%b} {when.day:2d} {when:%H:%M:%S}"
    return "".join(f"{stamp} dnsmasq[412]: {m}\n" for m in messages_)


# ---------------------------------------------------------------------- the follower

def append(path: Path, text: str) -> None:
    """What the resolver does: add to the end of its log."""
    with path.open("a") as fh:
        fh.write(text)


def following(path: Path) -> LogFollower:
    """A follower started on an empty log."""
    path.write_text("")
    f = LogFollower(str(path))
    assert f.read_lines() == []
    return f

def test_follower_reads_appended_lines_and_holds_a_partial_last_line(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.write_text("old line, before netwatch started\n")
    f = LogFollower(str(log))
    assert f.read_lines() == []  # a daemon starting on an old log does not replay it
    append(log, "first\nsec")
    assert f.read_lines() == ["first"]
    assert f.read_lines() == []
    append(log, "ond\n")
    assert f.read_lines() == ["second"]


def test_follower_follows_a_rename_and_a_new_file(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    f = following(log)
    append(log, "one\n")
    os.rename(log, tmp_path / "dnsmasq.log.1")
    append(tmp_path / "dnsmasq.log.1", "two, written before the resolver reopened its log\n"
                                       "three-cut")
    # No new file yet: the old one is still read, and its last line may yet be finished.
    assert f.read_lines() == ["one", "two, written before the resolver reopened its log"]
    log.write_text("four, in the new file\n")
    assert f.read_lines() == ["three-cut", "four, in the new file"]
    assert f.st.rotations == 1
    append(log, "five\n")
    assert f.read_lines() == ["five"]


def test_follower_starts_again_after_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "pihole.log"
    f = following(log)
    append(log, "a long line before the rotation\n")
    assert f.read_lines() == ["a long line before the rotation"]
    with log.open("r+") as fh:  # logrotate's copytruncate: same file, cut to nothing
        fh.truncate(0)
    append(log, "new\n")
    assert f.read_lines() == ["new"]
    assert f.st.truncations == 1 and f.st.rotations == 0


def test_follower_waits_for_a_log_that_is_not_there_yet(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    f = LogFollower(str(log))
    assert f.read_lines() == []
    log.write_text("written by the resolver once it started\n")
    assert f.read_lines() == ["written by the resolver once it started"]  # a new file
    append(log, "next\n")
    assert f.read_lines() == ["next"]
    old = LogFollower(str(log), from_start=True)  # an existing log, read whole on request
    assert old.read_lines() == ["written by the resolver once it started", "next"]


# ---------------------------------------------------------------------- the parser

NOW = datetime(2026, 12, 8, 15, 0, 30, tzinfo=BRUSSELS).timestamp()


def parse(text: str, now: float = NOW) -> tuple[list[Any], DnsmasqLog]:
    p = DnsmasqLog(resolver="192.168.1.2", tz=BRUSSELS)
    for line in text.splitlines():
        p.feed(line, now)
    return p.take(now), p


def test_parser_reads_each_kind_of_answer() -> None:
    at = datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS)
    out, p = parse(lines_at(
        at,
        "query[A] relay-1a2b3c4d.net.anydesk.com from 192.168.1.23",
        "forwarded relay-1a2b3c4d.net.anydesk.com to 9.9.9.9",
        "reply relay-1a2b3c4d.net.anydesk.com is 203.0.113.70",
        "reply relay-1a2b3c4d.net.anydesk.com is 203.0.113.71",
        "query[A] boot.net.anydesk.com from 192.168.1.30",
        "cached boot.net.anydesk.com is 203.0.113.60",
        "query[A] anydesk.com from 192.168.1.31",
        "config anydesk.com is 10.75.9.9",
        "query[A] nas.lan from 192.168.1.23",
        "/etc/hosts nas.lan is 192.168.1.5",
        "query[AAAA] boot.net.anydesk.com from fd00::23",
        "cached boot.net.anydesk.com is NODATA-IPv6",
    ))
    got = [(lk.client, lk.qname, lk.qtype, lk.answers, lk.outcome, lk.source) for lk in out]
    assert got == [
        ("192.168.1.23", "relay-1a2b3c4d.net.anydesk.com", "A",
         ["203.0.113.70", "203.0.113.71"], "answered", "reply"),
        ("192.168.1.30", "boot.net.anydesk.com", "A", ["203.0.113.60"], "answered", "cached"),
        ("192.168.1.31", "anydesk.com", "A", ["10.75.9.9"], "answered", "config"),
        ("192.168.1.23", "nas.lan", "A", ["192.168.1.5"], "answered", "/etc/hosts"),
        ("fd00::23", "boot.net.anydesk.com", "AAAA", [], "negative", "cached"),
    ]
    assert all(lk.ts == at.timestamp() and lk.resolver == "192.168.1.2" for lk in out)
    assert p.st.queries == 5 and p.st.junk == 0


def test_parser_follows_a_cname_chain_to_its_addresses() -> None:
    at = datetime(2026, 12, 8, 15, 0, 29, tzinfo=BRUSSELS)  # other.example: still waiting
    out, _ = parse(lines_at(
        at,
        "query[A] remote.example.org from 192.168.1.23",
        "reply remote.example.org is <CNAME>",
        "reply boot.net.anydesk.com is 203.0.113.60",
        "query[A] other.example from 192.168.1.30",
        "reply unrelated.example is 198.51.100.1",  # not after a CNAME: no one's answer
    ))
    assert [(lk.qname, lk.chain, lk.answers) for lk in out] == [
        ("remote.example.org", ["boot.net.anydesk.com"], ["203.0.113.60"])]


def test_parser_ties_lines_by_serial_with_log_queries_extra() -> None:
    at = datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS)
    out, _ = parse(lines_at(
        at,
        "7 192.168.1.23/41234 query[A] same.example from 192.168.1.23",
        "8 192.168.1.30/5353 query[A] same.example from 192.168.1.30",
        "8 192.168.1.30/5353 reply same.example is 198.51.100.8",
        "7 192.168.1.23/41234 reply same.example is 198.51.100.7",
    ))
    assert sorted((lk.client, tuple(lk.answers)) for lk in out) == [
        ("192.168.1.23", ("198.51.100.7",)), ("192.168.1.30", ("198.51.100.8",))]


def test_parser_reads_pihole_blocks_and_stamps_with_a_year() -> None:
    out, p = parse(
        "2026-12-08T15:00:02.250000+01:00 pi dnsmasq[412]: query[A] ads.example from "
        "192.168.1.23\n"
        "2026-12-08T15:00:02.250000+01:00 pi dnsmasq[412]: gravity blocked ads.example is "
        "0.0.0.0\n"
        "2026-12-08 15:00:03 pihole-FTL[99]: query[A] boot.net.anydesk.com from 192.168.1.30\n"
        "2026-12-08 15:00:03 pihole-FTL[99]: cached boot.net.anydesk.com is 203.0.113.60\n")
    assert [(lk.qname, lk.outcome, lk.answers) for lk in out] == [
        ("ads.example", "blocked", []), ("boot.net.anydesk.com", "answered", ["203.0.113.60"])]
    assert out[0].ts == datetime(2026, 12, 8, 14, 0, 2, 250000,
                                 tzinfo=ZoneInfo("UTC")).timestamp()
    assert out[1].ts == datetime(2026, 12, 8, 15, 0, 3, tzinfo=BRUSSELS).timestamp()
    assert p.st.junk == 0


def test_a_line_without_a_year_from_last_december_is_dated_last_year() -> None:
    new_year = datetime(2027, 1, 1, 0, 0, 5, tzinfo=BRUSSELS).timestamp()
    out, _ = parse("Dec 31 23:59:58 dnsmasq[412]: query[A] a.example from 192.168.1.23\n"
                   "Dec 31 23:59:58 dnsmasq[412]: reply a.example is 198.51.100.1\n",
                   now=new_year)
    assert out[0].ts == datetime(2026, 12, 31, 23, 59, 58, tzinfo=BRUSSELS).timestamp()


def test_junk_and_other_lines_are_counted_never_fatal() -> None:
    at = datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS)
    text = (
        "garbage\n"
        "\n"
        "\x00\xff binary noise\n"
        "Feb 31 10:00:00 dnsmasq[1]: query[A] x.example from 192.168.1.23\n"  # no 31 Feb
        "Dec  8 25:00:00 dnsmasq[1]: query[A] x.example from 192.168.1.23\n"  # no hour 25
        + lines_at(at, "query[A] x.example from not-an-address")
        + "Dec  8 15:00:01 " + "x" * 5000 + "\n"
        + lines_at(at, "started, version 2.89 cachesize 150", "read /etc/hosts - 7 names",
                   "reply nobody-asked.example is 198.51.100.9")
        + "Dec  8 15:00:01 dnsmasq-dhcp[412]: DHCPACK(eth0) 192.168.1.23 3c:22:fb:11:22:33\n")
    out, p = parse(text)
    assert out == []
    assert p.st.junk == 7
    assert p.st.other == 3  # start-up, hosts read, DHCP
    assert p.st.unmatched == 1
    assert p.st.lines == 11


def test_a_query_with_no_answer_is_handed_on_after_waiting() -> None:
    at = datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS).timestamp()
    p = DnsmasqLog(tz=BRUSSELS)
    p.feed("Dec  8 15:00:01 dnsmasq[412]: query[A] slow.example from 192.168.1.23", at)
    # The resolver's clock an hour ahead of netwatch's: the wait is counted on netwatch's.
    p.feed("Dec  8 16:00:01 dnsmasq[412]: query[A] skewed.example from 192.168.1.23", at)
    assert p.take(at + 1) == []  # the upstream answer may still come
    out = p.take(at + 10)
    assert [(lk.qname, lk.outcome) for lk in out] == [("slow.example", "no answer"),
                                                      ("skewed.example", "no answer")]


# ---------------------------------------------------------------------- end to end

def run_dns_only(tmp_path: Path, log_text: str) -> tuple[Pipeline, list[dict[str, Any]]]:
    """The log through the pipeline with the example household, as ``netwatch run
    --source dnslog`` does: lookups in, the event log out."""
    log = tmp_path / "dnsmasq.log"
    log.write_text(log_text)
    lookups, st = read_log(str(log), resolver="192.168.1.2", tz=BRUSSELS, now=NOW)
    assert st.junk == 0
    eve = tmp_path / "eve.json"
    pipe = Pipeline(signatures(), EventLog(str(eve)),
                    household=load_household(str(EXAMPLE_HOUSEHOLD)))
    pipe.feed_lookups(lookups)
    pipe.finish()
    pipe.log.close()
    events = [json.loads(ln) for ln in eve.read_text().splitlines()]
    for e in events:  # the event log's schema covers the DNS-only events too
        assert list(SCHEMA.iter_errors(e)) == [], e
    return pipe, events


SCAM = (lines_at(datetime(2026, 12, 8, 14, 58, 0, tzinfo=BRUSSELS),
                 f"query[A] download.anydesk.com from {LAPTOP}",
                 "reply download.anydesk.com is 203.0.113.50")
        + lines_at(datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS),
                   f"query[A] boot.net.anydesk.com from {LAPTOP}",
                   "reply boot.net.anydesk.com is 203.0.113.60")
        + lines_at(datetime(2026, 12, 8, 15, 0, 20, tzinfo=BRUSSELS),
                   f"query[A] relay-1a2b3c4d.net.anydesk.com from {LAPTOP}",
                   "reply relay-1a2b3c4d.net.anydesk.com is 203.0.113.70"))


def test_anydesk_lookups_outside_a_help_window_alert_and_say_what_dns_cannot_see(
        tmp_path: Path) -> None:
    pipe, events = run_dns_only(tmp_path, SCAM)  # a Tuesday; help is on Sunday mornings
    ra = [(e["remote_access"]["tool"], e["remote_access"]["role"], e["src_ip"])
          for e in events if e["event_type"] == "remote_access"]
    assert ra == [("anydesk", "download", LAPTOP), ("anydesk", "rendezvous", LAPTOP),
                  ("anydesk", "dns", LAPTOP)]
    states = [e["session"]["state"] for e in events if e["event_type"] == "session"]
    assert states == ["idle", "connecting", "ended"]
    assert all(e["session"].get("dns_only") for e in events if e["event_type"] == "session")
    (alert,) = [e for e in events if e["event_type"] == "alert"]
    a = alert["alert"]
    assert a["tool"] == "anydesk" and a["state"] == "connecting"
    assert a["level"] == "critical"  # connecting outside a window, after a download
    codes = [r["code"] for r in a["reason_codes"]]
    assert codes == ["outside", "download", "dns_only"]
    assert "block" not in a["actions"]  # a DNS server cannot cut a connection
    assert "cannot see whether a session really started" in a["reasons"][-1]
    nl = messages.render(alert, "Pieter", "nl", BRUSSELS)
    assert "logboek van de DNS-server" in nl.body
    assert alert["device"]["name"] == "laptop"


def test_an_installed_client_registering_is_an_idle_session_without_alert(
        tmp_path: Path) -> None:
    # No installer fetched: an AnyDesk installed long ago, starting with the computer. It
    # keeps a relay link open while idle, so its relay's name alone is no connection.
    text = lines_at(datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS),
                    f"query[A] boot.net.anydesk.com from {LAPTOP}",
                    "reply boot.net.anydesk.com is 203.0.113.60",
                    f"query[A] relay-1a2b3c4d.net.anydesk.com from {LAPTOP}",
                    "reply relay-1a2b3c4d.net.anydesk.com is 203.0.113.70")
    _pipe, events = run_dns_only(tmp_path, text)
    assert [e["remote_access"]["role"] for e in events
            if e["event_type"] == "remote_access"] == ["rendezvous", "dns"]
    assert [e["session"]["state"] for e in events if e["event_type"] == "session"] == [
        "idle", "ended"]
    assert [e for e in events if e["event_type"] == "alert"] == []


def test_the_vendors_website_alone_is_no_detection(tmp_path: Path) -> None:
    text = lines_at(datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS),
                    f"query[A] anydesk.com from {LAPTOP}", "reply anydesk.com is 203.0.113.9",
                    f"query[A] www.anydesk.com from {LAPTOP}",
                    "reply www.anydesk.com is 203.0.113.9")
    _pipe, events = run_dns_only(tmp_path, text)
    assert [e["event_type"] for e in events] == []


def test_the_live_source_yields_lookups_as_the_log_grows(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.touch()
    now = [NOW]
    src = DnsLogSource(str(log), resolver="192.168.1.2", tz=BRUSSELS, clock=lambda: now[0])
    assert src.poll(0) == []
    append(log, SCAM)
    got = src.poll(0.5)
    assert [lk.qname for lk in got] == ["download.anydesk.com", "boot.net.anydesk.com",
                                        "relay-1a2b3c4d.net.anydesk.com"]
    # Read as they are written, lines take the clock's time, not their stamps (which have
    # no year and are in whatever zone the resolver runs in).
    assert [lk.ts for lk in got] == [NOW] * 3
    assert src.stats()["lookups"] == 3 and src.stats()["junk_lines"] == 0
    assert src.name == "dnslog" and src.kind == "lookups" and src.iface == str(log)
    src.close()


def test_random_and_mutated_lines_never_crash_the_parser_or_the_pipeline() -> None:
    import random

    rng = random.Random(18)
    good = lines_at(datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS),
                    f"7 {LAPTOP}/41234 query[A] relay-1a2b3c4d.net.anydesk.com from {LAPTOP}",
                    "7 192.168.1.23/41234 reply relay-1a2b3c4d.net.anydesk.com is <CNAME>",
                    "reply boot.net.anydesk.com is 203.0.113.60",
                    "gravity blocked kbc.be is ::").splitlines()
    good.append("2026-13-45T99:99:99.5+99:99 pi dnsmasq[1]: query[A] x from 1.2.3.4")
    p = DnsmasqLog(tz=BRUSSELS)
    pipe = Pipeline(signatures(), EventLog(None), household=load_household(
        str(EXAMPLE_HOUSEHOLD)))
    for i in range(1500):
        line = list(rng.choice(good))
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(line))
            op = rng.randrange(3)
            if op == 0:
                del line[at]
            elif op == 1:
                line.insert(at, chr(rng.randrange(0x20, 0x3000)))
            else:
                line[at] = rng.choice(" /:.[]0123456789")
        p.feed("".join(line), NOW + i)
        pipe.feed_lookups(p.take(NOW + i))
    pipe.dns_lookup(NOW, "not an address", "boot.net.anydesk.com")
    pipe.dns_lookup(NOW, LAPTOP, "", ["also not an address"], ["..", "x" * 300])
    pipe.feed_lookups(p.flush())
    pipe.finish()
    assert p.st.lines == 1500
    assert p.st.junk > 0 and p.st.lookups > 0


def test_banking_looked_up_during_a_dns_only_session_raises_it(tmp_path: Path) -> None:
    text = SCAM + lines_at(datetime(2026, 12, 8, 15, 2, 0, tzinfo=BRUSSELS),
                           f"query[A] www.kbc.be from {LAPTOP}",
                           "reply www.kbc.be is 203.0.113.90")
    _pipe, events = run_dns_only(tmp_path, text)
    alerts = [e["alert"] for e in events if e["event_type"] == "alert"]
    assert [a["level"] for a in alerts] == ["critical", "critical"]
    assert [r["code"] for r in alerts[0]["reason_codes"]] == ["outside", "download", "dns_only"]
    assert [r["code"] for r in alerts[1]["reason_codes"]] == [
        "outside", "banking", "download", "dns_only"]
    (ctx,) = [e for e in events if e["event_type"] == "dns"]
    assert ctx["dns"]["bank"] == "kbc.be" and ctx["src_ip"] == LAPTOP


def test_a_name_the_resolver_blocked_is_still_evidence_and_says_so(tmp_path: Path) -> None:
    text = lines_at(datetime(2026, 12, 8, 15, 0, 1, tzinfo=BRUSSELS),
                    f"query[A] boot.net.anydesk.com from {LAPTOP}",
                    "gravity blocked boot.net.anydesk.com is 0.0.0.0")
    _pipe, events = run_dns_only(tmp_path, text)
    (ra,) = [e["remote_access"] for e in events if e["event_type"] == "remote_access"]
    assert ra["role"] == "rendezvous"
    assert "blocked by the resolver" in ra["evidence"][0]["detail"]
