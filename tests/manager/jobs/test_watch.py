"""Discovery on the real kernel: procwatch's events reach the table within a second."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from manager.jobs.procfs import ProcessHandle
from manager.jobs.table import ProcessRecord
from manager.jobs.watch import Change, Watcher
from tests.manager.jobs.conftest import MACHINE, SECRETS, TORCH_VERSION, children

pytestmark = pytest.mark.bpf

ROOT = Path(__file__).resolve().parents[3]
CUDA_CTYPES = ROOT / "tests" / "workloads" / "cuda_ctypes.py"


def libcudart() -> str:
    import nvidia.cuda_runtime as m

    return os.path.join(next(iter(m.__path__)), "lib", "libcudart.so.12")


@pytest.fixture
async def watcher(procwatch: Path) -> AsyncIterator[Watcher]:
    w = Watcher(procwatch, MACHINE, ring_kb=256)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
def changes(watcher: Watcher) -> list[Change]:
    """What the watcher's listeners hear from now on."""
    heard: list[Change] = []
    watcher.listeners.append(heard.append)
    return heard


def live(w: Watcher, pid: int) -> ProcessRecord | None:
    return w.table.live.get(pid)


def job(w: Watcher, pid: int, **want: Any) -> ProcessRecord | None:
    rec = w.table.live.get(pid)
    if rec is None or rec.job is None:
        return None
    return rec if all(rec.job.get(k) == v for k, v in want.items()) else None


#: A job is found at one of its looks (watch.RECHECK_DELAYS: 0.1, 0.5, 2, 5 s... after its
#: exec): on a loaded machine its libraries may be mapped only after the 2 s look.
FOUND_S = 7.0


async def cuda_job() -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CUDA_CTYPES), libcudart(), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert json.loads(await proc.stdout.readline())["ready"]
    return proc


async def test_start_and_exit_seen_within_a_second(watcher: Watcher) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.readline()", stdin=subprocess.PIPE
    )
    rec = await watcher.wait_for(lambda: live(watcher, proc.pid), timeout=1.0)
    with ProcessHandle(proc.pid) as handle:
        assert rec.key.start_ticks == handle.stat.start_ticks  # /proc/<pid>/stat field 22
    # procwatch held the fork back, then the exec replaced it: one line for both.
    assert rec.key.machine == MACHINE and rec.source == "exec" and rec.execs == 1
    assert proc.stdin is not None
    proc.stdin.close()
    # Not a job: forgotten at its exit.
    await watcher.wait_for(lambda: live(watcher, proc.pid) is None or None, timeout=1.0)
    assert await proc.wait() == 0


async def test_brief_processes_never_reach_the_table(procwatch: Path) -> None:
    w = Watcher(procwatch, MACHINE)
    seen: list[int] = []
    await w.start()
    try:
        for _ in range(20):
            proc = await asyncio.create_subprocess_exec("/bin/true")
            seen.append(proc.pid)
            await proc.wait()
        # A process that outlives the hold is reported; once it is, all before it were due.
        slow = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdin.readline()", stdin=subprocess.PIPE
        )
        await w.wait_for(lambda: live(w, slow.pid), timeout=1.0)
        assert slow.stdin is not None
        slow.stdin.close()
        await slow.wait()
    finally:
        stats = await w.stop()
    assert stats is not None and stats["brief"] >= 20
    assert not [pid for pid in seen if pid in w.table.live]


async def test_cuda_job_found_and_its_exit_seen(watcher: Watcher, changes: list[Change]) -> None:
    proc = await cuda_job()
    rec = await watcher.wait_for(lambda: job(watcher, proc.pid), timeout=FOUND_S)
    assert rec.job is not None
    assert rec.job["accelerator"] == "cuda" and "libcudart" in rec.job["runtimes"]
    assert rec.job["jobId"] == f"{MACHINE}:{proc.pid}:{rec.key.start_ticks}"
    assert proc.stdin is not None
    proc.stdin.close()
    await watcher.wait_for(lambda: rec.status != "running" or None, timeout=1.0)
    assert await proc.wait() == 0
    assert (rec.status, rec.exit_code, rec.job["status"], rec.job["exitCode"]) == (
        "exited",
        0,
        "exited",
        0,
    )
    assert rec.job["startTime"] <= rec.job["endTime"] <= time.time() * 1000
    assert watcher.table.get(rec.key) is rec  # jobs are kept after they end
    assert [c.kind for c in changes if c.record is rec][-1] == "ended"


async def test_killed_job(watcher: Watcher) -> None:
    proc = await cuda_job()
    rec = await watcher.wait_for(lambda: job(watcher, proc.pid), timeout=FOUND_S)
    proc.kill()
    await watcher.wait_for(lambda: rec.status != "running" or None, timeout=1.0)
    assert (rec.status, rec.signal, rec.exit_code) == ("killed", signal.SIGKILL, None)
    await proc.wait()


async def test_framework_standin_classified_and_secrets_absent(
    watcher: Watcher, changes: list[Change], workload: dict[str, Any]
) -> None:
    sh = await asyncio.create_subprocess_exec(
        *workload["argv"],
        cwd=workload["cwd"],
        env=workload["env"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert sh.stdout is not None and sh.stdin is not None
    assert await sh.stdout.readline() == f"ready {TORCH_VERSION}\n".encode()
    (pid,) = children(sh.pid)
    # Its script imports torch: a job from its first look, 0.1 s after its exec.
    rec = await watcher.wait_for(lambda: job(watcher, pid, framework="torch"), timeout=5.0)
    assert rec.job is not None
    assert rec.job["frameworkVersion"] == TORCH_VERSION
    # Described again at later looks until its model shows, or now when asked.
    assert watcher.refresh(rec.key) is rec and rec.job["modelFormat"] == "safetensors"
    assert rec.job["code"]["shScriptPath"] == "run.sh"
    assert job(watcher, sh.pid) is None  # the shell that launched it is no job
    sh.stdin.write(b"\n")
    await sh.stdin.drain()
    assert await sh.wait() == 0
    await watcher.wait_for(lambda: rec.status != "running" or None, timeout=1.0)
    described = [c.record.job for c in changes if c.record is not None]
    assert described
    text = json.dumps(described)
    for value in SECRETS.values():
        assert value not in text


async def test_lost_records_are_reported_and_rescanned(procwatch: Path) -> None:
    w = Watcher(procwatch, MACHINE, ring_kb=4)  # 4 KiB: about fifty records
    changes: list[Change] = []
    w.listeners.append(changes.append)
    await w.start()
    try:
        assert w.pid is not None
        os.kill(w.pid, signal.SIGSTOP)  # the ring fills while procwatch cannot drain it
        try:
            for _ in range(60):
                await (await asyncio.create_subprocess_exec("/bin/true")).wait()
        finally:
            os.kill(w.pid, signal.SIGCONT)
        await w.wait_for(lambda: w.drops or None, timeout=2.0)
        assert [c.kind for c in changes if c.kind == "drops"] and w.counts["rescans"] == 2
    finally:
        stats = await w.stop()
    assert stats is not None and stats["dropped"] == w.drops > 0
    assert stats["sent"] + stats["dropped"] >= 180  # 60 x (fork, exec, exit) at least


async def test_a_failed_start_says_why(procwatch: Path) -> None:
    w = Watcher(procwatch, MACHINE, ring_kb=3)
    with pytest.raises(RuntimeError, match="power of two"):
        await w.start()
