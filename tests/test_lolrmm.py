"""LOLRMM import: CSV parsing, name normalisation, shared infrastructure left out, curated
signatures winning, deterministic files that load, and the shipped set kept up to date."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from netwatch.cli import main
from netwatch.lolrmm import (
    GENERATED_MARK,
    SHARED_ZONES,
    LolrmmError,
    Tool,
    build_tools,
    classify,
    import_csv,
    load_curated,
    name_role,
    normalise,
    read_csv,
    render,
    slug,
    tool_words,
)
from netwatch.recognisers import load_all
from netwatch.signatures import DEFAULT_DIR, load_dir, load_file, pattern_regex

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "lolrmm"
REAL_CSV = REAL_DIR / "rmm_domains.csv"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# A small LOLRMM-shaped file: one tool with every kind of entry, two names that slug to the
# same id, a tool a curated file covers by name, one whose names a curated rule covers.
CSV_TEXT = """URI,RMM_Tool
https://Portal.DemoDesk.example:8443/login?x=1,DemoDesk
*.demodesk.example,DemoDesk
relay-[a-f0-9]{8}.net.demodesk.example:443,DemoDesk
10.0.0.1,DemoDesk
user_managed,DemoDesk
*,DemoDesk
<tenant>.demodesk.example,DemoDesk
*.amazonaws.com,DemoDesk
demodesk-agent.servicebus.windows.net,DemoDesk
storage.blob.core.windows.net,DemoDesk
*.DemoDesk.example.,DemoDesk
*.com,DemoDesk
demo.tool.example,Demo Tool
demo-tool.example,Demo-Tool
curated.example,Curated Thing
*.sharedvendor.example,Other Tool
other-tool.example,Other Tool
*.onlycurated.example,Gone Tool
quoted.example,"I'm ""Quoted"" Tool"
"""

CURATED = '''id = "ct"
name = "Curated Thing"
version = 1
recognisers = []

[sources]
1 = "https://example.org"

[[names]]
pattern = "*.sharedvendor.example"
role = "relay"
source = 1

[[names]]
pattern = "*.onlycurated.example"
role = "web"
source = 1
'''


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """(csv path, signatures dir with one curated file) in tmp_path."""
    src = tmp_path / "src"
    src.mkdir()
    csv_path = src / "rmm_domains.csv"
    csv_path.write_text(CSV_TEXT)
    (src / "README.md").write_text(f"copied at repository commit `{COMMIT}` (test)\n")
    (src / "LICENSE").write_text("Apache License\nVersion 2.0 (test copy)\n")
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    (sigs / "ct.toml").write_text(CURATED)
    return csv_path, sigs


def test_read_csv_groups_by_tool_in_file_order(setup: tuple[Path, Path]) -> None:
    entries = read_csv(setup[0])
    assert list(entries)[:3] == ["DemoDesk", "Demo Tool", "Demo-Tool"]
    assert entries["DemoDesk"][1] == "*.demodesk.example"
    assert len(entries["DemoDesk"]) == 12
    assert entries["I'm \"Quoted\" Tool"] == ["quoted.example"]


@pytest.mark.parametrize(("text", "where", "what"), [
    ("Domain,Tool\na.example,A\n", ":1:", "expected the header URI,RMM_Tool"),
    ("", ":1:", "expected the header"),
    ("URI,RMM_Tool\na.example,A\nb.example\n", ":3:", "expected 2 fields"),
    ("URI,RMM_Tool\na.example,A\n\nb.example,\n", ":4:", "RMM_Tool is empty"),
])
def test_read_csv_malformed_names_file_and_line(tmp_path: Path, text: str, where: str,
                                                what: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(LolrmmError) as ei:
        read_csv(p)
    assert str(ei.value).startswith(f"{p}{where} ")
    assert what in str(ei.value)


def test_read_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LolrmmError, match="cannot read"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(("uri", "pattern"), [
    ("https://Portal.Example.com:8443/login?x=1", "portal.example.com"),
    ("example.com.", "example.com"),
    ("*.Example.COM", "*.example.com"),
    ("agents*-cloud.example.com", "agents*-cloud.example.com"),
    ("plus*.site.net.au", "plus*.site.net.au"),
    ("upload_data.example.com", "upload_data.example.com"),
    ("relay-[a-f0-9]{8}.net.example.com:443", r"re:relay-[a-f0-9]{8}\.net\.example\.com"),
    ("*.node[0-9]+.example.com", r"re:.*\.node[0-9]+\.example\.com"),
])
def test_normalise_keeps_names(uri: str, pattern: str) -> None:
    assert normalise(uri) == (pattern, "")


@pytest.mark.parametrize(("uri", "reason"), [
    ("136.243.104.235", "ip-address"),
    ("http://10.0.0.1:8080/x", "ip-address"),
    ("2001:db8::1", "ip-address"),
    ("[2001:db8::1]:443", "ip-address"),
    ("user_managed", "user-managed"),
    ("<your-tenant>.example.com", "placeholder"),
    ("{instance}.example.com", "placeholder"),
    ("", "empty"),
    ("   ", "empty"),
    ("*", "bare-wildcard"),
    ("*.", "bare-wildcard"),
    ("example .com", "has-spaces"),
    ("*.-dms.example.cn", "not-a-name"),
    ("localhost", "not-a-name"),
    ("relay-(a|b).example.com", "unsupported-regex"),
])
def test_normalise_skips_what_is_not_a_name(uri: str, reason: str) -> None:
    assert normalise(uri) == ("", reason)


def test_regex_entry_matches_like_lolrmm_means() -> None:
    pattern, _ = normalise("relay-[a-f0-9]{8}.net.example.com")
    rx = pattern_regex(pattern)
    assert rx.match("relay-0123abcd.net.example.com")
    assert not rx.match("relay-0123abcd.netxexample.com")  # the dots are literal
    assert not rx.match("relay-xyz.net.example.com")


@pytest.mark.parametrize(("pattern", "name", "reason"), [
    ("*.amazonaws.com", "Atera", "shared-infrastructure"),
    ("*amazonaws.com", "Atera", "public-suffix"),  # its registered label is not fixed
    ("github.com", "GLPI Agent", "shared-infrastructure"),
    ("raw.githubusercontent.com", "Nezha", "shared-infrastructure"),
    ("packagesstore.blob.core.windows.net", "Atera", "shared-infrastructure"),
    ("pdqinstallers.*.r2.cloudflarestorage.com", "PDQ Connect", "shared-infrastructure"),
    ("*.support.services.microsoft.com", "Quick Assist", "shared-infrastructure"),
    ("atera.pubnubapi.com", "Atera", ""),
    ("atera-agent-heartbeat.servicebus.windows.net", "Atera", ""),
    ("gorelo-rmm.azurewebsites.net", "Gorelo RMM", ""),
    ("remotedesktop.google.com", "Chrome Remote Desktop", ""),
    ("*.com", "Atera", "public-suffix"),
    ("*.co.uk", "Atera", "public-suffix"),
    ("*.atera.com", "Atera", ""),
    ("evilamazonaws.com", "Atera", ""),  # not under the zone, only alike
])
def test_shared_infrastructure_and_public_suffixes(pattern: str, name: str,
                                                   reason: str) -> None:
    assert classify(pattern, tool_words(slug(name), [name])) == reason


@pytest.mark.parametrize(("name", "tool_id"), [
    ("BeyondTrust (Bomgar)", "beyondtrust-bomgar"),
    ("I'm InTouch", "i-m-intouch"),
    ("  Level.io ", "level-io"),
    ("Zoho Assíst", "zoho-assist"),
])
def test_slug(name: str, tool_id: str) -> None:
    assert slug(name) == tool_id


def test_import_keeps_normalises_and_skips(setup: tuple[Path, Path]) -> None:
    csv_path, sigs = setup
    report = import_csv(csv_path, sigs / "lolrmm", load_curated(str(sigs)))
    out = sigs / "lolrmm"
    assert sorted(p.name for p in out.glob("*.toml")) == [
        "demo-tool.toml", "demodesk.toml", "i-m-quoted-tool.toml", "other-tool.toml"]
    demo = load_file(str(out / "demodesk.toml"))
    assert [n.pattern for n in demo.names] == [
        "portal.demodesk.example", "*.demodesk.example",
        r"re:relay-[a-f0-9]{8}\.net\.demodesk\.example",
        "demodesk-agent.servicebus.windows.net"]
    reasons = {s.uri: s.reason for s in report.skipped if s.tool == "DemoDesk"}
    assert reasons == {"10.0.0.1": "ip-address", "user_managed": "user-managed",
                       "*": "bare-wildcard", "<tenant>.demodesk.example": "placeholder",
                       "*.amazonaws.com": "shared-infrastructure",
                       "storage.blob.core.windows.net": "shared-infrastructure",
                       "*.DemoDesk.example.": "duplicate", "*.com": "public-suffix"}
    # Two LOLRMM names with the same slug make one signature, the second as an alias.
    merged = load_file(str(out / "demo-tool.toml"))
    assert (merged.name, merged.aliases) == ("Demo Tool", ("Demo-Tool",))
    assert [n.pattern for n in merged.names] == ["demo.tool.example", "demo-tool.example"]
    # Every row is accounted for, kept or skipped with a reason.
    assert report.patterns_kept + len(report.skipped) == report.rows == 19
    assert report.patterns_kept == 8


def test_curated_signatures_win(setup: tuple[Path, Path]) -> None:
    csv_path, sigs = setup
    report = import_csv(csv_path, sigs / "lolrmm", load_curated(str(sigs)))
    # Same name as a curated signature: the whole tool is left out.
    assert report.tools_skipped_as("curated") == ["Curated Thing"]
    assert ("curated.example", "curated-tool") in {(s.uri, s.reason) for s in report.skipped}
    # A name a curated rule already matches is dropped; a tool left with none is skipped.
    other = load_file(str(sigs / "lolrmm" / "other-tool.toml"))
    assert [n.pattern for n in other.names] == ["other-tool.example"]
    assert report.tools_skipped_as("no-names-left") == ["Gone Tool"]
    assert report.patterns_skipped["curated-rule"] == 2
    assert not (sigs / "lolrmm" / "curated-thing.toml").exists()
    # Without the curated set, the same CSV keeps them.
    tools, bare = build_tools(read_csv(csv_path), None)
    assert "curated-thing" in {t.id for t in tools}
    assert bare.patterns_skipped["curated-rule"] == 0


def test_generated_files_load_and_match_after_curated(setup: tuple[Path, Path]) -> None:
    csv_path, sigs = setup
    report = import_csv(csv_path, sigs / "lolrmm", load_curated(str(sigs)))
    for fname in report.written:
        sig = load_file(str(sigs / "lolrmm" / fname), load_all())
        assert sig.curation == "generated"
        assert sig.sources == {"1": f"https://github.com/magicsword-io/LOLRMM "
                                    f"(rmm_domains.csv, {COMMIT})"}
        for n in sig.names:
            assert (n.confidence, n.evidence) == ("low", ("dns", "sni"))
            assert n.role == name_role(n.pattern)
    quoted = load_file(str(sigs / "lolrmm" / "i-m-quoted-tool.toml"))
    assert quoted.name == "I'm \"Quoted\" Tool"
    everything = load_dir(str(sigs), load_all())
    m = everything.match_name("relay-deadbeef.net.demodesk.example", "sni")
    assert m is not None and m.tool == "demodesk" and m.rule.generated
    m = everything.match_name("x.sharedvendor.example", "dns")
    assert m is not None and m.tool == "ct"


def test_output_is_deterministic(setup: tuple[Path, Path], tmp_path: Path) -> None:
    csv_path, sigs = setup
    curated = load_curated(str(sigs))
    import_csv(csv_path, tmp_path / "a", curated)
    import_csv(csv_path, tmp_path / "b", curated)
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert a == b
    assert {"README.md", "LICENSE"} <= set(a)
    assert a["LICENSE"] == (csv_path.parent / "LICENSE").read_bytes()
    readme = a["README.md"].decode()
    assert "Apache" in readme and COMMIT in readme and "never fetches" in readme


def test_header_names_the_source_and_says_generated() -> None:
    text = render(Tool("x-tool", "X Tool", [], ["x.example"], COMMIT))
    assert text.startswith(GENERATED_MARK)
    head = text.split("id = ", 1)[0]
    assert "LOLRMM" in head and "Apache-2.0" in head and COMMIT in head
    assert "Do not edit by hand" in head


def test_stale_generated_files_are_removed_others_kept(setup: tuple[Path, Path]) -> None:
    csv_path, sigs = setup
    out = sigs / "lolrmm"
    out.mkdir()
    (out / "old-tool.toml").write_text(render(Tool("old-tool", "Old", [], ["o.example"])))
    (out / "mine.toml").write_text(CURATED.replace('"ct"', '"mine"'))
    report = import_csv(csv_path, out, load_curated(str(sigs)))
    assert report.removed == ["old-tool.toml"]
    assert report.left_alone == ["mine.toml"]
    assert not (out / "old-tool.toml").exists()
    assert (out / "mine.toml").exists()


def test_cli_imports_into_the_lolrmm_folder(setup: tuple[Path, Path]) -> None:
    csv_path, sigs = setup
    result = CliRunner().invoke(main, ["signatures", "import-lolrmm", str(csv_path),
                                       "--signatures", str(sigs)])
    assert result.exit_code == 0, result.output
    assert "tools: 4 kept" in result.stdout
    assert "1 curated-tool" in result.stdout
    assert (sigs / "lolrmm" / "demodesk.toml").is_file()


@pytest.mark.parametrize("content", [None, "Domain,Tool\na.example,A\n"])
def test_cli_bad_csv_is_one_line_and_exit_2(tmp_path: Path, content: str | None) -> None:
    csv_path = tmp_path / "rmm_domains.csv"
    if content is not None:
        csv_path.write_text(content)
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    result = CliRunner().invoke(main, ["signatures", "import-lolrmm", str(csv_path),
                                       "--signatures", str(sigs)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(csv_path) in lines[0]
    assert not (sigs / "lolrmm").exists()


def _under_zone(shape: str, zone: str) -> bool:
    tail = shape.rsplit("*", 1)[-1]
    return tail == zone or tail.endswith("." + zone)


@pytest.mark.skipif(not REAL_CSV.is_file(),
                    reason=f"the LOLRMM reference snapshot is not at {REAL_CSV} "
                           "(clone with ../shared beside the project)")
def test_real_csv_and_shipped_set_up_to_date(tmp_path: Path) -> None:
    curated = load_curated(DEFAULT_DIR, load_all())
    out = tmp_path / "lolrmm"
    report = import_csv(REAL_CSV, out, curated)
    assert len(report.tools_kept) > 100
    for fname in report.written:
        sig = load_file(str(out / fname), load_all())
        words = {w for w in sig.tool.split("-") if len(w) >= 4} | {sig.tool.replace("-", "")}
        for n in sig.names:
            for zone in SHARED_ZONES:
                if n.pattern.startswith("re:") or not _under_zone(n.pattern, zone):
                    continue
                # Only an exact or fixed label naming the tool may sit on a shared zone.
                fixed = n.pattern.rsplit("*", 1)[-1][: -len(zone)].strip(".").split(".")
                if "*" in n.pattern:
                    fixed = fixed[1:]
                assert any(w in lb for lb in fixed for w in words), (fname, n.pattern)
    shipped = Path(DEFAULT_DIR) / "lolrmm"
    fresh = {p.name: p.read_bytes() for p in out.iterdir()}
    have = {p.name: p.read_bytes() for p in shipped.iterdir()} if shipped.is_dir() else {}
    stale = sorted(n for n in fresh.keys() | have.keys() if fresh.get(n) != have.get(n))
    assert not stale, ("signatures/lolrmm/ is out of date; rerun `netwatch signatures "
                       f"import-lolrmm {REAL_CSV}` (differs: {', '.join(stale[:10])})")
    assert os.path.isfile(shipped / "LICENSE")


@pytest.mark.parametrize(("pattern", "role"), [
    ("*.vendor.example", "web"),          # a whole domain: the vendor's website and more
    ("vendor.example", "web"),
    ("www.vendor.example", "web"),
    ("vendor.co.uk", "web"),
    ("relay.vendor.example", "unknown"),  # below the domain: the tool's own servers
    ("*.api.vendor.example", "unknown"),
    ("agents*-cloud.vendor.example", "unknown"),
    ("re:relay-[a-f0-9]{8}\\.vendor\\.example", "unknown"),
])
def test_whole_domains_are_websites_not_detections(pattern: str, role: str) -> None:
    assert name_role(pattern) == role


def test_names_of_someone_elses_service_are_left_out() -> None:
    assert classify("login.tailscale.com", {"tactical"}) == "not-the-tools-own"
