"""The project's own captures (synthetic and recorded), checked against their labels.

These run on a fresh clone without ../shared. Labels live beside the captures in
MANIFEST.tsv / FLOWS.tsv, in the shared corpus's format.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from conftest import RECORDED, SYNTHETIC, read_tsv, replay, verdicts


def _cases() -> list[tuple[Path, str]]:
    out = []
    for folder in (SYNTHETIC, RECORDED):
        for row in read_tsv(folder / "MANIFEST.tsv"):
            out.append((folder / row["file"], row["kind"]))
    return out


def _labels(capture: Path) -> list[dict[str, str]]:
    return [r for r in read_tsv(capture.parent / "FLOWS.tsv") if r["pcap"] == capture.name]


def _ends(ev: dict) -> set[tuple[str, int]]:
    return {(str(ipaddress.ip_address(ev["src_ip"])), ev["src_port"]),
            (str(ipaddress.ip_address(ev["dest_ip"])), ev["dest_port"])}


def _matches(row: dict[str, str], ev: dict) -> bool:
    if ev["proto"].lower() != row["proto"]:
        return False
    srv = (str(ipaddress.ip_address(row["server_ip"])), int(row["server_port"]))
    ends = _ends(ev)
    if srv not in ends:
        return False
    (other,) = ends - {srv} or {srv}
    return other[0] == str(ipaddress.ip_address(row["client_ip"])) and (
        row["client_port"] == "*" or other[1] == int(row["client_port"]))


@pytest.mark.parametrize("capture,kind", _cases(), ids=lambda v: getattr(v, "name", v))
def test_capture_matches_its_labels(capture: Path, kind: str) -> None:
    _result, events = replay(capture)
    final = list(verdicts(events).values())
    if kind == "negative":
        assert [e for e in final if e["remote_access"]["role"] != "scan"] == []
        return
    rows = _labels(capture)
    assert rows, f"{capture.name} is positive but has no labels"
    for row in rows:
        if row["tool"] == "none":
            hits = [e for e in final if _matches(row, e) and e["remote_access"]["role"] != "scan"]
            assert hits == [], row
            continue
        hits = [e for e in final if _matches(row, e)]
        assert hits, f"missed: {row}"
        ra = hits[-1]["remote_access"]
        assert ra["tool"] == row["tool"], row
        assert ra["role"] in row["roles"].split("|"), (row, ra)
    labelled = [e for e in final if any(_matches(r, e) for r in rows)]
    assert len(labelled) == len(final), "detections on flows that carry no label"
