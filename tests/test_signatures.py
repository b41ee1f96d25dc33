"""Signature files: validation names file, line and field; the CLI lists and checks them."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netwatch.recognisers import load_all
from netwatch.signatures import (
    DEFAULT_DIR,
    GENERATED_DIRS,
    SignatureError,
    _cache_file,
    _save_set,
    _set_key,
    _set_path,
    load_dir,
    load_file,
)

GOOD = '''id = "demo"
name = "Demo"
version = 1
recognisers = []

[sources]
1 = "https://example.org"

[[names]]
pattern = "relay*.demo.example"
role = "relay"
source = 1
'''


def write(tmp_path: Path, text: str, name: str = "demo.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_signatures_load() -> None:
    sigs = load_dir(DEFAULT_DIR, load_all())
    assert {"rdp", "vnc", "teamviewer", "anydesk"} <= set(sigs.by_tool)


def test_good_file_loads(tmp_path: Path) -> None:
    sig = load_file(str(write(tmp_path, GOOD)))
    assert sig.names[0].regex.match("relay12.demo.example")
    assert not sig.names[0].regex.match("relay12.demo.example.evil.org")


def test_bad_role_names_file_line_and_field(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace('role = "relay"', 'role = "boss"'))
    with pytest.raises(SignatureError) as ei:
        load_file(str(p))
    assert ei.value.problems == [f"{p}:11: names[0].role: 'boss' is not one of "
                                 "session, relay, rendezvous, download, dns, scan, unknown, web"]


def test_missing_field_and_unknown_field(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace('pattern = "relay*.demo.example"\n', 'patern = "x"\n'))
    with pytest.raises(SignatureError) as ei:
        load_file(str(p))
    text = str(ei.value)
    assert f"{p}:10: names[0].patern: unknown field" in text
    assert f"{p}:9: names[0].pattern: missing (required)" in text


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD + "\n[[names]\n")
    with pytest.raises(SignatureError) as ei:
        load_file(str(p))
    assert str(ei.value).startswith(f"{p}:14: TOML syntax")


def test_id_must_match_file_name(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD, name="other.toml")
    with pytest.raises(SignatureError, match="must equal the file name"):
        load_file(str(p))


def test_unknown_recogniser_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("recognisers = []", 'recognisers = ["nope"]'))
    with pytest.raises(SignatureError, match="no recogniser named 'nope'"):
        load_file(str(p), load_all())


def test_cli_check_and_list(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "netwatch", "signatures"]
    ok = subprocess.run(run + ["check"], capture_output=True, text=True)
    assert ok.returncode == 0 and "signature files OK" in ok.stdout
    bad = write(tmp_path, GOOD.replace("version = 1", 'version = "one"'))
    fail = subprocess.run(run + ["check", str(bad)], capture_output=True, text=True)
    assert fail.returncode == 1
    assert f"{bad}:3: version: must be int, got str" in fail.stderr
    lst = subprocess.run(run + ["list"], capture_output=True, text=True)
    assert lst.returncode == 0
    anydesk = [ln for ln in lst.stdout.splitlines() if ln.startswith("anydesk")]
    assert anydesk and "high" in anydesk[0] and "certificate" in anydesk[0]


# ---------------------------------------------------------------- name matching rules

def _set():
    from conftest import signatures
    return signatures()


def test_exact_website_name_beats_a_wildcard_of_the_same_tool():
    sigs = _set()
    www = sigs.match_name("www.supremocontrol.com", "sni")
    assert www is not None and www.role == "web"
    other = sigs.match_name("eu1.supremocontrol.com", "sni")
    assert other is not None and (other.tool, other.role, other.confidence) == \
        ("supremo", "unknown", "low")


def test_download_label_under_a_vendor_zone():
    m = _set().match_name("download.anydesk.com", "dns")
    assert (m.tool, m.role, m.confidence) == ("anydesk", "download", "medium")
    assert _set().match_name("downloadanydesk.com", "dns") is None


def test_shared_infrastructure_is_never_a_detection_alone():
    m = _set().match_name("euno-1.cc.skype.com", "sni")
    assert m is not None and m.role == "web" and m.rule.shared_with


def test_port_roles_refine_a_name():
    sigs = _set()
    m = sigs.match_name("rs-ny.rustdesk.com", "dns")
    assert m.role == "rendezvous"
    assert sigs.role_on_port(m, 6, 21117) == "relay"
    assert sigs.role_on_port(m, 17, 21116) == "rendezvous"
    assert sigs.role_on_port(m, 6, 443) == "rendezvous"


def test_every_curated_signature_cites_its_sources():
    for s in _set().by_tool.values():
        if s.curation == "curated":
            assert s.sources, s.tool


def test_default_signatures_come_back_from_the_cache(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETWATCH_CACHE_DIR", str(tmp_path))
    cache = Path(_cache_file(DEFAULT_DIR) or "")
    assert cache.parent == tmp_path
    built = Path(_set_path(str(cache)))

    def load() -> Any:
        built.unlink(missing_ok=True)  # the documents, not the set built from them
        return load_dir(known_recognisers=load_all())

    first = load()
    assert cache.is_file()
    data = json.loads(cache.read_text(encoding="utf-8"))
    anydesk = next(f for f in data["files"] if f.endswith(os.sep + "anydesk.toml"))
    # A cached document is used as it is while the file's size and time are unchanged ...
    data["files"][anydesk][2]["name"] = "AnyDesk (from the cache)"
    cache.write_text(json.dumps(data), encoding="utf-8")
    assert load().by_tool["anydesk"].name == "AnyDesk (from the cache)"
    # ... and the file is read again when they differ.
    data["files"][anydesk][1] += 1
    cache.write_text(json.dumps(data), encoding="utf-8")
    assert load().by_tool["anydesk"].name == first.by_tool["anydesk"].name
    # A damaged cache is only a slower start.
    cache.write_text("{not json", encoding="utf-8")
    again = load()
    assert sorted(again.by_tool) == sorted(first.by_tool)
    assert json.loads(cache.read_text(encoding="utf-8"))["format"] == 1


def test_the_set_built_comes_back_while_nothing_it_was_built_from_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETWATCH_CACHE_DIR", str(tmp_path))
    documents = _cache_file(DEFAULT_DIR) or ""
    built = Path(_set_path(documents))
    names = load_all()
    first = load_dir(known_recognisers=names)
    assert built.is_file() and built.stat().st_mode & 0o777 == 0o600
    with built.open("rb") as fh:
        key = pickle.load(fh)  # what the set was built from
    # Kept under that key, a doctored set comes back as it is ...
    doctored = load_dir(known_recognisers=names)
    doctored.by_tool["anydesk"].name = "AnyDesk (kept)"
    _save_set(documents, key, doctored)
    assert load_dir(known_recognisers=names).by_tool["anydesk"].name == "AnyDesk (kept)"
    # ... but not once the recognisers differ (or a signature file, or the module) ...
    assert load_dir(known_recognisers=[*names, "another"]).by_tool["anydesk"].name == \
        first.by_tool["anydesk"].name
    # ... nor from a file others may write to, nor a damaged one: a slower start only.
    _save_set(documents, key, doctored)
    built.chmod(0o664)
    assert load_dir(known_recognisers=names).by_tool["anydesk"].name == \
        first.by_tool["anydesk"].name
    built.write_bytes(b"not a pickle")
    assert sorted(load_dir(known_recognisers=names).by_tool) == sorted(first.by_tool)


def test_the_set_key_follows_each_file(tmp_path: Path) -> None:
    f = write(tmp_path, GOOD)
    before = _set_key([str(f)], ["tls"])
    os.utime(f, ns=(1, 1))
    assert _set_key([str(f)], ["tls"]) != before
    assert _set_key([str(f)], ["tls", "rdp"]) != _set_key([str(f)], ["tls"])
    assert _set_key([str(tmp_path / "gone.toml")], ["tls"]) is None


def test_each_signature_folder_has_its_own_cache(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkout and an installed copy used in turn must not evict each other's documents.
    monkeypatch.setenv("NETWATCH_CACHE_DIR", str(tmp_path))
    here, there = _cache_file(DEFAULT_DIR), _cache_file(str(tmp_path / "signatures"))
    assert here is not None and there is not None and here != there
    assert _cache_file(DEFAULT_DIR + os.sep) == here


def test_an_install_carries_every_signature_folder() -> None:
    # setup.cfg's data_files put the signatures under share/netwatch/ for an installed
    # copy (pip install .); a folder left out there is silently missing from it.
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(DEFAULT_DIR).parent / "setup.cfg", encoding="utf-8")
    shipped = {dest: src.strip() for dest, src in cfg["options.data_files"].items()}
    assert shipped["share/netwatch/signatures"] == "signatures/*.toml"
    for sub in GENERATED_DIRS:
        assert shipped[f"share/netwatch/signatures/{sub}"] == f"signatures/{sub}/*.toml"
