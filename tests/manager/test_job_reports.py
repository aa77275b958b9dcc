"""JobReporter without procwatch (no root needed): the watcher's changes become the jobs'
events, a snapshot lists the running jobs, and STOP_JOB signals a real child through its
pidfd, refuses what is not a known job, pid 1 and an account not allowed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from manager.job_reports import JobReporter
from manager.jobs.procfs import ProcessHandle
from manager.jobs.table import ProcessKey, ProcessRecord
from manager.jobs.watch import Change, Watcher
from manager.protected import process_user
from xpucore.job_wire import check_end, check_job, check_snapshot
from xpucore.protocol import CommandError, ErrorCode, StopJob

MACHINE = "m1"


def record(pid: int, ticks: int) -> ProcessRecord:
    rec = ProcessRecord(ProcessKey(MACHINE, pid, ticks), 1, None, "python3", "exec")
    rec.job = {
        "jobId": str(rec.key),
        "nodeId": MACHINE,
        "pid": pid,
        "startTicks": ticks,
        "startTime": 1,
        "jobName": "train.py",
        **rec.status_fields(),
    }
    return rec


@pytest.fixture
def reporter() -> tuple[Watcher, JobReporter, list[dict[str, Any]]]:
    watcher = Watcher(Path("/nonexistent/xputrace-procwatch"), MACHINE)
    sent: list[dict[str, Any]] = []
    return watcher, JobReporter(watcher, MACHINE, sent.append), sent


async def test_changes_become_events_and_snapshots(
    reporter: tuple[Watcher, JobReporter, list[dict[str, Any]]],
) -> None:
    watcher, jobs, sent = reporter
    running, ended = record(100, 5), record(101, 6)
    for rec in (running, ended):
        watcher.table.live[rec.key.pid] = rec
        watcher._emit(Change("job", rec))
    assert [(m["event"], check_job(m["job"], MACHINE)["pid"]) for m in sent] == [
        ("JOB_SEEN", 100),
        ("JOB_SEEN", 101),
    ]
    watcher.table.apply(
        {
            "event": "exit",
            "pid": 101,
            "start_ticks": 6,
            "ppid": 1,
            "comm": "python3",
            "exit_code": 3,
            "time_ns": 10**9,
        }
    )
    watcher._emit(Change("ended", ended))
    end = check_end(sent[-1])
    assert (end.status, end.exit_code, end.reason) == ("exited", 3, "exited with code 3")
    snap, *seen = await jobs.snapshot(settle_s=1.0)
    assert check_snapshot(snap) == [check_snapshot({"jobs": [{"pid": 100, "start_ticks": 5}]})[0]]
    assert [m["job"]["pid"] for m in seen] == [100]


async def test_stop_job_signals_a_real_child_and_refuses_the_rest(
    reporter: tuple[Watcher, JobReporter, list[dict[str, Any]]],
) -> None:
    watcher, jobs, sent = reporter
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, "
        "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)",
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    await child.stdout.readline()
    with ProcessHandle(child.pid) as h:
        ticks = h.stat.start_ticks
    rec = record(child.pid, ticks)
    watcher.table.live[child.pid] = rec
    me = process_user(child.pid)
    assert me is not None

    for cmd, code in (
        (StopJob("r", child.pid, ticks + 1), ErrorCode.TARGET_NOT_FOUND),
        (StopJob("r", child.pid, ticks, 1.0, ("nobody-else",)), ErrorCode.PERMISSION_DENIED),
    ):
        with pytest.raises(CommandError) as e:
            await jobs.stop(cmd)
        assert e.value.code == code and e.value.message.startswith("pid: ")
    watcher.table.live[1] = record(1, 1)
    with pytest.raises(CommandError) as e:
        await jobs.stop(StopJob("r", 1, 1))
    assert e.value.code == ErrorCode.PERMISSION_DENIED

    async def reap() -> None:  # what procwatch would report: its exit
        rc = await child.wait()
        watcher.table.apply(
            {
                "event": "exit",
                "pid": child.pid,
                "start_ticks": ticks,
                "ppid": os.getpid(),
                "comm": "python3",
                "exit_code": 0,
                "signal": -rc,
                "time_ns": 10**9,
            }
        )
        watcher._emit(Change("ended", rec))
        watcher._notify()

    reaper = asyncio.create_task(reap())
    reply = await jobs.stop(StopJob("r", child.pid, ticks, 0.3, (me,)))
    await reaper
    assert (reply["status"], reply["job_status"], reply["signal"]) == (
        "SUCCESS",
        "stopped",
        signal.SIGKILL,
    )
    assert reply["signals_sent"] == ["SIGTERM", "SIGKILL"]  # SIGTERM was ignored
    end = check_end(sent[-1])
    assert (end.status, end.signal, end.reason) == (
        "stopped",
        9,
        "stopped on request (SIGTERM, SIGKILL)",
    )
    again = await jobs.stop(StopJob("r", child.pid, ticks))
    assert (again["job_status"], again["signals_sent"]) == ("killed", [])


async def test_stop_job_ends_a_suspended_job_with_its_sigterm(
    reporter: tuple[Watcher, JobReporter, list[dict[str, Any]]],
) -> None:
    """SIGTERM reaches a stopped process only once it is continued: STOP_JOB continues it."""
    watcher, jobs, _ = reporter
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import time; print('ready', flush=True); time.sleep(600)",
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    await child.stdout.readline()
    with ProcessHandle(child.pid) as h:
        ticks = h.stat.start_ticks
    rec = record(child.pid, ticks)
    watcher.table.live[child.pid] = rec
    os.kill(child.pid, signal.SIGSTOP)
    await asyncio.to_thread(os.waitid, os.P_PID, child.pid, os.WSTOPPED | os.WNOWAIT)

    async def reap() -> None:
        rc = await child.wait()
        watcher.table.apply(
            {
                "event": "exit",
                "pid": child.pid,
                "start_ticks": ticks,
                "ppid": os.getpid(),
                "comm": "python3",
                "exit_code": 0,
                "signal": -rc,
                "time_ns": 10**9,
            }
        )
        watcher._emit(Change("ended", rec))
        watcher._notify()

    reaper = asyncio.create_task(reap())
    reply = await jobs.stop(StopJob("r", child.pid, ticks, 30.0))
    await reaper
    assert (reply["signal"], reply["signals_sent"]) == (signal.SIGTERM, ["SIGTERM"])
