"""The router and Pi deployment's Python side: OpenWrt's UCI file translated into the
daemon's settings, SQLite's journal chosen for the filesystem, calendars optional."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from netwatch.cli import main
from netwatch.config import ConfigError, load_settings
from netwatch.outbox import Outbox, journal_mode
from netwatch.uci import parse_uci, settings_from_uci, write_settings

ROOT = Path(__file__).resolve().parents[1]
UCI = ROOT / "tests" / "data" / "uci"
SHIPPED = ROOT / "deploy" / "openwrt" / "files" / "netwatch.config"


def test_the_shipped_uci_file_gives_the_router_settings(tmp_path: Path) -> None:
    out = tmp_path / "netwatch.yaml"
    write_settings(str(SHIPPED), str(out))
    s = load_settings(str(out))
    assert (s.source, s.nflog_group) == ("nflog", 74)
    assert s.state_dir == "/etc/netwatch/state"  # flash, not /tmp
    assert s.eve_log == "/tmp/log/netwatch/eve.json" and s.eve_max_mib == 2
    assert s.metrics_textfile is None  # until a node exporter is installed
    assert s.control_url == "http://openwrt.lan:8787"
    assert (UCI / "default").read_text() == SHIPPED.read_text()


def test_the_metrics_file_option(tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace("#option metrics_textfile", "option metrics_textfile")
    (tmp_path / "uci").write_text(text)
    write_settings(str(tmp_path / "uci"), str(tmp_path / "netwatch.yaml"))
    s = load_settings(str(tmp_path / "netwatch.yaml"))
    assert s.metrics_textfile == "/var/prometheus/netwatch.prom"


def test_quotes_booleans_empty_values_and_relative_paths(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "netwatch.yaml"
    write_settings(str(UCI / "pi-like"), str(out))
    s = load_settings(str(out))
    assert (s.source, s.interface, s.promiscuous, s.ring_mib) == ("af_packet", "br-lan",
                                                                  False, 4)
    assert s.metrics_listen == "off"
    assert s.control_listen == "127.0.0.1:8787"  # left empty: the default
    assert s.household == str(tmp_path / "etc" / "household.yaml")


def test_every_mistake_is_named_at_its_uci_line(tmp_path: Path) -> None:
    out = tmp_path / "netwatch.yaml"
    with pytest.raises(ConfigError) as e:
        write_settings(str(UCI / "mistakes"), str(out))
    where = str(UCI / "mistakes")
    assert e.value.problems == [
        f"{where}:3: sorce: unknown option (did you mean 'source'?)",
        f"{where}:1: interface: netwatch takes no 'list' options"]
    text = (UCI / "mistakes").read_text().replace("\toption sorce 'nflog'\n", "") \
        .replace("\tlist interface 'br-lan'\n", "")
    (tmp_path / "uci").write_text(text)
    with pytest.raises(ConfigError) as e:
        write_settings(str(tmp_path / "uci"), str(out))
    assert e.value.problems == [f"{tmp_path / 'uci'}:3: nflog_group: 'seventy' is not a "
                                "group number, like 74"]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["uci"]


def test_uci_grammar() -> None:
    [a, b] = parse_uci("config netwatch 'main'\n\toption x \"a b\" # c\n# d\n"
                       "config other\n\tlist l 1\n\tlist l 2\n")
    assert (a.type, a.name, a.options) == ("netwatch", "main", {"x": ("a b", 2)})
    assert (b.type, b.name, b.lists) == ("other", None, {"l": ["1", "2"]})
    with pytest.raises(ConfigError, match=r"-:1: x: option before any 'config' line"):
        parse_uci("option x 1\n")
    with pytest.raises(ConfigError, match="no 'config netwatch' section"):
        settings_from_uci("config other x\n")


def test_uci_config_command(tmp_path: Path) -> None:
    out = tmp_path / "netwatch.yaml"
    ok = CliRunner().invoke(main, ["uci-config", str(SHIPPED), "-o", str(out)])
    assert ok.exit_code == 0 and load_settings(str(out)).source == "nflog"
    bad = CliRunner().invoke(main, ["uci-config", str(UCI / "mistakes"), "-o",
                                    str(tmp_path / "x.yaml")])
    assert bad.exit_code == 1 and "sorce: unknown option" in bad.output


# The mounts of an OpenWrt router with a JFFS2 overlay (squashfs below), and of a Pi.
OPENWRT_MOUNTS = """\
13 1 31:3 / /rom ro,relatime - squashfs /dev/root ro
14 13 0:4 / /proc rw - proc proc rw
16 1 31:4 / /overlay rw,noatime - jffs2 /dev/mtdblock4 rw
17 1 0:17 / / rw,noatime - overlay overlayfs:/overlay rw,lowerdir=/,upperdir=/overlay/upper
18 17 0:18 / /tmp rw,nosuid,nodev,noatime - tmpfs tmpfs rw
"""
PI_MOUNTS = """\
25 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw
30 25 0:25 / /tmp\\040dir rw - tmpfs tmpfs rw
"""


def test_journal_mode_follows_the_filesystem() -> None:
    assert journal_mode("/etc/netwatch/state", OPENWRT_MOUNTS) == "TRUNCATE"
    assert journal_mode("/overlay/upper/etc", OPENWRT_MOUNTS) == "TRUNCATE"
    assert journal_mode("/tmp/netwatch", OPENWRT_MOUNTS) == "WAL"
    assert journal_mode("/var/lib/netwatch", PI_MOUNTS) == "WAL"
    ubifs = OPENWRT_MOUNTS.replace("jffs2 /dev/mtdblock4", "ubifs ubi0:rootfs_data")
    assert journal_mode("/etc/netwatch/state", ubifs) == "WAL"


def test_the_outbox_uses_the_chosen_journal(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mountinfo"
    fake.write_text(f"16 1 31:4 / {tmp_path} rw - jffs2 /dev/mtdblock4 rw\n")
    monkeypatch.setattr("netwatch.outbox.MOUNTINFO", str(fake))
    with Outbox(tmp_path / "state") as box:
        assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "truncate"
    fake.write_text(f"16 1 31:4 / {tmp_path} rw - ext4 /dev/sda1 rw\n")
    with Outbox(tmp_path / "state") as box:
        assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_calendar_windows_say_what_is_missing_without_icalendar(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from netwatch.household import _parse_calendar

    monkeypatch.setitem(sys.modules, "icalendar", None)  # import raises ImportError
    query, error = _parse_calendar(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    assert query is None and error is not None and "'icalendar'" in error
    assert "use weekly windows" in error
