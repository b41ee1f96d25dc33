"""The ``netwatch`` commands other than ``replay``. The command line (netwatch.cli) imports
this module only when one of them is run or listed, so that a replay does not build their
hundred options: click makes an object for each, a few milliseconds of every start-up."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .cli import (
    EXIT_INPUT_ERROR,
    _household_or_exit,
    _settings_or_exit,
    _signatures,
)
from .recognisers import load_all
from .signatures import DEFAULT_DIR, SignatureError, load_dir, load_file

BLOCK_BACKENDS = ("auto", "nftables", "dry-run")  # netwatch.block.layer.BACKENDS


@click.group()
def signatures() -> None:
    """List and check the signature files."""


@signatures.command("list")
@click.option("--signatures", "sig_dir", default=DEFAULT_DIR, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--all", "show_all", is_flag=True,
              help="Also list the generated low-curation signatures (LOLRMM import).")
def signatures_list(sig_dir: str, fmt: str, show_all: bool) -> None:
    """Show each tool: vendor, roles covered, kinds of evidence, scam prevalence."""
    sigs = _signatures(sig_dir)
    rows: list[dict[str, Any]] = []
    generated = 0
    for tool in sorted(sigs.by_tool, key=lambda t: (sigs.by_tool[t].curation, t)):
        s = sigs.by_tool[tool]
        if s.curation != "curated":
            generated += 1
            if not show_all:
                continue
        rows.append({"tool": tool, "name": s.name, "vendor": s.vendor,
                     "roles": s.roles(), "evidence": s.evidence_kinds(),
                     "scam_prevalence": s.scam_prevalence, "curation": s.curation,
                     "reported_as": s.reported_as, "signature": s.ref})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'tool':<22} {'vendor':<28} {'prevalence':<10} {'roles':<38} evidence")
    for r in rows:
        vendor = r["vendor"] if len(r["vendor"]) <= 28 else r["vendor"][:27] + "…"
        roles = ",".join(r["roles"]) or "-"
        evidence = ",".join(r["evidence"]) or "-"
        if r["reported_as"]:
            evidence += f" (seen as {r['reported_as']})"
        if r["curation"] != "curated":
            evidence += " [generated]"
        click.echo(f"{r['tool']:<22} {vendor:<28} {r['scam_prevalence']:<10} {roles:<38} "
                   f"{evidence}")
    curated = len(sigs) - generated
    extra = "" if show_all or not generated else \
        f" (and {generated} generated low-curation ones: --all)"
    click.echo(f"{curated} curated signatures in {sig_dir}{extra}")


@signatures.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--signatures", "sig_dir", default=DEFAULT_DIR, type=click.Path(file_okay=False))
def signatures_check(files: tuple[str, ...], sig_dir: str) -> None:
    """Validate signature files (all of them by default); problems name file, line, field."""
    known = load_all()
    if not files:
        try:
            sigs = load_dir(sig_dir, known)
        except SignatureError as e:
            click.echo(str(e), err=True)
            sys.exit(1)
        click.echo(f"{len(sigs)} signature files OK")
        return
    bad = 0
    for f in files:
        try:
            load_file(f, known)
            click.echo(f"{f}: OK")
        except SignatureError as e:
            bad += 1
            click.echo(str(e), err=True)
    if bad:
        sys.exit(1)


@signatures.command("import-lolrmm")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder to (re)generate. Default: the lolrmm/ folder of --signatures.")
@click.option("--signatures", "sig_dir", default=DEFAULT_DIR, type=click.Path(file_okay=False),
              help="Folder of curated signature files; generated sub-folders are ignored.")
def signatures_import_lolrmm(csv_path: str, out_dir: str | None, sig_dir: str) -> None:
    """Regenerate the low-curation signatures from LOLRMM's rmm_domains.csv.

    A maintainer's offline step: one file per LOLRMM tool goes into OUT, minus tools and
    names the curated signatures already cover, names that are not the tool's own (cloud,
    CDN, messaging zones) and entries that are not names. The daemon never fetches LOLRMM.
    A missing or malformed CSV is reported on one line; the exit code is then 2.
    """
    from .lolrmm import LolrmmError, default_out_dir, import_csv, load_curated, summary_lines

    try:
        curated = load_curated(sig_dir, load_all())
    except SignatureError as e:
        raise click.ClickException("signature files are invalid:\n" + str(e)) from None
    target = out_dir or default_out_dir(sig_dir)
    try:
        report = import_csv(csv_path, target, curated)
    except LolrmmError as e:
        click.echo(f"netwatch: {e}", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    except OSError as e:
        raise click.ClickException(f"cannot write {target}: {e.strerror or e}") from None
    click.echo(f"wrote {target}")
    for line in summary_lines(report):
        click.echo(line)


@signatures.command("test")
@click.argument("tools", nargs=-1, metavar="[TOOL]...")
@click.option("--examples", "examples_dir", type=click.Path(file_okay=False), default=None,
              help="Folder with MANIFEST.tsv, FLOWS.tsv and the example captures. "
                   "Default: tests/pcaps/synthetic/tools of the source tree.")
@click.option("--signatures", "sig_dir", default=DEFAULT_DIR, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def signatures_test(tools: tuple[str, ...], examples_dir: str | None, sig_dir: str,
                    fmt: str) -> None:
    """Replay each tool's example captures and check what netwatch reports on them.

    A positive example must be reported as its FLOWS.tsv rows say (tool, role, variant), a
    negative one not at all (scans aside); a curated signature without both kinds of
    example fails. Exit code 1 when any signature fails, 2 when the examples are unusable.
    """
    from . import sigtest

    folder = examples_dir or sigtest.default_examples_dir()
    if folder is None:
        click.echo("netwatch: no examples folder: tests/pcaps/synthetic/tools is not beside "
                   "this installation; give one with --examples DIR", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    sigs = _signatures(sig_dir)
    try:
        results = sigtest.run(sigs, folder, tools)
    except sigtest.ExamplesError as e:
        click.echo(f"netwatch: {e}", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    if fmt == "json":
        click.echo(json.dumps(sigtest.to_json(results, folder), indent=2))
    else:
        click.echo(sigtest.format_text(results), nl=False)
    if not all(r.passed for r in results):
        sys.exit(1)


@click.command()
@click.option("--packets", default=1_000_000, show_default=True,
              help="Size of the generated home mix.")
@click.option("--seed", default=1, show_default=True)
@click.option("--pcap", type=click.Path(exists=True, dir_okay=False),
              help="Benchmark this capture instead of generating the home mix.")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False),
              help="Its truth file (FLOWS.tsv columns), to check the sessions were found.")
@click.option("--runs", default=3, show_default=True, help="Paired runs (medians reported).")
@click.option("--workdir", help="Where the generated mix is kept between calls "
              "[default: netwatch-bench in the temporary folder].")
@click.option("--no-peer", is_flag=True, help="Do not run ndpiReader.")
@click.option("--no-stages", is_flag=True, help="Skip the per-stage and memory measurements.")
@click.option("--no-nflog", is_flag=True, help="Skip the nflog-mode share.")
@click.option("--no-pcapng", is_flag=True, help="Skip the same mix rewritten as pcapng.")
@click.option("--no-startup", is_flag=True, help="Skip the start-up timing.")
@click.option("--no-table", is_flag=True,
              help="Skip the flow-table-full measurement (65,536 flows; about 20 s).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the figures as JSON.")
@click.option("--record", type=click.Path(dir_okay=False),
              help="Write the measured speed ratio to this file (for --guard).")
@click.option("--guard", "guard_file", type=click.Path(exists=True, dir_okay=False),
              help="Exit 1 if the speed ratio is below half the one recorded in this file.")
def bench(packets: int, seed: int, pcap: str | None, truth: str | None, runs: int,
          workdir: str | None, no_peer: bool, no_stages: bool, no_nflog: bool,
          no_pcapng: bool, no_startup: bool, no_table: bool, json_out: str | None,
          record: str | None, guard_file: str | None) -> None:
    """Time the replay pipeline on the home mix against ndpiReader, in one call."""
    import subprocess
    import tempfile
    from pathlib import Path

    from . import bench as b

    if workdir is None:
        workdir = os.path.join(tempfile.gettempdir(), "netwatch-bench")

    mix_truth: Path | None
    if pcap is None:
        try:
            mix, mix_truth = b.make_mix(packets, seed, Path(workdir))
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            click.echo(f"netwatch bench: {e}", err=True)
            sys.exit(EXIT_INPUT_ERROR)
    else:
        mix = Path(pcap)
        mix_truth = Path(truth) if truth else None
    report = b.run(mix, mix_truth, runs=runs, peer=not no_peer, stages=not no_stages,
                   nflog=not no_nflog, pcapng=not no_pcapng, startup=not no_startup,
                   table=not no_table, workdir=Path(workdir) if pcap is None else None)
    click.echo(b.render(report), nl=False)
    if json_out:
        Path(json_out).write_text(json.dumps(report.as_dict(), indent=2) + "\n",
                                  encoding="utf-8")
    if record:
        Path(record).write_text(json.dumps({
            "speed_ratio": round(report.speed_ratio, 3),
            "pcapng_speed_ratio": round(report.pcapng_speed_ratio, 3),
            "packets": report.packets or packets, "peer": "ndpiReader", "runs": runs,
            "note": "netwatch replay packets/s over ndpiReader's on the same file (classic "
                    "pcap; the same mix as pcapng), median of paired runs",
        }, indent=2) + "\n", encoding="utf-8")
    found = [s for s in (report.sessions, report.pcapng.get("sessions")) if s]
    failed = any(s["found"] < s["embedded"] for s in found)
    if failed:
        click.echo("not every embedded session was found", err=True)
    if guard_file:
        ok, msg = b.guard(report, Path(guard_file))
        click.echo(msg)
        failed = failed or not ok
    if failed:
        sys.exit(1)


@click.command("fuzz")
@click.option("--packets", default=1_000_000, show_default=True,
              help="Mutated packets to run (in cases of up to 48 frames).")
@click.option("--seed", default=1, show_default=True)
@click.option("--corpus", "corpus_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of captures to mutate (default: the shared corpus, ../shared/pcaps).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where reproducers of crashes and the slowest case are written "
                   "(default: netwatch-fuzz in the temporary folder).")
@click.option("--signatures", "sig_dir", default=DEFAULT_DIR, type=click.Path(file_okay=False))
def fuzz_cmd(packets: int, seed: int, corpus_dir: str | None, out_dir: str | None,
             sig_dir: str) -> None:
    """Mutated captures from the corpus through the whole pipeline: reports crashes (each
    with a reproducer file), the slowest case and throughput; exit 1 on any crash."""
    import tempfile
    from pathlib import Path

    from .bench import shared_dir
    from .floods import HOUSEHOLD
    from .fuzz import fuzz
    from .household import load_household

    corpus = Path(corpus_dir) if corpus_dir else None
    if corpus is None:
        shared = shared_dir()
        if shared is None:
            raise click.UsageError("no corpus: give --corpus DIR (../shared/pcaps is not here)")
        corpus = shared / "pcaps"
    if out_dir is None:
        out_dir = os.path.join(tempfile.gettempdir(), "netwatch-fuzz")
    with tempfile.TemporaryDirectory(prefix="netwatch-fuzz-") as tmp:
        house = os.path.join(tmp, "household.yaml")
        with open(house, "w", encoding="utf-8") as fh:
            fh.write(HOUSEHOLD)
        household = load_household(house)
    res = fuzz(corpus, packets, seed, _signatures(sig_dir), household,
               Path(out_dir), progress=lambda r: click.echo(
                   f"  {r.cases:,} cases, {r.packets:,} packets, {len(r.crashes)} crashes",
                   err=True))
    click.echo(f"cases: {res.cases:,} ({res.refused:,} refused by the reader, as they should "
               f"be)\nmutated packets: {res.written:,} written, {res.packets:,} read in "
               f"{res.seconds:.1f} s "
               f"({res.packets_per_s:,.0f} packets/s)\n"
               f"slowest case: #{res.slowest_case}, {res.slowest_s * 1000:.1f} ms for "
               f"{res.slowest_packets} packets ({res.slowest_file})\n"
               f"crashes: {len(res.crashes)}")
    for c in res.crashes:
        click.echo(f"  case {c.case}: {c.reproducer}\n    " + c.error.replace("\n", "\n    "))
    if res.crashes:
        sys.exit(1)


@click.command("floods")
@click.option("--scale", default=1.0, show_default=True,
              help="Fraction of the full sizes (1M flows, 1M SYNs, 100k bulk flows, 200k "
                   "peers).")
@click.option("--only", "only", multiple=True, type=click.Choice(["flows", "syns", "bulk",
                                                                   "peers"]))
@click.option("--corpus", "corpus_dir", type=click.Path(file_okay=False), default=None,
              help="The shared corpus (default ../shared/pcaps): its ndpi_vnc.pcap.")
def floods_cmd(scale: float, only: tuple[str, ...], corpus_dir: str | None) -> None:
    """Each flood around a real VNC session: the session kept, its alert, peak RSS against
    the cap; exit 1 if any falls short."""
    from pathlib import Path

    from . import floods
    from .bench import shared_dir

    corpus = Path(corpus_dir) if corpus_dir else None
    if corpus is None:
        shared = shared_dir()
        if shared is None:
            raise click.UsageError("no corpus: give --corpus DIR (../shared/pcaps is not here)")
        corpus = shared / "pcaps"
    rdp = Path(__file__).resolve().parents[1] / "tests" / "pcaps" / "recorded" / "rdp-xrdp.pcap"
    if not rdp.is_file():
        rdp = corpus / "ndpi_rdp.pcap"
    failed = 0
    click.echo(f"cap: {floods.RSS_CAP_MIB} MiB peak RSS")
    for kind, full in floods.FLOODS.items():
        if only and kind not in only:
            continue
        o = floods.run(kind, max(1, int(full * scale)), corpus, rdp)
        failed += not o.ok
        click.echo(f"{kind:6} {o.size:>9,} ({o.packets:,} packets): peak RSS "
                   f"{o.peak_rss_mib:.1f} MiB; session detected {o.detected}, active "
                   f"{o.active}, kept {o.kept}, banking alert {o.alert}; largest session "
                   f"event {o.session_event_bytes} bytes -> {'ok' if o.ok else 'FAILED'}")
    if failed:
        sys.exit(1)


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--now", "now_text", metavar="ISO8601",
              help="Show the help windows that come after this time (default: now). "
                   "Without an offset it is read in the household's time zone.")
@click.option("--fetch", is_flag=True,
              help="First download the calendars given by ics_url (10 s each) into cache "
                   "files beside FILE.")
@click.option("--kind", type=click.Choice(["auto", "household", "daemon"]), default="auto",
              show_default=True,
              help="What FILE is: the household file, or the daemon's settings "
                   "(netwatch.yaml); auto tells them apart by their fields.")
def check_config(file: str, now_text: str | None, fetch: bool, kind: str) -> None:
    """Check a household file or the daemon's settings file and show what netwatch
    understood from it.

    For a household file: the people, carers (notification addresses masked), devices,
    trusted rules, banking lists, quiet hours and the next five help windows. For a settings
    file: the source, paths and listen addresses, then the household file it names is
    checked too. Problems are printed one per line as FILE:LINE: field: message and the
    exit code is 1; a file that cannot be read gives exit code 2.
    """
    from datetime import UTC, datetime

    from .config import looks_like_settings
    from .household import describe, fetch_calendars

    if kind == "daemon" or (kind == "auto" and looks_like_settings(file)):
        file = _check_settings(file)

    if now_text is not None:
        try:
            now = datetime.fromisoformat(now_text)
        except ValueError:
            raise click.BadParameter(f"{now_text!r} is not an ISO 8601 time like "
                                     "2026-03-29T09:00+02:00", param_hint="--now") from None
    else:
        now = datetime.now(UTC)
    if fetch:
        for ok, msg in fetch_calendars(file):
            click.echo(f"fetch: {msg}", err=not ok)
    household = _household_or_exit(file)
    for w in household.warnings:
        click.echo(f"warning: {w}", err=True)
    if now.tzinfo is None:
        now = now.replace(tzinfo=household.tz)
    click.echo(describe(household, now), nl=False)


def _check_settings(path: str) -> str:
    """Check a daemon settings file and say what it sets; returns its household file."""
    from .config import describe

    settings = _settings_or_exit(path)
    click.echo(f"{path}: daemon settings OK")
    click.echo(describe(settings), nl=False)
    click.echo(f"\nThe household file, {settings.household}:")
    return settings.household


# ------------------------------------------------------------------ run (the live daemon)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="The daemon's settings file (e.g. /etc/netwatch/netwatch.yaml); the "
                   "options below win over it.")
@click.option("--source", type=click.Choice(["af_packet", "pcap", "nflog", "dnslog"]),
              help="Where traffic comes from. [default: af_packet]")
@click.option("--interface", help="The interface to capture on (af_packet).")
@click.option("--household", "household_file", type=click.Path(dir_okay=False),
              help="The household file. [default: /etc/netwatch/household.yaml]")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Outbox, control store, keys, history. [default: /var/lib/netwatch]")
@click.option("--eve-log", metavar="PATH", help="Append the event log here.")
@click.option("--metrics-listen", metavar="HOST:PORT|off",
              help="Serve /metrics and /healthz here. [default: 127.0.0.1:9731]")
@click.option("--metrics-textfile", metavar="PATH",
              help="Also write the metrics to this file every 15 s (a node exporter's "
                   "text-file collector).")
@click.option("--control-listen", metavar="HOST:PORT|off",
              help="Serve the action links' endpoint here. [default: 127.0.0.1:8787]")
@click.option("--control-url", metavar="URL",
              help="The control endpoint as the carers' phones reach it (links in alerts).")
@click.option("--user", help="After opening the capture as root, run as this user with "
                             "only the capabilities the source needs.")
@click.option("--signatures", "sig_dir", type=click.Path(file_okay=False),
              help="Folder of signature files.")
@click.option("--pcap", "pcap_file", type=click.Path(dir_okay=False),
              help="The capture the pcap source plays.")
@click.option("--speed", "pcap_speed", type=click.FloatRange(min=0.0),
              help="pcap source: times faster than recorded (0: as fast as possible).")
@click.option("--dnslog", "dnslog_file", type=click.Path(dir_okay=False),
              help="The resolver's query log the dnslog source follows.")
@click.option("--block-backend", type=click.Choice(["auto", "nftables", "dry-run", "off"]),
              help="How the household's block policies and Block now are carried out: "
                   "nftables, a dry run, off, or auto (nftables where nft may be used, "
                   "the source is af_packet or nflog and this box routes, else a dry run). "
                   "[default: auto]")
def run(config_file: str | None, source: str | None, interface: str | None,
        household_file: str | None, state_dir: str | None, eve_log: str | None,
        metrics_listen: str | None, metrics_textfile: str | None,
        control_listen: str | None, control_url: str | None, user: str | None,
        sig_dir: str | None, pcap_file: str | None, pcap_speed: float | None,
        dnslog_file: str | None, block_backend: str | None) -> None:
    """Watch the network live until SIGTERM or SIGINT (exit code 0).

    Says "ready: capturing on …" on standard error once the capture is open. SIGHUP reloads
    the household and the signatures and reopens the event log. Settings problems exit
    with code 1, a start that fails (no permission, a busy port) with code 2.
    """
    from .config import Settings
    from .daemon import Daemon, StartError
    from .service import Notify, setup_logging

    setup_logging()
    settings = _settings_or_exit(config_file) if config_file is not None else Settings()
    given = {"source": source, "interface": interface, "household": household_file,
             "state_dir": state_dir, "eve_log": eve_log, "metrics_listen": metrics_listen,
             "metrics_textfile": metrics_textfile, "control_listen": control_listen,
             "control_url": control_url, "user": user,
             "signatures": sig_dir, "pcap": pcap_file, "pcap_speed": pcap_speed,
             "dnslog": dnslog_file, "block_backend": block_backend}
    for name, value in given.items():
        if value is not None:
            setattr(settings, name, value)
    problems = settings.problems()
    if problems:
        for problem in problems:
            click.echo(f"netwatch run: {problem}", err=True)
        sys.exit(1)
    notify = Notify()
    daemon = Daemon(settings, notify=notify)
    daemon.install_signals()
    try:
        daemon.start()
    except StartError as e:
        click.echo(f"netwatch run: {e}", err=True)
        daemon.shutdown()
        sys.exit(EXIT_INPUT_ERROR)
    sys.exit(daemon.run())


@click.command("uci-config")
@click.argument("uci_file", default="/etc/config/netwatch", type=click.Path(dir_okay=False))
@click.option("--output", "-o", default="/var/etc/netwatch.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="The settings file to write.")
def uci_config(uci_file: str, output: str) -> None:
    """Write the daemon's settings file from OpenWrt's UCI file (the init script's step).

    Each option of the 'config netwatch' section is the setting of the same name
    (deploy/netwatch.example.yaml); each problem is printed as FILE:LINE: option: message
    and nothing is written (exit code 1).
    """
    from .config import ConfigError
    from .uci import write_settings

    try:
        write_settings(uci_file, output)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    click.echo(f"{output}: written from {uci_file}")


# ------------------------------------------------------------------ control (action links)

DEFAULT_CONTROL_URL = "http://127.0.0.1:8787"


@click.group()
def control() -> None:
    """Signed "Block now" / "Allow for 2 h" links and the local endpoint they land on.

    The endpoint runs on the Pi or router. At home the carer's phone reaches it on the home
    network (listen on the LAN address, e.g. --listen 192.168.1.2:8787 --base-url
    http://netwatch.lan:8787); away from home, through the carer's own VPN or a reverse
    proxy with TLS that forwards /a/ to it. Never expose it to the internet without TLS.
    """


@control.command("serve")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False),
              help="netwatch's state folder (signing key, control.sqlite).")
@click.option("--listen", default="127.0.0.1:8787", show_default=True, metavar="HOST:PORT",
              help="Address to listen on ([::]:8787 for IPv6).")
@click.option("--eve-log", "eve_log", type=click.Path(dir_okay=False), metavar="PATH",
              help="Append the block events of the actions taken to this event log.")
@click.option("--base-url", metavar="URL",
              help="Where the links point (as the carer's phone sees this endpoint); "
                   "only logged here. Default: http://HOST:PORT.")
@click.option("--backend", "backend_kind", type=click.Choice(BLOCK_BACKENDS), default="auto",
              show_default=True, help="How blocks are made: nftables, a dry run, or auto "
                                      "(nftables where nft exists and may be used).")
@click.option("--household", "household_file", type=click.Path(dir_okay=False),
              help="The household file: device addresses and the never_block list.")
def control_serve(state_dir: str, listen: str, eve_log: str | None,
                  base_url: str | None, backend_kind: str, household_file: str | None) -> None:
    """Answer action links until SIGTERM or SIGINT.

    GET /a/TOKEN shows a confirmation page and never acts; POST /a/TOKEN acts once through
    the blocking layer (the same as 'netwatch block'). GET /healthz answers ok.
    """
    import logging
    import signal
    import threading
    import time

    from .actions import load_or_create_secret
    from .control import ControlService, ControlStore, make_server, parse_listen, serve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--listen") from None
    try:
        secret = load_or_create_secret(state_dir)
        store = ControlStore(state_dir)
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot use state folder {state_dir}: {e}") from None
    layer = _block_layer(state_dir, backend_kind, household_file)
    service = ControlService(secret, store, layer, eve_log=eve_log)
    recovered = service.recover(time.time())
    if recovered:
        click.echo(f"netwatch: handed on {recovered} action(s) recorded before a restart",
                   err=True)
    try:
        server = make_server(service, host, port)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {listen}: {e.strerror or e}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bound_port = server.server_address[1]
    click.echo(f"netwatch control: listening on {host}:{bound_port}; links point at "
               f"{base_url or f'http://{listen}'}; blocking: {layer.backend.name}", err=True)
    serve(server, stop)
    click.echo("netwatch control: stopped", err=True)


@control.command("link")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False),
              help="netwatch's state folder (the signing key is made there if missing).")
@click.option("--action", "action", required=True, type=click.Choice(["block", "allow"]))
@click.option("--session", "session_id", required=True, type=click.IntRange(min=0),
              help="The session's id (alert.session_id).")
@click.option("--alert", "alert_id", required=True, help="The alert's id (alert.id).")
@click.option("--carer", required=True, help="The carer the link is for.")
@click.option("--device", default=None, help="The device's name (alert.device).")
@click.option("--ttl", default=86400, show_default=True, type=click.IntRange(min=1),
              help="Seconds until the link expires.")
@click.option("--duration", "duration_s", default=7200, show_default=True,
              type=click.IntRange(min=60), help="How long an allow lasts, in seconds.")
@click.option("--lang", type=click.Choice(["en", "nl", "fr", "de"]), default=None,
              help="The carer's language for the confirmation page.")
@click.option("--base-url", default=DEFAULT_CONTROL_URL, show_default=True, metavar="URL",
              help="Where the control endpoint is, as the carer's phone sees it.")
def control_link(state_dir: str, action: str, session_id: int, alert_id: str, carer: str,
                 device: str | None, ttl: int, duration_s: int, lang: str | None,
                 base_url: str) -> None:
    """Print a signed action link (for testing, or to send by hand)."""
    import time

    from .actions import load_or_create_secret, make_link

    try:
        secret = load_or_create_secret(state_dir)
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot use state folder {state_dir}: {e}") from None
    try:
        url = make_link(secret, base_url, action=action, session_id=session_id,
                        alert_id=alert_id, carer=carer, device=device,
                        expires_at=time.time() + ttl,
                        duration_s=duration_s if action == "allow" else None, lang=lang)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(url)


@control.command("log")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def control_log(state_dir: str, fmt: str) -> None:
    """Print the actions taken through links: when, who, what, from where, outcome."""
    from .control import STORE_FILE, ControlStore

    records = ControlStore(state_dir).records() \
        if os.path.exists(os.path.join(state_dir, STORE_FILE)) else []
    if fmt == "json":
        click.echo(json.dumps([r.as_dict() for r in records], indent=2, ensure_ascii=False))
        return
    if not records:
        click.echo("no actions recorded")
        return
    from .shown import shown

    for r in records:
        d = r.as_dict()
        what = r.action + (f" until {d['until']}" if r.until is not None else "")
        # The client address may carry X-Forwarded-For and the User-Agent is the client's
        # own: both are shown escaped, and so are the names the link carried.
        click.echo(f"{d['at']}  {shown(r.carer)}: {what}, session {r.session_id} (alert "
                   f"{shown(r.alert_id)}) on {shown(r.device or 'unknown device')}; from "
                   f"{shown(r.client)}{' (' + shown(r.user_agent) + ')' if r.user_agent else ''}"
                   f": {r.outcome} [#{r.ref}]")


# ------------------------------------------------------------------ blocking


def _block_layer(state_dir: str, backend_kind: str, household_file: str | None,
                 eve_log: str | None = None) -> Any:
    from .block import BlockLayer, make_backend
    from .control import EventAppender

    household = _household_or_exit(household_file) if household_file else None
    events = EventAppender(eve_log)
    try:
        return BlockLayer(state_dir, make_backend(backend_kind), household=household,
                          on_event=events.write if eve_log else None)
    except OSError as e:
        raise click.ClickException(f"cannot use state folder {state_dir}: {e}") from None


def parse_duration(text: str) -> int:
    """``2h``, ``30m``, ``90s``, ``1d`` or plain seconds, into seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    n, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "s")
    try:
        value = float(n)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 2h, 30m or 90s",
                                 param_hint="--for") from None
    if value <= 0:
        raise click.BadParameter("must be more than nothing", param_hint="--for")
    return max(1, round(value * units[unit]))


def _block_event_line(ev: dict[str, Any]) -> str:
    b = ev["block"]
    peers = ", ".join(b["peers"]) or "none yet"
    return f"{b['action']}: {b['id']} {b['target']} (peers: {peers}) until {b['expires']}: " \
           f"{b['reason']}"


_STATE_OPT = click.option("--state-dir", required=True, type=click.Path(file_okay=False),
                          help="netwatch's state folder (blocks.json).")
_BACKEND_OPT = click.option("--backend", "backend_kind", type=click.Choice(BLOCK_BACKENDS),
                            default="auto", show_default=True,
                            help="nftables, a dry run, or auto (nftables where nft exists "
                                 "and may be used).")
_EVE_OPT = click.option("--eve-log", "eve_log", type=click.Path(dir_okay=False),
                        metavar="PATH", help="Append the block events to this event log.")


@click.group()
def block() -> None:
    """Block a device's remote-control connections (nftables), list and lift blocks.

    Every block goes through the safety rules (never the router, the DNS resolvers, this
    box, the carers' devices or the household's never_block list) and lifts itself when its
    time is up, even when netwatch is not running. By hand: nft delete table inet netwatch.
    """


@block.command("list")
@_STATE_OPT
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def block_list(state_dir: str, fmt: str) -> None:
    """The blocks in force."""
    from dataclasses import asdict

    from .block import BlockLayer
    from .eventlog import iso_timestamp

    blocks = BlockLayer(state_dir, safety=_no_safety()).list_blocks()
    if fmt == "json":
        click.echo(json.dumps([asdict(b) for b in blocks], indent=2, ensure_ascii=False))
        return
    if not blocks:
        click.echo("no blocks in force")
    for b in blocks:
        click.echo(f"{b.id}  {b.target}: {', '.join(b.addresses)} against "
                   f"{', '.join(b.peers) or 'no address yet'} until {iso_timestamp(b.expires)}"
                   f" ({b.reason})")


def _no_safety() -> Any:
    from .block.safety import Safety

    return Safety()  # listing and removing never add a rule: no need to read the system


@block.command("add")
@click.argument("device")
@click.argument("target")
@click.option("--for", "duration", default="2h", show_default=True,
              help="How long: 2h, 30m, 90s...")
@click.option("--household", "household_file", type=click.Path(dir_okay=False),
              help="The household file (device names, addresses, never_block).")
@click.option("--reason", default="blocked by hand", show_default=True)
@_STATE_OPT
@_BACKEND_OPT
@_EVE_OPT
def block_add(device: str, target: str, duration: str, household_file: str | None,
              reason: str, state_dir: str, backend_kind: str, eve_log: str | None) -> None:
    """Block DEVICE (a household device name, or an address) against TARGET: a tool
    (every address of its servers netwatch knows, and learns while the block lasts) or a
    remote address."""
    import ipaddress

    from .block.layer import _is_ip

    seconds = parse_duration(duration)
    layer = _block_layer(state_dir, backend_kind, household_file, eve_log)
    ip = device if _is_ip(device) else None
    name = None if ip else device
    if name is not None and (layer.household is None or not any(
            d.name.lower() == name.lower() for d in layer.household.devices)):
        raise click.BadParameter(f"{device!r} is not an address nor a device of the "
                                 "household (give --household)", param_hint="DEVICE")
    tool, peers = None, []
    if _is_ip(target):
        peers = [str(ipaddress.ip_address(target))]
    else:
        known = {t.lower() for t in _signatures(DEFAULT_DIR).by_tool}
        if target.lower() not in known:
            raise click.BadParameter(f"{target!r} is neither an IP address nor a tool "
                                     "netwatch knows (see 'netwatch signatures list')",
                                     param_hint="TARGET")
        tool = target.lower()
    ev = layer.add(device=name, ip=ip, tool=tool, peers=peers, duration_s=seconds,
                   reason=reason)
    click.echo(_block_event_line(ev))
    if ev["block"]["action"] != "add":
        sys.exit(1)


@block.command("remove")
@click.argument("block_id", metavar="ID")
@_STATE_OPT
@_BACKEND_OPT
@_EVE_OPT
def block_remove(block_id: str, state_dir: str, backend_kind: str, eve_log: str | None) -> None:
    """Lift the block ID (see 'netwatch block list')."""
    from .block import BlockLayer, make_backend
    from .control import EventAppender

    events = EventAppender(eve_log)
    layer = BlockLayer(state_dir, make_backend(backend_kind), safety=_no_safety(),
                       on_event=events.write if eve_log else None)
    ev = layer.remove(block_id)
    if ev is None:
        raise click.ClickException(f"no block {block_id} in force (see 'netwatch block list')")
    click.echo(_block_event_line(ev))
    if ev["block"]["action"] != "remove":
        sys.exit(1)


@block.command("reconcile")
@_STATE_OPT
@_BACKEND_OPT
@_EVE_OPT
@click.option("--household", "household_file", type=click.Path(dir_okay=False))
def block_reconcile(state_dir: str, backend_kind: str, eve_log: str | None,
                    household_file: str | None) -> None:
    """Put back the blocks still in force (after a reboot or a flushed ruleset) and remove
    the stale ones; what 'netwatch run' does at start."""
    layer = _block_layer(state_dir, backend_kind, household_file, eve_log)
    events = layer.reconcile()
    for ev in events:
        click.echo(_block_event_line(ev))
    if not events:
        click.echo(f"{len(layer.list_blocks())} block(s) in force, nothing to put right")
    if any(ev["block"]["action"] == "failed" for ev in events):
        sys.exit(1)


# ------------------------------------------------------------------ alerts (outbox, senders)

DEFAULT_HOUSEHOLD = "/etc/netwatch/household.yaml"

# The test message when netwatch.messages does not offer one: (title, body) per language.
def _alert_test_message(language: str, carer: str, now: float) -> Any:
    """The test message from the catalogue, in the carer's language."""
    from .messages import Message, test_message

    title, body = test_message(language)
    return Message(key=f"test:{carer}", alert_id="test", session_id=0, carer=carer,
                   language=language, severity="info", title=title, body=body,
                   tags=["white_check_mark"], actions=[], created=now)


@click.group()
def alert() -> None:
    """Deliver the carers' alerts: the outbox worker and a test message."""


@alert.command("test")
@click.option("--household", "household_file", default=DEFAULT_HOUSEHOLD, show_default=True,
              envvar="NETWATCH_HOUSEHOLD", type=click.Path(dir_okay=False),
              help="The household file whose carers' notify addresses are tried.")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="netwatch's state folder: also say what waits in its alert outbox.")
def alert_test(household_file: str, state_dir: str | None) -> None:
    """Send a test message to every notify address of every carer, now (not queued).

    Prints one line per address (masked): ok, or FAILED and the service's answer. Exit code
    0 when every address took the message, 1 otherwise (2: the household file is unreadable).
    """
    import time

    from .senders import DeliveryId, SendError, Senders

    household = _household_or_exit(household_file)
    senders = Senders()
    now = time.time()
    run = f"test{int(now)}"
    tried = failed = 0
    for carer in household.carers:
        message = _alert_test_message(carer.language, carer.name, now)
        for n, (url, masked) in enumerate(zip(carer.notify, carer.masked_notify,
                                              strict=True), 1):
            tried += 1
            try:
                senders.send(url, message, DeliveryId(n, 0, run, message.key))
            except SendError as e:
                failed += 1
                click.echo(f"{carer.name}: {masked}: FAILED: {e}")
            else:
                click.echo(f"{carer.name}: {masked}: ok")
    if not tried:
        click.echo(f"netwatch: no carer in {household_file} has a notify address", err=True)
        sys.exit(1)
    if state_dir is not None:
        from .outbox import Outbox

        with Outbox(state_dir) as box:
            s = box.stats()
        line = f"outbox: {s['pending']} waiting ({s['retrying']} after a failure, " \
               f"{s['held']} held by rate limits), {s['failed']} given up, {s['sent']} sent"
        if s["last_error"] and (s["pending"] or s["failed"]):
            line += f"; last error: {s['last_error']}"
        click.echo(line)
    if failed:
        sys.exit(1)


@alert.command("deliver")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False),
              help="netwatch's state folder (outbox.sqlite).")
@click.option("--once", is_flag=True, help="One delivery pass, then exit.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds between passes over the outbox.")
@click.option("--min-interval", default=300.0, show_default=True,
              type=click.FloatRange(min=0.0),
              help="Seconds between two messages about one session to one address (a more "
                   "severe one is never held).")
@click.option("--max-per-hour", default=12, show_default=True, type=click.IntRange(min=0),
              help="Messages per address and hour at most (0: no limit); more wait.")
@click.option("--max-attempts", default=50, show_default=True, type=click.IntRange(min=1),
              help="Attempts before a message is given up (kept as failed).")
@click.option("--send-deadline", default=30.0, show_default=True,
              type=click.FloatRange(min=1.0),
              help="Seconds one send may take in all (connect, request, answer); a receiver "
                   "still answering then is cut off and retried later.")
def alert_deliver(state_dir: str, once: bool, interval: float, min_interval: float,
                  max_per_hour: int, max_attempts: int, send_deadline: float) -> None:
    """Send what waits in the alert outbox, until SIGTERM or SIGINT (or one pass: --once).

    Failed deliveries are retried with backoff; rate limits hold updates of one session
    back; each address is served on its own, so a slow one holds back no other. Addresses
    are only ever shown masked. Exit code 0.
    """
    import logging
    import signal
    import sqlite3
    import threading
    import time

    from .outbox import Outbox
    from .senders import Senders

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        box = Outbox(state_dir, min_interval_s=min_interval, max_per_hour=max_per_hour,
                     max_attempts=max_attempts)
    except (OSError, ValueError, sqlite3.Error) as e:
        raise click.ClickException(f"cannot use state folder {state_dir}: {e}") from None
    senders = Senders(deadline=send_deadline)
    if not once:
        # Said once the stop signals are handled: a service manager (or a test) knows the
        # worker is up and will stop cleanly.
        click.echo(f"netwatch: alerts: delivering from {state_dir} every {interval:g} s",
                   err=True)
    with box:
        while True:
            report = box.deliver_due(time.time(), senders, stop=stop.is_set)
            if report:
                click.echo(f"netwatch: alerts: {report.summary()}", err=True)
            if once or stop.is_set() or stop.wait(interval):
                break
