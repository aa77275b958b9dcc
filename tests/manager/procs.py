"""Process helpers for the manager tests."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from manager.reaper import start_ticks


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def orphan_process(
    agent_path: Path,
    monitor_id: str,
    records: Path,
    *,
    ticks: int | None = None,
    argv: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """A process started as if by a manager that died, with its record."""
    p = subprocess.Popen(
        argv
        or [
            str(agent_path),
            "--monitor-id",
            monitor_id,
            "--monitor-type",
            "CUDA",
            "--target-pid",
            str(os.getpid()),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    if argv is None:
        wait_for(lambda: str(agent_path) in Path(f"/proc/{p.pid}/cmdline").read_text())
    real = start_ticks(Path("/proc"), p.pid)
    assert real is not None
    records.mkdir(parents=True, exist_ok=True, mode=0o700)
    (records / f"{monitor_id}.json").write_text(
        json.dumps(
            {
                "pid": p.pid,
                "start_ticks": real if ticks is None else ticks,
                "agent_path": str(agent_path),
                "monitor_id": monitor_id,
            }
        )
    )
    return p
