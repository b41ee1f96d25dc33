"""The shared labelled corpus, scored by its own scorer against `netwatch replay`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import CORPUS, SHARED, needs_corpus

ISSUE_TOOLS = ("rdp", "vnc", "teamviewer", "anydesk")


@pytest.fixture(scope="module")
def score(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("score") / "score.json"
    cmd = [sys.executable, str(SHARED / "scoring" / "score.py"), str(CORPUS), "--jobs", "2",
           "--timeout", "120", "--json", str(out),
           "--cmd", f"{sys.executable} -m netwatch replay {{pcap}} --eve-log {{log}}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout.splitlines()[-1])
    return json.loads(out.read_text())


@needs_corpus
@pytest.mark.parametrize("tool", ISSUE_TOOLS)
def test_every_labelled_connection_is_found(score: dict, tool: str) -> None:
    per = score["per_tool"][tool]
    missed = [f for f in score["flows"] if f["tool"] == tool and not f["found"]]
    assert per["labelled"] > 0
    assert missed == []
    assert per["found"] == per["labelled"]


@needs_corpus
def test_no_false_positives_on_household_traffic(score: dict) -> None:
    # Includes scans reported as sessions and DNS events in negative captures.
    assert score["false_positives"] == []


@needs_corpus
def test_no_wrong_tool_and_roles_agree(score: dict) -> None:
    s = score["summary"]
    assert s["wrong_tool"] == 0
    bad_roles = [f for f in score["flows"] if f["found"] and not f["role_ok"]]
    assert bad_roles == []


@needs_corpus
def test_no_unlabelled_detections_and_no_errors(score: dict) -> None:
    assert score["unlabelled"] == []
    assert score["errors"] == []
    assert score["summary"]["direction_mismatches"] == 0
