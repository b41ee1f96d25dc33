"""Golden event logs: the whole EVE output of a replay, compared line by line with a baseline.

Like Zeek's btest baselines: for each chosen capture, ``conftest.replay(capture)`` is run and
its events (the final ``stats`` event included) are compared with
``tests/golden/<capture file name>.eve.json``, one JSON object per line with sorted keys and
``pcap_filename`` reduced to the file's base name so the files do not depend on where the
checkout lives. On a difference the test fails with a unified diff (golden -> now).

Captures:

* every positive capture of the shared corpus (../shared/pcaps) whose MANIFEST ``tools``
  include rdp, vnc, teamviewer or anydesk, plus three hard negatives (ndpi_tls_port_80.pcapng,
  ndpi_fix.pcap, zeek_chromium-dpd-custom-port-4433.pcap); these are skipped when the corpus
  is not checked out beside this one;
* every capture in tests/pcaps/synthetic/*.pcap* and tests/pcaps/recorded/*.pcap, which
  always run.

Updating the baselines: when the output changes on purpose, run

    NETWATCH_UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_golden.py

which rewrites every selected golden file instead of comparing, then review the change with
``git diff tests/golden`` before committing it: the golden files are only worth what that
review is worth.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS, RECORDED, SYNTHETIC, needs_corpus, read_tsv, replay

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("NETWATCH_UPDATE_GOLDEN") == "1"

TOOLS = {"rdp", "vnc", "teamviewer", "anydesk", "citrix", "nomachine", "radmin", "xdmcp", "x11"}
NEGATIVES = (
    "ndpi_tls_port_80.pcapng",  # TLS on TCP/80, as AnyDesk relays use
    "ndpi_fix.pcap",  # FIX on TCP/4000, NoMachine's port, starting mid-connection
    "zeek_chromium-dpd-custom-port-4433.pcap",  # QUIC on an unusual UDP port
)


def corpus_cases() -> list[Any]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return [pytest.param(CORPUS / "MANIFEST.tsv", id="corpus-missing", marks=needs_corpus)]
    rows = read_tsv(manifest)
    chosen = [r["file"] for r in rows
              if r["kind"] == "positive" and TOOLS & set(r["tools"].split(","))]
    chosen += NEGATIVES
    return [pytest.param(CORPUS / name, id=name, marks=needs_corpus) for name in chosen]


def in_repo_cases() -> list[Any]:
    paths = sorted(SYNTHETIC.glob("*.pcap*")) + sorted(RECORDED.glob("*.pcap"))
    return [pytest.param(p, id=f"{p.parent.name}/{p.name}") for p in paths]


CASES = corpus_cases() + in_repo_cases()


def golden_path(capture: Path) -> Path:
    return GOLDEN / f"{capture.name}.eve.json"


def normalised(events: list[dict[str, Any]]) -> list[str]:
    lines = []
    for ev in events:
        if "pcap_filename" in ev:
            ev = {**ev, "pcap_filename": os.path.basename(ev["pcap_filename"])}
        lines.append(json.dumps(ev, sort_keys=True, ensure_ascii=False))
    return lines


def test_golden_files_have_distinct_names() -> None:
    # One folder holds the baselines of all three capture sets: a name used twice would make
    # two captures share (and overwrite) one golden file.
    names = [golden_path(p.values[0]).name for p in CASES if p.id != "corpus-missing"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("capture", CASES)
def test_replay_matches_golden_event_log(capture: Path) -> None:
    _result, events = replay(capture)
    actual = normalised(events)
    golden = golden_path(capture)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text("".join(line + "\n" for line in actual), encoding="utf-8")
        return
    if not golden.is_file():
        pytest.fail(f"no golden file {golden}: create it with NETWATCH_UPDATE_GOLDEN=1 and "
                    "review it", pytrace=False)
    expected = golden.read_text(encoding="utf-8").splitlines()
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(
            expected, actual, fromfile=str(golden.relative_to(GOLDEN.parent.parent)),
            tofile=f"replay of {capture.name}", lineterm=""))
        pytest.fail(f"event log of {capture.name} differs from its golden file "
                    f"(NETWATCH_UPDATE_GOLDEN=1 rewrites it):\n{diff}", pytrace=False)
