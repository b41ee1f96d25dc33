"""Every curated signature has example captures and netwatch reports them as labelled.

The examples live in tests/pcaps/synthetic/tools (written by its generate_tools.py, labels in
MANIFEST.tsv / FLOWS.tsv); ``netwatch.sigtest`` replays them. The checker itself is tested
on small handmade event lists, so that a miss, a wrong tool, role or variant, or a detection
on a negative cannot go unnoticed.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import SYNTHETIC, read_tsv, signatures
from netwatch import sigtest
from netwatch.cli import main
from netwatch.recognisers import load_all
from netwatch.signatures import DEFAULT_DIR, load_dir

TOOLS = SYNTHETIC / "tools"
DOCUMENTATION_NETS = [ipaddress.ip_network(n) for n in
                      ("192.168.1.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def _curated() -> list[str]:
    sigs = load_dir(DEFAULT_DIR, load_all())
    return sorted(t for t, s in sigs.by_tool.items() if s.curation != "generated")


@pytest.fixture(scope="module")
def results() -> dict[str, sigtest.SignatureResult]:
    return {r.tool: r for r in sigtest.run(signatures(), str(TOOLS))}


@pytest.mark.parametrize("tool", _curated())
def test_signature_examples_pass(tool: str, results: dict[str, sigtest.SignatureResult]) -> None:
    r = results[tool]
    assert r.positives[1] >= 1, f"{tool}: no positive example"
    assert r.negatives[1] >= 1, f"{tool}: no negative example"
    assert r.passed, "\n".join(r.failures)


def test_examples_are_synthetic_and_use_documentation_addresses() -> None:
    for row in read_tsv(TOOLS / "MANIFEST.tsv"):
        assert row["description"].startswith("SYNTHETIC:"), row["file"]
        assert (TOOLS / row["file"]).is_file(), row["file"]
    for row in read_tsv(TOOLS / "FLOWS.tsv"):
        for ip in (row["client_ip"], row["server_ip"]):
            assert any(ipaddress.ip_address(ip) in n for n in DOCUMENTATION_NETS), row


def test_generator_output_is_byte_identical(tmp_path: Path) -> None:
    pytest.importorskip("scapy")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([sys.executable, str(TOOLS / "generate_tools.py"), "--out", str(tmp_path),
                    "--quiet"], check=True, timeout=300, env=env)
    shipped = sorted(p.name for p in TOOLS.iterdir() if p.suffix in (".pcap", ".tsv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (TOOLS / name).read_bytes(), name


# ---------------------------------------------------------------------- the checker itself

HOME, SERVER = ("192.168.1.23", 50000), ("198.51.100.7", 443)


def event(tool: str, role: str, src: tuple[str, int] = HOME, dst: tuple[str, int] = SERVER,
          proto: str = "TCP", variant: str = "") -> dict[str, Any]:
    ra: dict[str, Any] = {"tool": tool, "role": role, "confidence": "high", "evidence": []}
    if variant:
        ra["variant"] = variant
    return {"event_type": "remote_access", "proto": proto, "src_ip": src[0],
            "src_port": src[1], "dest_ip": dst[0], "dest_port": dst[1], "remote_access": ra}


def label(tool: str = "anydesk", roles: tuple[str, ...] = ("relay",), client_port: str = "50000",
          proto: str = "tcp", variant: str = "") -> sigtest.Label:
    return sigtest.Label("x.pcap", proto, HOME[0], client_port, SERVER[0], SERVER[1], tool,
                         roles, "", variant, 7)


def test_a_fitting_verdict_passes() -> None:
    assert sigtest.check_positive([event("anydesk", "scan"), event("anydesk", "relay")],
                                  [label()]) == []


def test_a_miss_fails() -> None:
    (problem,) = sigtest.check_positive([], [label()])
    assert problem.startswith("FLOWS.tsv:7: missed tcp 192.168.1.23:50000 -> 198.51.100.7:443")


def test_a_wrong_tool_fails() -> None:
    (problem,) = sigtest.check_positive([event("teamviewer", "relay")], [label()])
    assert "wrong tool: expected anydesk/relay, got teamviewer/relay" in problem


def test_a_wrong_role_fails() -> None:
    (problem,) = sigtest.check_positive([event("anydesk", "rendezvous")], [label()])
    assert "wrong role" in problem


def test_the_last_event_is_the_verdict() -> None:
    problems = sigtest.check_positive([event("anydesk", "relay"), event("anydesk", "unknown")],
                                      [label()])
    assert len(problems) == 1 and "wrong role" in problems[0]


def test_a_wrong_or_missing_variant_fails() -> None:
    row = label("vnc", ("session",), variant="tightvnc")
    assert sigtest.check_positive([event("vnc", "session", variant="tightvnc")], [row]) == []
    for ev in (event("vnc", "session", variant="ultravnc"), event("vnc", "session")):
        (problem,) = sigtest.check_positive([ev], [row])
        assert "wrong variant" in problem


def test_endpoints_are_unordered_and_star_matches_any_client_port() -> None:
    swapped = event("anydesk", "relay", src=SERVER, dst=("192.168.1.23", 61234))
    assert sigtest.check_positive([swapped], [label(client_port="*")]) == []
    missed, unlabelled = sigtest.check_positive([swapped], [label()])
    assert "missed" in missed and unlabelled.startswith("unlabelled detection")


def test_another_protocol_is_another_flow() -> None:
    missed, unlabelled = sigtest.check_positive([event("anydesk", "relay", proto="UDP")],
                                                [label()])
    assert "missed" in missed
    assert unlabelled.startswith("unlabelled detection: anydesk/relay on UDP")


def test_a_flow_labelled_none_must_not_be_reported() -> None:
    row = label("none", ())
    assert sigtest.check_positive([event("anydesk", "scan")], [row]) == []
    (problem,) = sigtest.check_positive([event("anydesk", "unknown")], [row])
    assert "must not be reported" in problem


def test_an_unlabelled_detection_in_a_positive_fails() -> None:
    other = event("anydesk", "dns", src=HOME, dst=("192.168.1.1", 53), proto="UDP")
    problems = sigtest.check_positive([event("anydesk", "relay"), other], [label()])
    assert problems == ["unlabelled detection: anydesk/dns on UDP 192.168.1.23:50000 -> "
                        "192.168.1.1:53"]


def test_a_negative_allows_scans_only() -> None:
    assert sigtest.check_negative([event("rdp", "scan")]) == []
    (problem,) = sigtest.check_negative([event("rdp", "scan"), event("rdp", "session")])
    assert problem.startswith("reported on a negative: rdp/session")


def test_a_curated_signature_without_examples_fails(tmp_path: Path) -> None:
    (tmp_path / "MANIFEST.tsv").write_text("file\tkind\ttools\tsignature\tdescription\n")
    (tmp_path / "FLOWS.tsv").write_text(
        "pcap\tproto\tclient_ip\tclient_port\tserver_ip\tserver_port\ttool\troles\tnote\n")
    (res,) = sigtest.run(signatures(), str(tmp_path), ["rdp"])
    assert not res.passed
    assert res.failures[0].startswith("no examples: no positive and no negative example")


def test_a_bad_manifest_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "MANIFEST.tsv").write_text("file\tkind\ttools\tsignature\tdescription\n"
                                           "a.pcap\tmaybe\t-\trdp\tSYNTHETIC: x\n")
    (tmp_path / "FLOWS.tsv").write_text("pcap\tproto\n")
    with pytest.raises(sigtest.ExamplesError, match=r"MANIFEST.tsv:2: kind must be"):
        sigtest.read_examples(str(tmp_path))


def test_cli_table_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["signatures", "test", "--examples", str(TOOLS), "rdp", "x11"])
    assert res.output.splitlines()[0].split() == ["tool", "reported", "as", "evidence",
                                                  "positives", "negatives", "result"]
    assert res.exit_code == (0 if "2 ok" in res.output else 1)
    res = runner.invoke(main, ["signatures", "test", "--examples", str(tmp_path / "none")])
    assert res.exit_code == 2
    res = runner.invoke(main, ["signatures", "test", "--examples", str(TOOLS), "no-such-tool"])
    assert res.exit_code == 2
