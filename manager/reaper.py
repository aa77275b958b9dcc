"""Agent records, and reaping the agents a previous manager left running.

From spawn to exit each agent has a record ``<records>/<monitor_id>.json``: its pid, its start
time in clock ticks (field 22 of ``/proc/<pid>/stat``), the agent path and the monitor id.
A starting manager ends every recorded agent that still runs: it opens a pidfd, checks that
the process has the recorded start time and an agent command line for that monitor (so a
reused pid is never signalled), sends SIGTERM, waits, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import signal
import time
from pathlib import Path

from manager import keys

__all__ = ["reap_orphans", "start_ticks", "write_record"]

log = logging.getLogger(__name__)


def start_ticks(proc_root: Path, pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot)."""
    try:
        data = (proc_root / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])  # fields 3.. follow the comm; 22 is index 19 here
    except (IndexError, ValueError):
        return None


def _cmdline(proc_root: Path, pid: int) -> list[str]:
    try:
        raw = (proc_root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _is_agent(argv: list[str], agent_path: str, monitor_id: str) -> bool:
    """argv runs agent_path (itself, under setpriv, or as a script's interpreter argument)
    for monitor_id."""
    if agent_path not in argv:
        return False
    return any(a == "--monitor-id" and b == monitor_id for a, b in itertools.pairwise(argv))


def _wait_pidfds(fds: dict[int, int], deadline: float) -> set[int]:
    """Waits until each pidfd (pid → fd) is readable (its process exited) or the deadline;
    returns the pids still alive."""
    alive = dict(fds)
    poller = select.poll()
    for fd in alive.values():
        poller.register(fd, select.POLLIN)
    by_fd = {fd: pid for pid, fd in alive.items()}
    while alive:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            alive.pop(by_fd[fd], None)
    return set(alive)


def reap_orphans(
    records: Path,
    proc_root: Path = Path("/proc"),
    term_timeout_s: float = 20.0,
    kill_timeout_s: float = 5.0,
) -> list[int]:
    """Ends every agent a previous manager recorded in records/ that still runs; removes the
    records. Returns the pids that were signalled. Only a process whose start time and
    command line match its record is signalled, through a pidfd (no pid-reuse race)."""
    fds: dict[int, int] = {}
    signalled: list[int] = []
    try:
        for path in sorted(records.glob("*.json")):
            try:
                rec = json.loads(path.read_text())
                pid, ticks = int(rec["pid"]), int(rec["start_ticks"])
                agent, monitor_id = str(rec["agent_path"]), str(rec["monitor_id"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("dropping unreadable agent record %s", path)
                path.unlink(missing_ok=True)
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
                continue
            if start_ticks(proc_root, pid) != ticks or not _is_agent(
                _cmdline(proc_root, pid), agent, monitor_id
            ):
                os.close(fd)  # the pid now belongs to another process: leave it alone
                path.unlink(missing_ok=True)
                continue
            log.warning(
                "stopping agent pid %d (monitor %s) left by a previous manager", pid, monitor_id
            )
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGTERM)
            fds[pid] = fd
            signalled.append(pid)
            path.unlink(missing_ok=True)
        alive = _wait_pidfds(fds, time.monotonic() + term_timeout_s)
        for pid in alive:
            log.warning("agent pid %d ignored SIGTERM for %.0fs: SIGKILL", pid, term_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fds[pid], signal.SIGKILL)
        _wait_pidfds({p: fds[p] for p in alive}, time.monotonic() + kill_timeout_s)
    finally:
        for fd in fds.values():
            os.close(fd)
    return signalled


def write_record(
    records: Path,
    monitor_id: str,
    pid: int,
    agent: str,
    start_time: str | None,
    proc_root: Path = Path("/proc"),
) -> Path:
    """Records a just-spawned agent (0600); returns the record's path."""
    ticks = start_ticks(proc_root, pid)
    path = records / f"{monitor_id}.json"
    keys.write_private(
        path,
        json.dumps(
            {
                "pid": pid,
                "start_ticks": ticks if ticks is not None else -1,
                "agent_path": agent,
                "monitor_id": monitor_id,
                "start_time": start_time,
            }
        ),
    )
    return path
