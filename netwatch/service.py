"""How the daemon lives with the system that runs it: its log lines, systemd's notify
socket, and giving up root after the capture is open.

No systemd library is needed: sd_notify is one datagram on an AF_UNIX socket
(sd_notify(3), "the protocol"), and the capabilities are set with prctl(2) and capset(2)
through ctypes (layouts from linux/capability.h and linux/prctl.h).
"""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
import socket
import struct
import sys
from collections.abc import Iterable

# ---------------------------------------------------------------- log lines

# syslog(3) priorities by logging level; journald reads a "<N>" prefix on each line of a
# service's standard error as the line's priority (sd-daemon(3)).
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
              logging.CRITICAL: 2}


class OneLine(logging.Formatter):
    """Each message on one line (a reader of journald or OpenWrt's logread sees one entry
    per message); under systemd (``JOURNAL_STREAM`` set) with a ``<N>`` priority prefix and
    no time (the journal keeps its own), elsewhere with the time."""

    def __init__(self, journal: bool):
        super().__init__("%(message)s" if journal else
                         "%(asctime)s netwatch %(levelname)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\r", "").replace("\n", " | ")
        if self.journal:
            return f"<{PRIORITIES.get(record.levelno, 6)}>{text}"
        return text


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# ---------------------------------------------------------------- sd_notify


class Notify:
    """systemd's notify socket (``NOTIFY_SOCKET``), or nothing when there is none.

    ``READY=1`` once capturing, ``STATUS=…`` now and then, ``WATCHDOG=1`` every half
    ``WATCHDOG_USEC`` (systemd.service(5): "WatchdogSec=")."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):
            self.address = b"\0" + path[1:].encode()  # an abstract socket
        elif path.startswith("/"):
            self.address = path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 2e6 if usec.isdigit() and int(usec) and mine else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8"), self.address)
        except OSError as e:
            logging.getLogger("netwatch.service").warning("sd_notify: %s", e)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# ---------------------------------------------------------------- privileges

PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "armv7l": 185, "armv6l": 185, "i686": 185,
              "mips": 4205, "mips64": 5123, "riscv64": 91}


class PrivilegeError(Exception):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _capset(caps: Iterable[int]) -> None:
    """Permitted and effective sets to exactly ``caps`` (and inheritable too, so ambient
    ones may be raised). capset(2) with ``struct __user_cap_header_struct`` (u32 version,
    int pid) and two ``struct __user_cap_data_struct`` (u32 effective, permitted,
    inheritable) for version 3's 64 bits."""
    mask = 0
    for c in caps:
        mask |= 1 << c
    lo, hi = mask & 0xFFFFFFFF, mask >> 32
    header = ctypes.create_string_buffer(struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(struct.pack("=6I", lo, lo, lo, hi, hi, hi))
    libc = _libc()
    capset = getattr(libc, "capset", None)
    if capset is not None:
        rc = capset(header, data)
    else:
        nr = SYS_CAPSET.get(os.uname().machine)
        if nr is None:
            raise PrivilegeError(f"capset: unknown system call number on "
                                 f"{os.uname().machine}")
        rc = libc.syscall(nr, header, data)
    if rc != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"capset: {os.strerror(err)}")


def drop_privileges(user: str, keep: Iterable[int]) -> None:
    """From root to ``user`` (its group, no other groups), keeping only the capabilities
    ``keep``. Must run before any thread starts: capset acts on the calling thread, and
    threads started later inherit from it."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"no user named {user!r}") from None
    keep = list(keep)
    libc = _libc()
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"prctl(PR_SET_KEEPCAPS): {os.strerror(ctypes.get_errno())}")
    try:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except OSError as e:
        raise PrivilegeError(f"cannot become {user}: {e.strerror or e}") from None
    _capset(keep)
    libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    # Ambient capabilities survive an exec (nft, run for the nflog source's rules).
    for cap in keep:
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)


def chown_tree(path: str, user: str) -> None:
    """Give ``path`` (a file or a folder and what it holds) to ``user`` and its group."""
    pw = pwd.getpwnam(user)
    group = grp.getgrgid(pw.pw_gid).gr_gid
    if not os.path.exists(path):
        return
    os.chown(path, pw.pw_uid, group)
    if os.path.isdir(path):
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(folder, name), pw.pw_uid, group, follow_symlinks=False)


def capabilities(pid: int | str = "self") -> tuple[int, int]:
    """(effective, permitted) capability masks of a process, from /proc/PID/status."""
    eff = prm = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
            elif line.startswith("CapPrm:"):
                prm = int(line.split()[1], 16)
    return eff, prm
