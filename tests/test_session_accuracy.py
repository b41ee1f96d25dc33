"""Sessions on captures netwatch had not seen: a snap length, an idle client, a return.

The captures are the project's own (tests/pcaps/synthetic/generate.py, SYNTHETIC); each is
replayed with the example household (Maria's laptop; Pieter helps on Sunday mornings), as a
family would.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from netwatch.cli import main
from netwatch.sources.capture import ReadStats, open_capture

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC = ROOT / "tests" / "pcaps" / "synthetic"
HOUSEHOLD = ROOT / "deploy" / "household.example.yaml"
SNAPLEN = SYNTHETIC / "session-snaplen-anydesk.pcap"
IDLE_TV = SYNTHETIC / "session-idle-teamviewer.pcap"
RETURN = SYNTHETIC / "session-return-days.pcap"


def replay(tmp_path: Path, capture: Path) -> list[dict[str, Any]]:
    log = tmp_path / "eve.json"
    res = CliRunner().invoke(main, ["replay", str(capture), "--household", str(HOUSEHOLD),
                                    "--eve-log", str(log)])
    assert res.exit_code == 0, res.output
    return [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e[kind] for e in events if e["event_type"] == kind]


def test_a_capture_cut_by_a_snap_length_counts_the_wire_bytes(tmp_path: Path) -> None:
    events = replay(tmp_path, SNAPLEN)
    stats = of_type(events, "stats")[-1]
    assert stats["bytes"] > 4 * stats["captured_bytes"]
    states = [s["state"] for s in of_type(events, "session")]
    assert "active" in states
    assert {a["level"] for a in of_type(events, "alert")} == {"critical"}


def test_pcapng_records_give_their_original_length(tmp_path: Path) -> None:
    # The snap-length capture rewritten as pcapng: one interface, Enhanced Packet Blocks.
    frames = list(open_capture(str(SNAPLEN), ReadStats()))
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 160))
    for ts, _lt, frame, wire in frames:
        us = round(ts * 1e6)
        out += block(6, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(frame), wire)
                     + frame)
    ng = tmp_path / "snaplen.pcapng"
    ng.write_bytes(out)
    back = list(open_capture(str(ng), ReadStats()))
    assert [w for *_x, w in back] == [w for *_x, w in frames]
    assert sum(w for *_x, w in back) > sum(len(f) for _t, _l, f, _w in back)


def test_an_idle_client_on_a_relay_name_stays_idle_for_hours(tmp_path: Path) -> None:
    events = replay(tmp_path, IDLE_TV)
    detections = of_type(events, "remote_access")
    assert any(d["tool"] == "teamviewer" and d["role"] == "relay" for d in detections)
    sessions = of_type(events, "session")
    assert [s["state"] for s in sessions] == ["idle", "ended"]
    assert sessions[-1]["duration_s"] > 7000
    assert of_type(events, "alert") == []


def test_a_return_two_days_later_says_two_days(tmp_path: Path) -> None:
    events = replay(tmp_path, RETURN)
    ended = [e for e in events if e["event_type"] == "session"
             and e["session"]["state"] == "ended"]
    first_end = ended[0]["timestamp"]
    assert first_end.startswith("2024-03-04T14:02")  # the first visit's last packet
    second = [s for s in of_type(events, "session") if s["id"] == 2]
    gap = second[0]["returning"]["ago_s"]
    assert 2 * 86400 - 3600 < gap < 2 * 86400 + 3600
    reasons = " ".join(r for a in of_type(events, "alert") if a["session_id"] == 2
                       for r in a["reasons"])
    assert "AnyDesk was used on this device 2 days ago" in reasons
