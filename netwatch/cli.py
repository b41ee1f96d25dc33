"""The ``netwatch`` command line."""

from __future__ import annotations

import json
import sys
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
def replay(captures: tuple[str, ...], eve_log: str | None, fmt: str, sig_dir: str) -> None:
    """Run the detection pipeline over capture files (pcap or pcapng), in packet time.

    Prints what was found: which device talked to which remote-access tool, when, and how
    it was recognised. Unreadable files are reported on one line each and skipped; the exit
    code is then 2.
    """
    sigs = _signatures(sig_dir)
    try:
        log = EventLog(eve_log)
    except OSError as e:
        raise click.ClickException(f"cannot write event log {eve_log}: {e.strerror}") from None
    pipe = Pipeline(sigs, log)
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
def signatures_list(sig_dir: str, fmt: str) -> None:
    """Show each tool: vendor, roles covered, kinds of evidence, scam prevalence."""
    sigs = _signatures(sig_dir)
    rows: list[dict[str, Any]] = []
    for tool in sorted(sigs.by_tool):
        s = sigs.by_tool[tool]
        rows.append({"tool": tool, "name": s.name, "vendor": s.vendor,
                     "roles": s.roles(), "evidence": s.evidence_kinds(),
                     "scam_prevalence": s.scam_prevalence, "signature": s.ref})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    head = f"{'tool':<12} {'prevalence':<10} {'roles':<40} evidence"
    click.echo(head)
    for r in rows:
        click.echo(f"{r['tool']:<12} {r['scam_prevalence']:<10} "
                   f"{','.join(r['roles']):<40} {','.join(r['evidence'])}")
    click.echo(f"{len(rows)} signatures in {sig_dir}")


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
