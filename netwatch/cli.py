"""The ``netwatch`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import click

from . import __version__
from .eventlog import EventLog
from .pipeline import Pipeline, Result
from .recognisers import load_all
from .report import summary_json, summary_text
from .signatures import DEFAULT_DIR, SignatureError, SignatureSet, load_dir, load_file
from .sources.capture import CaptureError, ReadStats

EXIT_INPUT_ERROR = 2


def _signatures(path: str) -> SignatureSet:
    try:
        return load_dir(path, load_all())
    except SignatureError as e:
        raise click.ClickException("signature files are invalid:\n" + str(e)) from None


@click.group()
@click.version_option(__version__, prog_name="netwatch")
def main() -> None:
    """netwatch: notice remote-access sessions (RDP, VNC, TeamViewer, AnyDesk…) on a
    home network, so a carer hears of a remote-access scam while it happens."""


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--eve-log", "eve_log", metavar="PATH|-",
              help="Write the EVE-style JSON event log here ('-' for standard output).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Form of the summary printed at the end.")
@click.option("--signatures", "sig_dir", default=DEFAULT_DIR, show_default=False,
              type=click.Path(file_okay=False), help="Folder of signature files.")
@click.option("--household", "household_file", type=click.Path(dir_okay=False),
              help="The household file: devices, help windows, trust, banking; with it the "
                   "policy writes alert events and the summary shows them.")
def replay(captures: tuple[str, ...], eve_log: str | None, fmt: str, sig_dir: str,
           household_file: str | None) -> None:
    """Run the detection pipeline over capture files (pcap or pcapng), in packet time.

    Prints what was found: which device talked to which remote-access tool, when, and how
    it was recognised. Unreadable files are reported on one line each and skipped; the exit
    code is then 2.
    """
    sigs = _signatures(sig_dir)
    household = None
    if household_file is not None:
        from .household import HouseholdError, HouseholdUnreadable, load_household

        try:
            household = load_household(household_file)
        except HouseholdError as e:
            for problem in e.problems:
                click.echo(problem, err=True)
            # An unreadable file is bad input (2); a file with mistakes is a config error (1),
            # as with check-config.
            sys.exit(EXIT_INPUT_ERROR if isinstance(e, HouseholdUnreadable) else 1)
        for w in household.warnings:
            click.echo(f"netwatch: warning: {w}", err=True)
    try:
        log = EventLog(eve_log)
    except OSError as e:
        raise click.ClickException(f"cannot write event log {eve_log}: {e.strerror}") from None
    pipe = Pipeline(sigs, log, household=household)
    failed = 0
    warnings: list[str] = []
    for path in captures:
        st = ReadStats()
        try:
            pipe.feed_file(path, st)
        except CaptureError as e:
            failed += 1
            pipe.c.files_unreadable += 1
            click.echo(f"netwatch: {path}: {e}", err=True)
            continue
        if st.truncated:
            msg = f"netwatch: warning: {path}: truncated ({st.truncated_detail}); " \
                  f"the {st.packets} packets before it were processed"
            warnings.append(msg)
            click.echo(msg, err=True)
    result: Result = pipe.finish()
    log.write(pipe.stats_event())
    log.close()
    out = sys.stderr if eve_log == "-" else sys.stdout
    if fmt == "json":
        click.echo(json.dumps(summary_json(result, captures), indent=2), file=out)
    else:
        click.echo(summary_text(result, captures), file=out, nl=False)
    if failed:
        sys.exit(EXIT_INPUT_ERROR)


@main.group()
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


@main.command()
@click.option("--packets", default=1_000_000, show_default=True,
              help="Size of the generated home mix.")
@click.option("--seed", default=1, show_default=True)
@click.option("--pcap", type=click.Path(exists=True, dir_okay=False),
              help="Benchmark this capture instead of generating the home mix.")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False),
              help="Its truth file (FLOWS.tsv columns), to check the sessions were found.")
@click.option("--runs", default=3, show_default=True, help="Paired runs (medians reported).")
@click.option("--workdir", default=os.path.join(tempfile.gettempdir(), "netwatch-bench"),
              show_default=True, help="Where the generated mix is kept between calls.")
@click.option("--no-peer", is_flag=True, help="Do not run ndpiReader.")
@click.option("--no-stages", is_flag=True, help="Skip the per-stage and memory measurements.")
@click.option("--no-nflog", is_flag=True, help="Skip the nflog-mode share.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the figures as JSON.")
@click.option("--record", type=click.Path(dir_okay=False),
              help="Write the measured speed ratio to this file (for --guard).")
@click.option("--guard", "guard_file", type=click.Path(exists=True, dir_okay=False),
              help="Exit 1 if the speed ratio is below half the one recorded in this file.")
def bench(packets: int, seed: int, pcap: str | None, truth: str | None, runs: int,
          workdir: str, no_peer: bool, no_stages: bool, no_nflog: bool,
          json_out: str | None, record: str | None, guard_file: str | None) -> None:
    """Time the replay pipeline on the home mix against ndpiReader, in one call."""
    from pathlib import Path

    from . import bench as b

    if pcap is None:
        try:
            mix, mix_truth = b.make_mix(packets, seed, Path(workdir))
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            click.echo(f"netwatch bench: {e}", err=True)
            sys.exit(EXIT_INPUT_ERROR)
    else:
        mix, mix_truth = Path(pcap), Path(truth) if truth else None
    report = b.run(mix, mix_truth, runs=runs, peer=not no_peer, stages=not no_stages,
                   nflog=not no_nflog)
    click.echo(b.render(report), nl=False)
    if json_out:
        Path(json_out).write_text(json.dumps(report.as_dict(), indent=2) + "\n",
                                  encoding="utf-8")
    if record:
        Path(record).write_text(json.dumps({
            "speed_ratio": round(report.speed_ratio, 3), "packets": report.packets or packets,
            "peer": "ndpiReader", "runs": runs,
            "note": "netwatch replay packets/s over ndpiReader's, median of paired runs",
        }, indent=2) + "\n", encoding="utf-8")
    failed = bool(report.sessions and report.sessions["found"] < report.sessions["embedded"])
    if failed:
        click.echo("not every embedded session was found", err=True)
    if guard_file:
        ok, msg = b.guard(report, Path(guard_file))
        click.echo(msg)
        failed = failed or not ok
    if failed:
        sys.exit(1)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=True))
@click.option("--now", "now_text", metavar="ISO8601",
              help="Show the help windows that come after this time (default: now). "
                   "Without an offset it is read in the household's time zone.")
@click.option("--fetch", is_flag=True,
              help="First download the calendars given by ics_url (10 s each) into cache "
                   "files beside FILE.")
def check_config(file: str, now_text: str | None, fetch: bool) -> None:
    """Check a household file and show what netwatch understood from it.

    Prints the people, carers (notification addresses masked), devices, trusted rules,
    banking lists, quiet hours and the next five help windows. Problems are printed one per
    line as FILE:LINE: field: message and the exit code is 1; a file that cannot be read
    gives exit code 2.
    """
    from datetime import UTC, datetime

    from .household import (
        HouseholdError,
        HouseholdUnreadable,
        describe,
        fetch_calendars,
        load_household,
    )

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
    try:
        household = load_household(file)
    except HouseholdUnreadable as e:
        click.echo(f"netwatch: {e.problems[0]}", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    except HouseholdError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    for w in household.warnings:
        click.echo(f"warning: {w}", err=True)
    if now.tzinfo is None:
        now = now.replace(tzinfo=household.tz)
    click.echo(describe(household, now), nl=False)
