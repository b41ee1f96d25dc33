"""The alert outbox: write-ahead, retries with backoff, at-least-once across restarts,
deduplication and rate limits, secrets kept out of errors and logs, the delivery worker.

Receivers are real, on loopback: the fake ntfy server of tests/test_senders.py. Time is
passed in to the outbox; only the worker subprocess reads the clock.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_senders import (
    PASSWORD,
    TOKEN,
    TOPIC,
    FakeNtfy,
    free_port,
    make_message,
)

from netwatch.cli import main
from netwatch.outbox import Outbox, backoff_s, message_from_json, message_to_json
from netwatch.senders import DeliveryId, Senders

T0 = 1_700_000_000.0
SECRETS = (TOKEN, PASSWORD, TOPIC)


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def row_of(req_id: str) -> int:
    """The outbox row id in an X-Netwatch-Id header (``<row>.<revision>@<instance>``)."""
    return int(req_id.split(".")[0])




@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "state") as b:
        yield b


def target(fake: FakeNtfy) -> str:
    return fake.url(cred=f"alice:{PASSWORD}@", query=f"?token={TOKEN}")


def no_secrets(*texts: str | None) -> None:
    for t in texts:
        for s in SECRETS:
            assert s not in (t or ""), f"secret in {t!r}"


# --- write-ahead and storage ------------------------------------------------------------------


def test_rows_are_committed_before_anything_is_sent(box: Outbox, ntfy: FakeNtfy) -> None:
    url = target(ntfy)
    ids = box.enqueue(make_message(), [url, url, "mailto://a:b@127.0.0.1:1?to=x@y.org"])
    assert len(ids) == 2  # one row per distinct target
    # Another connection (another process, after a crash) sees them, before any send.
    db = sqlite3.connect(box.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute("SELECT id, status, key, target FROM outbox ORDER BY id").fetchall()
    db.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [(ids[0], "pending", "12:Pieter"),
                                                 (ids[1], "pending", "12:Pieter")]
    assert rows[0][3] == url  # stored: the outbox must be able to send
    assert ntfy.requests == []
    assert os.stat(box.path).st_mode & 0o077 == 0  # the database holds secrets
    [p, _] = box.pending()
    assert p.masked_target == f"ntfy://****@127.0.0.1:{ntfy.port}/****"
    no_secrets(repr(p), repr(box.pending()), str(box.stats()))


def test_message_round_trip() -> None:
    m = make_message("critical")
    assert message_from_json(message_to_json(m)) == m


def test_unknown_severity_is_refused(box: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown severity"):
        box.enqueue(make_message("urgent"), ["ntfy://127.0.0.1:1/t"])


# --- delivery ---------------------------------------------------------------------------------


def test_deliver_due_sends_in_order_once(box: Outbox, ntfy: FakeNtfy) -> None:
    url = target(ntfy)
    ids = [box.enqueue(make_message(key=f"{i}:Pieter", title=f"alert {i}", created=T0 + i),
                       [url])[0] for i in range(5)]
    report = box.deliver_due(T0 + 10, Senders())
    assert report.sent == ids and not report.retry and not report.held
    assert [r.json["title"] for r in ntfy.requests] == [f"alert {i}" for i in range(5)]
    assert [row_of(r.netwatch_id) for r in ntfy.requests] == ids
    assert all(r.netwatch_id.endswith("@" + box.instance) for r in ntfy.requests)
    assert box.pending() == []
    assert box.stats()["sent"] == 5
    # Nothing is due any more: a second pass sends nothing.
    assert not box.deliver_due(T0 + 20, Senders())
    assert len(ntfy.requests) == 5


def test_latency_enqueue_to_arrival(tmp_path: Path, ntfy: FakeNtfy) -> None:
    """Not asserted: printed for the record (run with -s to see it)."""
    url = ntfy.url()
    box = Outbox(tmp_path, max_per_hour=0)  # 0: no hourly cap
    latencies = []
    for i in range(20):
        start = time.monotonic()
        box.enqueue(make_message(key=f"{i}:Pieter", created=time.time()), [url])
        box.deliver_due(time.time(), Senders())
        assert wait_for(lambda n=i + 1: len(ntfy.requests) >= n, 10)
        latencies.append(ntfy.requests[-1].at - start)
    box.close()
    print(f"\noutbox latency enqueue -> arrival (in-process pass, loopback ntfy): "
          f"median {statistics.median(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms over 20")


def test_receiver_down_then_back(box: Outbox, ntfy: FakeNtfy) -> None:
    url = target(ntfy)
    ids = [box.enqueue(make_message(key=f"{i}:Pieter", created=T0), [url])[0]
           for i in range(4)]
    ntfy.status = 503
    now, tries, passes = T0, [], 0
    for _ in range(8):
        before = len(ntfy.requests)
        report = box.deliver_due(now, Senders())
        passes += 1
        # One request per pass for a failing target, not one per row.
        assert len(ntfy.requests) == before + 1
        assert sorted(report.retry) == ids
        rows = box.pending()
        assert len(rows) == 4 and {r.hold for r in rows} == {"retry"}
        assert all("HTTP 503" in (r.last_error or "") for r in rows)
        tries.append(min(r.next_try for r in rows) - now)
        now = max(r.next_try for r in rows)
    assert [r.attempts for r in box.pending()] == [8] * 4
    # The waits grow: 1 s, 2 s, 4 s… less up to a fifth of jitter.
    assert all(b > a for a, b in zip(tries, tries[1:], strict=False))
    assert tries[0] <= 1.0 and tries[-1] >= 128 * 0.8

    port = ntfy.port
    ntfy.stop()  # now connection refused
    box.deliver_due(now, Senders())
    assert all("connection refused" in (r.last_error or "") for r in box.pending())
    ntfy.port, ntfy.status = port, 200
    ntfy.start()
    now = max(r.next_try for r in box.pending())
    report = box.deliver_due(now, Senders())
    assert sorted(report.sent) == ids
    assert Counter(row_of(r.netwatch_id) for r in ntfy.accepted) == dict.fromkeys(ids, 1)
    assert box.pending() == [] and box.stats()["sent"] == 4
    no_secrets(*[r.last_error for r in box.rows()], str(box.stats()))


def test_max_attempts_then_failed_keeps_the_error(tmp_path: Path, ntfy: FakeNtfy) -> None:
    with Outbox(tmp_path, max_attempts=3) as box:
        [rid] = box.enqueue(make_message(), [target(ntfy)])
        ntfy.status = 503
        now = T0
        for _ in range(3):
            report = box.deliver_due(now, Senders())
            now += 1000
        assert report.failed == [rid]
        [row] = box.rows("failed")
        assert row.attempts == 3 and "HTTP 503" in (row.last_error or "")
        assert box.pending() == []
        no_secrets(row.last_error)
        assert box.requeue_failed() == 1
        ntfy.status = 200
        assert box.deliver_due(now, Senders()).sent == [rid]


def test_backoff_is_capped_and_deterministic() -> None:
    assert [round(backoff_s(n, 0), 3) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(20, 1) <= 300 and backoff_s(20, 1) >= 240
    assert backoff_s(5, 42) == backoff_s(5, 42)
    assert len({backoff_s(9, r) for r in range(10)}) == 10  # rows spread out


def test_killed_between_send_and_mark_is_resent_with_the_same_id(
        tmp_path: Path, ntfy: FakeNtfy) -> None:
    class DiesAfterSending(Senders):
        def send(self, target: str, message: object, delivery: DeliveryId) -> None:
            super().send(target, message, delivery)  # type: ignore[arg-type]
            raise KeyboardInterrupt  # the process is gone before it could mark the row

    url = ntfy.url()
    with Outbox(tmp_path) as box:
        [rid] = box.enqueue(make_message(), [url])
        with pytest.raises(KeyboardInterrupt):
            box.deliver_due(T0, DiesAfterSending())
    with Outbox(tmp_path) as box:  # restarted
        report = box.deliver_due(T0 + 1, Senders())
        assert report.sent == [rid] and report.resent == [rid]
        assert box.deliver_due(T0 + 2, Senders()).sent == []
    ids = [r.netwatch_id for r in ntfy.requests]
    assert len(ids) == 2 and ids[0] == ids[1]  # at least once, and the receiver can tell
    assert len(set(ids)) == 1


def test_a_second_deliverer_stands_aside(tmp_path: Path, ntfy: FakeNtfy) -> None:
    seen = []

    class Nested(Senders):
        def send(self, target: str, message: object, delivery: DeliveryId) -> None:
            with Outbox(tmp_path) as other:
                seen.append(other.deliver_due(T0, Senders()).busy)
            super().send(target, message, delivery)  # type: ignore[arg-type]

    with Outbox(tmp_path) as box:
        box.enqueue(make_message(), [ntfy.url()])
        assert box.deliver_due(T0, Nested()).sent
    assert seen == [True] and len(ntfy.requests) == 1


def test_a_clock_set_back_does_not_strand_rows(box: Outbox, ntfy: FakeNtfy) -> None:
    ntfy.status = 503
    [rid] = box.enqueue(make_message(), [ntfy.url()])
    box.deliver_due(T0 + 86400, Senders())  # the clock was a day ahead
    ntfy.status = 200
    assert box.deliver_due(T0, Senders()).sent == [rid]


# --- deduplication and rate limits -----------------------------------------------------------


def test_pending_row_is_replaced_by_the_newest(box: Outbox, ntfy: FakeNtfy) -> None:
    url = ntfy.url()
    a = box.enqueue(make_message(title="v1"), [url])
    b = box.enqueue(make_message(title="v2"), [url])
    assert a == b
    [row] = box.pending()
    assert row.revision == 2 and row.title == "v2"
    box.deliver_due(T0, Senders())
    assert [r.json["title"] for r in ntfy.requests] == ["v2"]
    assert ntfy.requests[0].netwatch_id.startswith(f"{a[0]}.2@")


def test_a_message_queued_again_is_not_sent_again(box: Outbox, ntfy: FakeNtfy) -> None:
    # A replay run again over the same capture (after a crash, say) hands the same alerts
    # over once more: they must not reach the carer a second time under a new id, before
    # or after their first delivery, nor push an older state over a newer one.
    url = ntfy.url()
    first, newer = make_message(alert_id="12-1"), make_message(alert_id="12-2", title="v2")
    [row] = box.enqueue(first, [url])
    assert box.enqueue(newer, [url]) == [row]
    again = make_message(alert_id="12-1")
    again.actions[0].url = "http://192.168.1.2:8787/a/OTHERNONCE"  # links are made afresh
    assert box.enqueue(again, [url]) == [row]
    [pending] = box.pending()
    assert pending.revision == 2 and pending.alert_id == "12-2"
    box.deliver_due(T0, Senders())
    assert box.enqueue(first, [url]) == [row] and box.enqueue(newer, [url]) == [row]
    box.deliver_due(T0 + 600, Senders())
    assert [r.netwatch_id.split("@")[0] for r in ntfy.requests] == [f"{row}.2"]
    assert box.pending() == []
    # Another address, or new words, is a new message.
    assert box.enqueue(first, [ntfy.url(topic="other")]) != [row]
    assert len(box.pending()) == 1


def test_one_long_session_gives_a_bounded_number_of_messages(box: Outbox,
                                                             ntfy: FakeNtfy) -> None:
    url = target(ntfy)
    for i in range(100):  # an update every 10 s for 1000 s
        now = T0 + 10 * i
        box.enqueue(make_message(title=f"still active, update {i}", created=now), [url])
        box.deliver_due(now, Senders())
    now = T0 + 990 + box.min_interval_s
    box.deliver_due(now, Senders())
    titles = [r.json["title"] for r in ntfy.requests]
    times = [d["sent_at"] for d in box.deliveries()]
    # The first at once, then at most one per interval; the newest went out last.
    assert titles[0] == "still active, update 0"
    assert titles[-1] == "still active, update 99"
    assert len(titles) <= 2 + 1000 / box.min_interval_s
    assert all(b - a >= box.min_interval_s for a, b in zip(times, times[1:], strict=False))
    assert box.pending() == []


def test_a_more_severe_update_is_never_held(box: Outbox, ntfy: FakeNtfy) -> None:
    url = ntfy.url()
    box.enqueue(make_message("info", title="idle"), [url])
    box.deliver_due(T0, Senders())
    box.enqueue(make_message("info", title="still idle"), [url])
    assert box.deliver_due(T0 + 10, Senders()).held  # within the interval: held
    box.enqueue(make_message("critical", title="AnyDesk session active"), [url])
    report = box.deliver_due(T0 + 20, Senders())  # merged into the held row, sent at once
    assert report.sent and not report.held
    assert [r.json["title"] for r in ntfy.requests] == ["idle", "AnyDesk session active"]
    assert ntfy.requests[-1].json["priority"] == 5
    # Back to the same severity: held again.
    box.enqueue(make_message("critical", title="still active"), [url])
    assert box.deliver_due(T0 + 30, Senders()).held
    assert box.deliver_due(T0 + 20 + box.min_interval_s, Senders()).sent
    assert ntfy.requests[-1].json["title"] == "still active"


def test_per_target_hourly_cap_holds_and_drops_nothing(tmp_path: Path,
                                                       ntfy: FakeNtfy) -> None:
    with Outbox(tmp_path, max_per_hour=12) as box:
        url = ntfy.url()
        other = f"json://127.0.0.1:{ntfy.port}/other"
        for i in range(20):
            box.enqueue(make_message(key=f"{i}:Pieter", created=T0 + i), [url])
        box.enqueue(make_message(key="99:Pieter", created=T0), [other])
        report = box.deliver_due(T0 + 60, Senders())
        assert len(report.sent) == 13  # twelve to the capped target, one to the other
        assert len(report.held) == 8
        held = box.pending()
        assert {r.hold for r in held} == {"hourly"}
        assert {r.next_try for r in held} == {T0 + 60 + 3600}
        assert not box.deliver_due(T0 + 1800, Senders()).sent  # still within the hour
        assert len(box.deliver_due(T0 + 60 + 3600, Senders()).sent) == 8
        assert box.pending() == [] and box.stats()["sent"] == 21
        assert len(ntfy.requests) == 21


def test_update_merged_during_a_send_stays_pending(box: Outbox, ntfy: FakeNtfy) -> None:
    url = ntfy.url()

    class MergesWhileSending(Senders):
        def send(self, target: str, message: object, delivery: DeliveryId) -> None:
            with Outbox(box.state_dir) as pipeline_side:
                pipeline_side.enqueue(make_message(title="newer"), [url])
            super().send(target, message, delivery)  # type: ignore[arg-type]

    [rid] = box.enqueue(make_message(title="first"), [url])
    assert box.deliver_due(T0, MergesWhileSending()).sent == [rid]
    [row] = box.pending()  # the newer content was not marked sent
    assert row.id == rid and row.title == "newer" and row.revision == 2
    box.deliver_due(T0 + box.min_interval_s, Senders())
    assert [r.json["title"] for r in ntfy.requests] == ["first", "newer"]


# --- the worker -------------------------------------------------------------------------------


def worker(state: Path, *extra: str) -> subprocess.Popen[str]:
    """A delivery worker, returned once it says it is up (its signal handlers are in place:
    a signal sent earlier, during Python's start-up, would not be a clean stop)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "netwatch", "alert", "deliver", "--state-dir", str(state),
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "" if it died at once: the test's asserts then say so
    assert "delivering from" in first or proc.poll() is not None, first
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - never leave it running
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err


def test_worker_killed_mid_outage_delivers_everything_once(tmp_path: Path,
                                                           ntfy: FakeNtfy) -> None:
    started = time.monotonic()
    state = tmp_path / "state"
    url = target(ntfy)
    port = ntfy.port
    ntfy.stop()  # the receiver is down
    with Outbox(state) as box:
        ids = [box.enqueue(make_message(key=f"{i}:Pieter", created=time.time()), [url])[0]
               for i in range(5)]
    first = worker(state, "--interval", "0.2")
    procs = [first]
    try:
        with Outbox(state) as box:
            assert wait_for(lambda: min(r.attempts for r in box.pending()) >= 2, 10)
        first.kill()  # SIGKILL: no chance to clean up
        code, out1 = stop(first)
        assert code == -signal.SIGKILL
        with Outbox(state) as box:
            waits = [(r.attempts, round(r.next_try - time.time(), 2)) for r in box.pending()]
        print(f"\nkilled after {time.monotonic() - started:.1f} s; (attempts, next try in s) "
              f"per row: {waits}")
        ntfy.port = port
        ntfy.start()
        second = worker(state, "--interval", "0.2")
        procs.append(second)

        def all_arrived() -> bool:
            return {row_of(r.netwatch_id) for r in ntfy.accepted} >= set(ids)

        assert wait_for(all_arrived, 15)
        code, out2 = stop(second)
        assert code == 0  # SIGTERM: a clean exit
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    # Every message once after the receiver drops repeats by X-Netwatch-Id.
    by_id = Counter(r.netwatch_id for r in ntfy.accepted)
    print(f"arrivals {len(ntfy.accepted)}, distinct ids {len(by_id)}, all delivered "
          f"{time.monotonic() - started:.1f} s after the start")
    assert sorted(row_of(i) for i in by_id) == ids
    with Outbox(state) as box:
        assert box.pending() == [] and box.stats()["sent"] == 5
        errors = [r.last_error for r in box.rows()]
        recorded = len(box.deliveries())
    assert out2.count("delivered to") == 5
    no_secrets(out1, out2, *errors)
    assert recorded == 5
    assert time.monotonic() - started < 20


def test_worker_once_and_signals(tmp_path: Path, ntfy: FakeNtfy) -> None:
    state = tmp_path / "state"
    with Outbox(state) as box:
        box.enqueue(make_message(), [target(ntfy)])
    result = CliRunner().invoke(main, ["alert", "deliver", "--state-dir", str(state), "--once"])
    assert result.exit_code == 0, result.output
    assert len(ntfy.requests) == 1
    proc = worker(state, "--interval", "5")
    try:
        time.sleep(0.5)
        code, out = stop(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0, out


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_stay_out_of_errors_output_and_logs(tmp_path: Path, ntfy: FakeNtfy,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    ntfy.auth = "Bearer the-right-one"  # refuses, and echoes the credentials it got
    urls = [target(ntfy),
            f"json://alice:{PASSWORD}@127.0.0.1:{ntfy.port}/{TOPIC}?+Authorization={TOKEN}",
            f"ntfys://alice:{PASSWORD}@127.0.0.1:{ntfy.port}/{TOPIC}",  # TLS to plain HTTP
            f"mailtos://alice:{PASSWORD}@127.0.0.1:{free_port()}/{TOPIC}@example.org",
            f"form://alice:{PASSWORD}@127.0.0.1:{ntfy.port}/{TOPIC}?token={TOKEN}"]
    with Outbox(state, max_attempts=2) as box:
        box.enqueue(make_message(), urls)
        box.deliver_due(T0, Senders(timeout=2))
        box.deliver_due(T0 + 1000, Senders(timeout=2))
        rows = box.rows()
        assert {r.status for r in rows} == {"failed"}
        errors = [r.last_error or "" for r in rows]
        assert all(errors)
        stats = str(box.stats())
    result = CliRunner().invoke(main, ["alert", "deliver", "--state-dir", str(state), "--once"])
    hh = tmp_path / "h.yaml"
    hh.write_text("people:\n  Maria: nl\ncarers:\n  - name: Pieter\n    language: nl\n"
                  "    notify:\n" + "".join(f"      - \"{u}\"\n" for u in urls))
    test = CliRunner().invoke(main, ["alert", "test", "--household", str(hh),
                                     "--state-dir", str(state)])
    assert test.exit_code == 1 and test.output.count("FAILED") == 5
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "given up" in logs
    no_secrets(*errors, stats, result.output, test.output, logs,
               *[repr(r) for r in rows])
