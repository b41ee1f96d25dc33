"""Every event netwatch writes matches the JSON Schema shipped in the package."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from conftest import CORPUS, RECORDED, SYNTHETIC, needs_corpus, read_tsv, replay

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "netwatch" / "schema" /
                     "eve.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _check(events: list[dict]) -> None:
    assert events, "no events at all (a stats event is always written)"
    for e in events:
        errors = sorted(VALIDATOR.iter_errors(e), key=str)
        assert errors == [], (e, [er.message for er in errors])


def test_schema_is_itself_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_schema_rejects_a_bad_event() -> None:
    bad = {"timestamp": "yesterday", "event_type": "remote_access"}
    assert list(VALIDATOR.iter_errors(bad))


def test_events_of_inrepo_captures_match_schema() -> None:
    paths = sorted(SYNTHETIC.glob("*.pcap*")) + sorted(RECORDED.glob("*.pcap"))
    _r, events = replay(*paths)
    _check(events)


@needs_corpus
def test_events_of_corpus_match_schema() -> None:
    rows = [r for r in read_tsv(CORPUS / "MANIFEST.tsv") if r["kind"] == "positive"]
    _r, events = replay(*(CORPUS / r["file"] for r in rows))
    assert any(e["event_type"] == "remote_access" for e in events)
    _check(events)


def test_log_lines_are_compact_json(tmp_path: Path) -> None:
    log = tmp_path / "eve.json"
    replay(SYNTHETIC / "teamviewer-tcp.pcap", log_path=log)
    lines = log.read_text().splitlines()
    assert lines and all(ln.startswith("{") and ": " not in ln[:40] for ln in lines)
    assert json.loads(lines[-1])["event_type"] == "stats"
