"""A watcher with a root pid (--jobs-root-pid), on the real kernel: jobs under the root are
found by the start scan and by their exec, a job outside never reaches the table, and STOP_JOB
refuses it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.job_reports import JobReporter
from manager.jobs.procfs import ProcessHandle
from manager.jobs.watch import Watcher
from tests.launchers import Launcher
from tests.manager.jobs.conftest import MACHINE
from tests.manager.jobs.test_watch import FOUND_S, job, libcudart
from xpucore.protocol import CommandError, ErrorCode, StopJob

pytestmark = pytest.mark.bpf

#: Maps libcudart, says so, and holds until its stdin closes.
CUDA_HOLD = (
    "import ctypes, sys; ctypes.CDLL(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
)


def cuda_argv() -> list[str]:
    return [sys.executable, "-c", CUDA_HOLD, libcudart()]


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    la = Launcher()
    try:
        yield la
    finally:
        la.finish()
        la.kill()


async def test_only_the_roots_jobs_are_reported(procwatch: Path, launcher: Launcher) -> None:
    before, first = launcher.spawn(cuda_argv())  # running before the watcher: its scan
    assert first == "ready"
    w = Watcher(procwatch, MACHINE, ring_kb=256, root_pid=launcher.pid)
    await w.start()
    outside = subprocess.Popen(cuda_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert outside.stdout is not None and outside.stdout.readline() == b"ready\n"
        after, _ = launcher.spawn(cuda_argv())  # its exec comes after outside's
        for pid in (before, after):
            rec = await w.wait_for(lambda pid=pid: job(w, pid), timeout=FOUND_S)  # type: ignore[misc]
            assert rec.job is not None and rec.job["accelerator"] == "cuda"
        assert outside.pid not in w.table.live  # left out at its exec, never read
        assert launcher.pid in w.table.live  # the root itself is in scope (no job: no CUDA)
        with ProcessHandle(outside.pid) as h:
            ticks = h.stat.start_ticks
        with pytest.raises(CommandError) as refused:
            await JobReporter(w, MACHINE, lambda _: None).stop(StopJob("r", outside.pid, ticks))
        assert refused.value.code == ErrorCode.TARGET_NOT_FOUND
        assert outside.poll() is None
    finally:
        assert outside.stdin is not None and outside.stdout is not None
        outside.stdin.close()
        outside.stdout.close()
        outside.wait()
        await w.stop()
