"""Real remote-desktop programs (and look-alikes that must not be detected) in a Lab.

The same programs and set-up as tests/pcaps/recorded/record.sh: x11vnc serving an Xvfb
display to TigerVNC's vncviewer, xrdp + xorgxrdp with a throwaway user logged in to by
FreeRDP's xfreerdp, OpenSSH's sshd and ssh, Python's http.server. Every one runs under
``timeout`` inside the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from netns import Lab, LabError, Proc

VNC_PORT = 5900
VNC_PASSWORD = "netwatch"  # crosses the wire only as the DES challenge's answer
RDP_PORT = 3389
RDP_USER = "nwtrdp"
RDP_PASSWORD = "nwt-rdp-Pass1"
XRDP_LOCK = "/run/lock/netwatch-xrdp.lock"  # xrdp's pid files in /run/xrdp are machine-wide
# Pointer movements a person at the viewer makes: the input direction of the session.
MOUSE_STEPS = [(300, 300), (420, 330), (520, 380), (600, 400), (480, 260), (350, 350)]

PROGRAMS = {
    "vnc": ("Xvfb", "x11vnc", "vncviewer", "xdotool", "xclock"),
    "rdp": ("xrdp", "xrdp-sesman", "xfreerdp", "Xvfb", "xdotool", "openssl", "useradd"),
    "ssh": ("sshd", "ssh", "ssh-keygen"),
}


def missing(kind: str) -> list[str]:
    """The programs of ``kind`` this machine lacks (``bash run.sh test`` installs them)."""
    found = []
    for prog in PROGRAMS[kind]:
        if shutil.which(prog) is None and not Path("/usr/sbin", prog).exists():
            found.append(prog)
    return found


def move_mouse(lab: Lab, ns: str, display: int, seconds: float) -> None:
    """Pointer movements over the viewer's window for about ``seconds``."""
    steps: list[str] = []
    n = max(1, int(seconds / 0.25))
    for i in range(n):
        x, y = MOUSE_STEPS[i % len(MOUSE_STEPS)]
        steps += ["mousemove", str(x), str(y), "sleep", "0.25"]
    lab.run(ns, ["xdotool", *steps], timeout=seconds + 10, env={"DISPLAY": f":{display}"})


@dataclass
class VncServer:
    """x11vnc on an Xvfb desktop with a ticking clock, serving any number of viewers."""

    lab: Lab
    ns: str
    ip: str
    lifetime: float = 300
    display: int = 0
    proc: Proc | None = None

    def start(self) -> VncServer:
        work = self.lab.workdir
        subprocess.run(["x11vnc", "-storepasswd", VNC_PASSWORD, str(work / "vncpasswd")],
                       capture_output=True, timeout=20, check=True)
        self.display = self.lab.xvfb(self.ns, "1024x768x24", self.lifetime)
        env = {"DISPLAY": f":{self.display}"}
        self.lab.start(self.ns, f"xclock-{self.ns}", ["xclock", "-update", "1", "-geometry",
                                           "300x300+50+50"], self.lifetime, env)
        self.proc = self.lab.start(self.ns, f"x11vnc-{self.ns}", [
            "x11vnc", "-display", f":{self.display}", "-rfbport", str(VNC_PORT),
            "-listen", self.ip, "-rfbauth", str(work / "vncpasswd"), "-forever", "-shared",
            "-noxdamage", "-nolookup", "-no6", "-quiet"], self.lifetime)
        self.lab.wait_port(self.ns, VNC_PORT, self.proc, ip=self.ip)
        return self


@dataclass
class Viewer:
    """A remote-desktop viewer on an Xvfb of its own, whose sessions are driven by a
    person moving the mouse."""

    lab: Lab
    ns: str
    display: int = 0
    # Seconds from starting the viewer to a desktop worth moving the mouse over.
    settle_s: float = 1.0

    def start(self) -> Viewer:
        self.display = self.lab.xvfb(self.ns, "1280x1024x24", 600)
        return self

    def command(self, server_ip: str) -> list[str]:
        raise NotImplementedError

    def open(self, server_ip: str, name: str, lifetime: float = 60) -> Proc:
        """Connect and stay connected (until the Proc is stopped, or ``lifetime``)."""
        home = self.lab.workdir / f"{type(self).__name__.lower()}-home"
        home.mkdir(exist_ok=True)
        return self.lab.start(self.ns, name, self.command(server_ip), lifetime,
                              {"DISPLAY": f":{self.display}", "HOME": str(home)})

    def session(self, server_ip: str, seconds: float, name: str | None = None,
                ready: Callable[[], bool] | None = None) -> Proc:
        """Connect, move the mouse for ``seconds``, disconnect. ``ready``: true once the
        server shows a desktop (else ``settle_s`` is waited)."""
        viewer = self.open(server_ip, name or self.command(server_ip)[0], seconds + 60)
        if ready is not None:
            self.lab.wait_for("the remote desktop", ready, 40, viewer)
        time.sleep(self.settle_s)
        move_mouse(self.lab, self.ns, self.display, seconds)
        viewer.stop()
        return viewer


@dataclass
class VncViewer(Viewer):
    """TigerVNC's vncviewer."""

    def command(self, server_ip: str) -> list[str]:
        return ["vncviewer", "-passwd", str(self.lab.workdir / "vncpasswd"), "-Shared=1",
                f"{server_ip}::{VNC_PORT}"]


@dataclass
class RdpServer:
    """xrdp + xrdp-sesman with private configs, a throwaway user whose session shows a
    clock, and a certificate of its own; holds the machine-wide xrdp lock while it lives."""

    lab: Lab
    ns: str
    ip: str
    lifetime: float = 300
    lock: IO[str] | None = None
    user_made: bool = False
    procs: list[Proc] = field(default_factory=list)

    def start(self) -> RdpServer:
        work = self.lab.workdir
        self.lock = open(XRDP_LOCK, "a")  # held until stop()
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        stop_system_xrdp()
        if subprocess.run(["id", RDP_USER], capture_output=True).returncode == 0:
            subprocess.run(["userdel", RDP_USER], capture_output=True, timeout=20)
        home = work / "rdphome"
        home.mkdir(exist_ok=True)
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", RDP_USER],
                       check=True, capture_output=True, timeout=20)
        self.user_made = True
        subprocess.run(["chpasswd"], input=f"{RDP_USER}:{RDP_PASSWORD}\n", text=True,
                       check=True, capture_output=True, timeout=20)
        (home / "startwm.sh").write_text(
            "#!/bin/sh\nxsetroot -solid '#225588'\n"
            f"exec timeout {int(self.lifetime)} xclock -update 1 -geometry 200x200+100+100\n")
        (home / "startwm.sh").chmod(0o755)
        subprocess.run(["chown", "-R", f"{RDP_USER}:", str(home)], check=True, timeout=20)
        os.chmod(work, 0o755)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=household-pc", "-keyout", str(work / "rdp-key.pem"),
                        "-out", str(work / "rdp-cert.pem")],
                       check=True, capture_output=True, timeout=60)
        session_display = self.lab.free_display()
        _edit_ini(Path("/etc/xrdp/xrdp.ini"), work / "xrdp.ini", {
            "certificate": str(work / "rdp-cert.pem"), "key_file": str(work / "rdp-key.pem"),
            "LogFile": str(work / "xrdp.log"), "EnableSyslog": "false",
            "port": str(RDP_PORT)}, first_only=frozenset({"port"}))
        _edit_ini(Path("/etc/xrdp/sesman.ini"), work / "sesman.ini", {
            "LogFile": str(work / "sesman.log"), "EnableSyslog": "false",
            "KillDisconnected": "true", "X11DisplayOffset": str(session_display)})
        Path("/run/xrdp/sockdir").mkdir(parents=True, exist_ok=True)
        os.chmod("/run/xrdp/sockdir", 0o3777)
        sesman = self.lab.start(self.ns, "xrdp-sesman", [
            "xrdp-sesman", "--nodaemon", "--config", str(work / "sesman.ini")], self.lifetime)
        self.procs.append(sesman)
        self.lab.wait_port(self.ns, 3350, sesman)
        xrdp = self.lab.start(self.ns, "xrdp", [
            "xrdp", "--nodaemon", "--config", str(work / "xrdp.ini")], self.lifetime)
        self.procs.append(xrdp)
        self.lab.wait_port(self.ns, RDP_PORT, xrdp)
        return self

    def logins(self) -> int:
        """Sessions xrdp has connected to their desktop so far (its log says so)."""
        try:
            return (self.lab.workdir / "xrdp.log").read_text(errors="replace").count(
                "connected ok")
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        # sesman's session (Xorg, the window manager) runs as the user in our namespace
        subprocess.run(["pkill", "-KILL", "-u", RDP_USER], capture_output=True, timeout=10)
        if self.user_made:
            subprocess.run(["userdel", RDP_USER], capture_output=True, timeout=20)
            self.user_made = False
        for f in ("/run/xrdp/xrdp.pid", "/run/xrdp/xrdp-sesman.pid"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def _edit_ini(src: Path, dst: Path, values: dict[str, str], first_only: frozenset[str] = frozenset()
              ) -> None:
    """A private copy of one of xrdp's ini files with ``values`` set where the key is."""
    done: set[str] = set()
    out = []
    for line in src.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and key in values and not (key in first_only and key in done):
            line = f"{key}={values[key]}"
            done.add(key)
        out.append(line)
    dst.write_text("\n".join(out) + "\n")


def stop_system_xrdp() -> None:
    """An xrdp the package's postinst started on a machine without systemd shares
    /run/xrdp's pid files with ours: stop it (on a systemd machine, refuse and say how)."""
    for pidfile in ("/run/xrdp/xrdp.pid", "/run/xrdp/xrdp-sesman.pid"):
        p = Path(pidfile)
        if not p.exists():
            continue
        try:
            pid = int(p.read_text().strip() or 0)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            p.unlink(missing_ok=True)
            continue
        if Path("/run/systemd/system").is_dir():
            raise LabError(f"the system's xrdp is running (pid {pid}); stop it with "
                           "'systemctl stop xrdp xrdp-sesman' before the live tests")
        subprocess.run(["service", "xrdp", "stop"], capture_output=True, timeout=30)
        if p.exists():
            raise LabError(f"the system's xrdp (pid {pid}) did not stop")


@dataclass
class RdpClient(Viewer):
    """FreeRDP's xfreerdp, logging in as the throwaway user (xrdp's login and session
    start take a few seconds, sometimes ten: wait for RdpServer.logins)."""

    def command(self, server_ip: str) -> list[str]:
        return ["xfreerdp", f"/v:{server_ip}:{RDP_PORT}", f"/u:{RDP_USER}",
                f"/p:{RDP_PASSWORD}", "/cert:ignore", "/client-hostname:helpdesk",
                "/size:800x600", "/bpp:16", "-grab-keyboard", "/log-level:WARN"]


def ssh_login(lab: Lab, server_ns: str, server_ip: str, client_ns: str,
              port: int = RDP_PORT) -> subprocess.CompletedProcess[str]:
    """OpenSSH's sshd on ``port`` and a real ssh client logging in with a key and running
    ``true``. Returns the client's result."""
    work = lab.workdir / "ssh"
    work.mkdir(exist_ok=True)
    for name in ("hostkey", "userkey"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)],
                       check=True, capture_output=True, timeout=20)
    (work / "authorized_keys").write_text((work / "userkey.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    sshd = lab.start(server_ns, f"sshd{port}", [
        shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null",
        "-h", str(work / "hostkey"), "-o", f"Port={port}", "-o", f"ListenAddress={server_ip}",
        "-o", f"AuthorizedKeysFile={work / 'authorized_keys'}", "-o", "StrictModes=no",
        "-o", "PermitRootLogin=prohibit-password", "-o", "UsePAM=no",
        "-o", "PidFile=none"], 60)
    lab.wait_port(server_ns, port, sshd, ip=server_ip)
    res = lab.run(client_ns, [
        "ssh", "-i", str(work / "userkey"), "-p", str(port), "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=10", f"root@{server_ip}", "true"], timeout=30)
    sshd.stop()
    return res


def http_get(lab: Lab, server_ns: str, server_ip: str, client_ns: str,
             port: int = VNC_PORT) -> subprocess.CompletedProcess[str]:
    """Python's http.server on ``port`` and one GET of its directory listing."""
    root = lab.workdir / "www"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text("<p>not a remote desktop</p>\n")
    server = lab.start(server_ns, f"http{port}", [
        "python3", "-m", "http.server", str(port), "--bind", server_ip,
        "--directory", str(root)], 60)
    lab.wait_port(server_ns, port, server, ip=server_ip)
    res = lab.run(client_ns, ["python3", "-c",
                              "import sys, urllib.request as u; "
                              f"sys.stdout.write(u.urlopen('http://{server_ip}:{port}/', "
                              "timeout=10).read().decode())"], timeout=30)
    server.stop()
    return res


__all__ = ["LabError", "RdpClient", "RdpServer", "VncServer", "VncViewer", "http_get",
           "missing", "ssh_login"]
