"""Shared test helpers: where the captures are, and replaying one in-process."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netwatch.eventlog import EventLog
from netwatch.pipeline import Pipeline, Result
from netwatch.recognisers import load_all
from netwatch.signatures import SignatureSet, load_dir
from netwatch.sources.capture import ReadStats

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "tests" / "pcaps"
SYNTHETIC = PCAPS / "synthetic"
RECORDED = PCAPS / "recorded"
SHARED = Path(os.environ.get("NETWATCH_SHARED", ROOT.parent / "shared")).resolve()
CORPUS = SHARED / "pcaps"

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.tsv").is_file(),
    reason=f"the shared capture corpus is not at {CORPUS} (clone with ../shared beside it, "
           "or set NETWATCH_SHARED)")

_SIGS: SignatureSet | None = None


def signatures() -> SignatureSet:
    global _SIGS
    if _SIGS is None:
        _SIGS = load_dir(known_recognisers=load_all())
    return _SIGS


def replay(*paths: Path | str, log_path: Path | None = None) -> tuple[Result, list[dict[str, Any]]]:
    """Run the real pipeline over captures; return the result and the events written."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = log_path or Path(tmp) / "eve.json"
        log = EventLog(str(target))
        pipe = Pipeline(signatures(), log)
        for p in paths:
            pipe.feed_file(str(p), ReadStats())
        result = pipe.finish()
        log.write(pipe.stats_event())
        log.close()
        events = [json.loads(ln) for ln in target.read_text().splitlines() if ln.strip()]
    return result, events


def remote_access(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == "remote_access"]


def verdicts(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The last remote_access event of each flow (the flow's verdict)."""
    out: dict[int, dict[str, Any]] = {}
    for e in remote_access(events):
        out[e["flow_id"]] = e
    return out


def read_tsv(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


@contextlib.contextmanager
def control_server(state: Path, **bounds: Any) -> Iterator[Any]:
    """A dry-run control endpoint on 127.0.0.1 (a free port) for the test, serving from a
    thread; shut down at the end, or by a watchdog after 30 s should the test hang."""
    from netwatch.actions import load_or_create_secret
    from netwatch.control import ControlService, ControlStore, DryRunBlocker, make_server

    service = ControlService(load_or_create_secret(state), ControlStore(state),
                             DryRunBlocker())
    srv = make_server(service, "127.0.0.1", 0, **bounds)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    watchdog = threading.Timer(30, srv.shutdown)
    watchdog.start()
    try:
        yield srv
    finally:
        watchdog.cancel()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def ntfy() -> Iterator[Any]:
    """An ntfy-compatible server on loopback for the test (test_senders.FakeNtfy), stopped
    at its end."""
    from test_senders import FakeNtfy

    fake = FakeNtfy().start()
    try:
        yield fake
    finally:
        fake.stop()


def household_yaml(device: str, ip: str, *, country: str | None = None,
                   extra: str = "") -> str:
    """A one-person household file for the daemon's tests: Maria's ``device`` at ``ip`` and
    Pieter as her carer, whose ntfy target (127.0.0.1:9, the discard port) nobody answers.
    ``extra`` is added under the device (its policy) and after it (help windows)."""
    who = "{language: en" + (f", country: {country}" if country else "") + "}"
    return (f"timezone: UTC\npeople:\n  Maria: {who}\ncarers:\n  - name: Pieter\n"
            f"    language: en\n    notify: [ntfy://127.0.0.1:9/maria]\n    for: [Maria]\n"
            f"devices:\n  - name: {device}\n    person: Maria\n    ips: [{ip}]\n{extra}")
