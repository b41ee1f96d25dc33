"""Shared test helpers: where the captures are, and replaying one in-process."""

from __future__ import annotations

import json
import os
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
