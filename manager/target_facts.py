"""What this machine says of a START's target: the facts manager/agent_args.py builds the
agent's command line from. It reads /proc, the file system and the target's CPython, and
decides nothing; call it on a command ``check_command`` passed (so a library's name was
checked before its file is looked at)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from manager.agent_args import Library, Process, TargetFacts, needs_hooks, needs_python
from manager.protected import platform_process, process_user
from manager.python.hooks import PythonHooks, find_hooks
from manager.python.target import PythonTarget, UnsupportedPython, find_target
from xpucore.protocol import StartMonitor

__all__ = ["read_facts", "read_library", "read_process"]


def read_process(
    pid: int,
    proc_root: Path = Path("/proc"),
    *,
    agent_path: Path | None = None,
    own: Iterable[int] = (),
) -> Process:
    """Whether pid is there, the platform's (own: the agents the supervisor runs), whose,
    and its task name."""
    d = proc_root / str(pid)
    if not d.is_dir():
        return Process(exists=False)
    platform = platform_process(pid, proc_root, agent_path=agent_path, own=own)
    user = process_user(pid, proc_root)
    try:
        comm: str | None = (d / "comm").read_text().rstrip("\n")
    except OSError:
        comm = None
    return Process(exists=True, platform=platform, user=user, comm=comm)


def read_library(path: str) -> Library:
    """path followed to its real path, and what is there."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return Library(real, "missing")
    except OSError:
        return Library(real, "other")
    return Library(real, "file" if stat.S_ISREG(st.st_mode) else "other")


def _python(pid: int, proc_root: Path) -> PythonTarget | UnsupportedPython:
    try:
        return find_target(pid, proc_root)
    except UnsupportedPython as e:
        return e


def _hooks(t: PythonTarget, proc_root: Path) -> PythonHooks | UnsupportedPython:
    try:
        return find_hooks(t, proc_root)
    except UnsupportedPython as e:
        return e


def read_facts(
    cmd: StartMonitor,
    proc_root: Path = Path("/proc"),
    *,
    agent_path: Path | None = None,
    own: Iterable[int] = (),
) -> TargetFacts:
    """Each fact the command needs. The memory of a process that is not there or is the
    platform's is never read (agent_args refuses the command before it would need it)."""
    t = cmd.target
    process = (
        None if t.pid is None else read_process(t.pid, proc_root, agent_path=agent_path, own=own)
    )
    library = None if t.library_path is None else read_library(t.library_path)
    python: PythonTarget | UnsupportedPython | None = None
    hooks: PythonHooks | UnsupportedPython | None = None
    if (
        needs_python(cmd)
        and t.pid is not None
        and process is not None
        and process.exists
        and not process.platform
    ):
        python = _python(t.pid, proc_root)
        if needs_hooks(cmd) and isinstance(python, PythonTarget):
            hooks = _hooks(python, proc_root)
    return TargetFacts(process=process, library=library, python=python, hooks=hooks)
