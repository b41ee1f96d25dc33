"""The ``netwatch`` command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import __version__
from .eventlog import EventLog
from .flows import MAX_FLOWS, MAX_INSPECTING, Limits
from .pipeline import Pipeline, Result
from .recognisers import load_all
from .report import summary_json, summary_text
from .signatures import DEFAULT_DIR, SignatureError, SignatureSet, load_dir
from .sources.capture import CaptureError, ReadStats

EXIT_INPUT_ERROR = 2
EXIT_NOT_QUEUED = 1  # replay --notify: alerts found but not written to the outbox


def _signatures(path: str) -> SignatureSet:
    try:
        return load_dir(path, load_all())
    except SignatureError as e:
        raise click.ClickException("signature files are invalid:\n" + str(e)) from None


def _loaded_or_exit(load: Any, path: str, unreadable: type[Exception],
                    mistakes: type[Exception]) -> Any:
    """``load(path)``, or the file's problems on standard error and the exit: 2 when it
    cannot be read (bad input), 1 when it has mistakes (a configuration error)."""
    try:
        return load(path)
    except unreadable as e:
        click.echo(f"netwatch: {getattr(e, 'problems', [e])[0]}", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    except mistakes as e:
        for problem in getattr(e, "problems", [e]):
            click.echo(problem, err=True)
        sys.exit(1)


def _household_or_exit(path: str) -> Any:
    """The household file (see ``_loaded_or_exit``)."""
    from .household import HouseholdError, HouseholdUnreadable, load_household

    return _loaded_or_exit(load_household, path, HouseholdUnreadable, HouseholdError)


def _settings_or_exit(path: str) -> Any:
    """The daemon's settings file (see ``_loaded_or_exit``)."""
    from .config import ConfigError, ConfigUnreadable, load_settings

    return _loaded_or_exit(load_settings, path, ConfigUnreadable, ConfigError)


# The other commands, by name: the function in netwatch.commands that makes each. They are
# imported when one of them runs or the command list is shown, never for a replay.
LATER_COMMANDS = {
    "alert": "alert", "bench": "bench", "block": "block", "check-config": "check_config",
    "control": "control", "floods": "floods_cmd", "fuzz": "fuzz_cmd", "run": "run",
    "signatures": "signatures", "uci-config": "uci_config",
}


class Commands(click.Group):
    """``replay`` and, imported on demand, the commands of ``LATER_COMMANDS`` (click's
    lazily loaded subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LATER_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LATER_COMMANDS:
            from . import commands

            cmd: click.Command = getattr(commands, LATER_COMMANDS[cmd_name])
            return cmd
        return super().get_command(ctx, cmd_name)


@click.group(cls=Commands)
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
@click.option("--notify", "notify_dir", metavar="STATE_DIR", type=click.Path(file_okay=False),
              help="Queue each alert for the carers in this state directory's outbox "
                   "(sent by 'netwatch alert deliver'); needs --household.")
@click.option("--control-url", metavar="URL",
              help="The control endpoint as the carers' phones reach it; alerts then carry "
                   "signed 'Block now' / 'allow' links.")
@click.option("--max-flows", type=click.IntRange(min=1), default=None,
              help=f"Flows tracked at once (the flow table's cap) [default: {MAX_FLOWS}].")
@click.option("--max-inspecting", type=click.IntRange(min=1), default=None,
              help="Of these, flows still being inspected (half-open or undecided) "
                   f"[default: {MAX_INSPECTING}].")
def replay(captures: tuple[str, ...], eve_log: str | None, fmt: str, sig_dir: str,
           household_file: str | None, notify_dir: str | None, control_url: str | None,
           max_flows: int | None, max_inspecting: int | None) -> None:
    """Run the detection pipeline over capture files (pcap or pcapng), in packet time.

    Prints what was found: which device talked to which remote-access tool, when, and how
    it was recognised. Unreadable files are reported on one line each and skipped; the exit
    code is then 2. With --notify, a state folder that is read-only or full is said on one
    line; detection, the summary and the event log go on, and the exit code is 1.
    """
    sigs = _signatures(sig_dir)
    household = None
    if household_file is not None:
        household = _household_or_exit(household_file)
        for w in household.warnings:
            click.echo(f"netwatch: warning: {w}", err=True)
    try:
        log = EventLog(eve_log)
    except OSError as e:
        raise click.ClickException(f"cannot write event log {eve_log}: {e.strerror}") from None
    pipe = Pipeline(sigs, log, household=household,
                    limits=Limits(max_flows=max_flows or MAX_FLOWS,
                                  max_inspecting=max_inspecting or MAX_INSPECTING))
    notifier = None
    if notify_dir is not None:
        if household is None:
            raise click.UsageError("--notify needs --household (who are the carers?)")
        from .notify import Notifier

        notifier = Notifier(household, notify_dir, control_url,
                            warn=lambda line: click.echo(f"netwatch: {line}", err=True))
        pipe.on_alert.append(notifier.handle)
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
    unqueued = 0
    if notifier is not None:
        notifier.flush()
        unqueued = notifier.unqueued_count + notifier.dropped
        if unqueued:
            click.echo(f"netwatch: alerts: cannot queue {unqueued} message(s) in {notify_dir}"
                       f" ({notifier.problem}); {notifier.queued} queued", err=True)
        else:
            click.echo(f"netwatch: {notifier.queued} message(s) queued in {notify_dir} for "
                       "'netwatch alert deliver'", err=True)
    log.write(pipe.stats_event())
    log.close()
    out = sys.stderr if eve_log == "-" else sys.stdout
    if fmt == "json":
        click.echo(json.dumps(summary_json(result, captures), indent=2), file=out)
    else:
        click.echo(summary_text(result, captures), file=out, nl=False)
    if failed:
        sys.exit(EXIT_INPUT_ERROR)
    if unqueued:
        sys.exit(EXIT_NOT_QUEUED)
