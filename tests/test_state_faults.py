"""A state directory that is read-only or full does not stop ``replay --notify``: detection,
the summary and the event log go on, the alert path says once, on one line, that it cannot
queue, and it queues again (the held messages first) when space returns.

Read-only and full directories are tmpfs mounts made inside a mount namespace of the
test's own (``unshare -m``; root only: as root, chmod would not stop a write), bounded by
``timeout`` and gone when the namespace ends.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_alert_flow import DEMO, household

from netwatch.cli import main

LIMIT_S = 60


def _namespaces_usable() -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs in a mount namespace needs root (as another user a " \
               "read-only directory is tested by chmod elsewhere)"
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(["timeout", "10", "unshare", "-m", "true"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return f"the kernel refuses a mount namespace: {probe.stderr.decode().strip()}"
    return None


needs_mount_namespace = pytest.mark.skipif(_namespaces_usable() is not None,
                                           reason=str(_namespaces_usable()))


def _in_namespace(mount: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` run after the shell lines ``mount`` inside a new mount namespace."""
    script = mount + '\nexec "$@"'
    return subprocess.run(["timeout", str(LIMIT_S), "unshare", "-m", "sh", "-ec", script, "sh",
                           *command], capture_output=True, text=True, check=False)


def _replay(tmp_path: Path, state: Path) -> list[str]:
    house = household(tmp_path, "ntfy://127.0.0.1:9/maria")
    return [sys.executable, "-m", "netwatch", "replay", str(DEMO), "--household", str(house),
            "--notify", str(state), "--eve-log", str(tmp_path / "eve.json")]


def _check_replay_went_on(tmp_path: Path, res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Alerts for the household" in res.stdout  # the summary is there
    events = [json.loads(ln) for ln in (tmp_path / "eve.json").read_text().splitlines()]
    assert any(e["event_type"] == "alert" for e in events)
    assert events[-1]["event_type"] == "stats"  # written to the end
    problems = [ln for ln in res.stderr.splitlines() if "cannot queue" in ln]
    assert len(problems) == 2, res.stderr  # when it starts, and the count at the end
    assert "netwatch alert deliver" not in res.stderr  # it does not claim to have queued


@needs_mount_namespace
def test_replay_notify_goes_on_with_a_read_only_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    res = _in_namespace(f"mount -t tmpfs -o ro,size=64k tmpfs {state}", _replay(tmp_path, state))
    _check_replay_went_on(tmp_path, res)
    assert "read-only file system" in res.stderr, res.stderr


@needs_mount_namespace
def test_replay_notify_goes_on_with_a_full_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    mount = (f"mount -t tmpfs -o size=64k tmpfs {state}\n"
             f"dd if=/dev/zero of={state}/fill bs=4k 2>/dev/null || true")
    res = _in_namespace(mount, _replay(tmp_path, state))
    _check_replay_went_on(tmp_path, res)
    assert "no space left" in res.stderr, res.stderr


RECOVERY = """
import json, os, sys
sys.path.insert(0, sys.argv[3])
from test_alert_flow import household
from netwatch.household import load_household
from netwatch.notify import Notifier
from pathlib import Path

state, tmp = Path(sys.argv[1]), Path(sys.argv[2])
said = []
n = Notifier(load_household(str(household(tmp, "ntfy://127.0.0.1:9/maria"))), state,
             warn=said.append)

def alert(i):
    return {"timestamp": f"2024-03-05T14:0{i}:00+00:00", "event_type": "alert",
            "src_ip": "192.168.1.23",
            "alert": {"id": f"1-{i}", "level": "critical", "severity": 1, "session_id": i,
                      "notify": True,
                      "actions": [], "state": "active",
                      "title_code": {"code": "critical", "params": {
                          "tool": "AnyDesk", "who": {"person": "Maria", "device": "laptop"}}},
                      "reason_codes": [{"code": "relayed", "params": {"tool": "AnyDesk"}}]}}

with open(state / "fill", "wb") as fh:  # the disk fills up
    try:
        while True:
            fh.write(b"x" * 65536)
            fh.flush()
    except OSError:
        pass
full = [n.handle(alert(1)), n.handle(alert(2))]
os.remove(state / "fill")  # space returns
back = n.handle(alert(3))
rows = [(r.key, r.status) for r in n.outbox.rows()]
print(json.dumps({"full": full, "back": back, "rows": rows, "said": said,
                  "unqueued": n.unqueued_count}))
"""


@needs_mount_namespace
def test_the_alert_path_queues_again_when_space_returns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    tests = Path(__file__).resolve().parent
    res = _in_namespace(f"mount -t tmpfs -o size=256k tmpfs {state}",
                        [sys.executable, "-c", RECOVERY, str(state), str(tmp_path), str(tests)])
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["full"] == [[], []] and out["unqueued"] == 0
    # The two held alerts went in first, then the new one: one row each (one carer address).
    assert [k for k, _s in out["rows"]] == ["1:Pieter", "2:Pieter", "3:Pieter"]
    assert len(out["back"]) == 3
    assert len(out["said"]) == 2 and "cannot queue" in out["said"][0]
    assert "queueing again" in out["said"][1]


def test_replay_notify_makes_a_private_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    house = household(tmp_path, "ntfy://127.0.0.1:9/maria")
    res = CliRunner().invoke(main, ["replay", str(DEMO), "--household", str(house),
                                    "--notify", str(state)])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
