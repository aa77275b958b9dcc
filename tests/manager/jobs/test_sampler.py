"""Process metrics read from /proc of a real process whose load is known: CPU % of a busy
loop, RSS of what it wrote, its threads and open files; SIGSTOP shows as state T; a process
that has exited, or whose pid names another process, is left out."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.jobs.sampler import Sampler
from manager.jobs.table import ProcessKey
from tests.agent.procs import JsonLineProc
from xpucore.job_wire import check_metrics

BUSY = Path(__file__).resolve().parents[2] / "workloads" / "busy_alloc.py"
MIB = 200


def _ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture
def busy() -> Iterator[JsonLineProc]:
    work = JsonLineProc([sys.executable, str(BUSY), str(MIB), "5", "7", "256"])
    try:
        work.read_json("ready")
        yield work
    finally:
        work.kill()


def test_a_busy_process_is_sampled_as_it_is(busy: JsonLineProc) -> None:
    pid = busy.proc.pid
    key = ProcessKey("m", pid, _ticks(pid))
    sampler = Sampler()
    (first,) = sampler.sample([key])
    assert first["cpu_percent"] is None  # nothing to difference yet
    time.sleep(1.0)  # the interval measured over, not a wait for an event
    (second,) = sampler.sample([key])
    print("sample:", second)
    assert second["cpu_percent"] > 20.0  # one core spinning (a shared machine gives less)
    assert second["cpu_percent"] <= 100.0 * (os.cpu_count() or 1)
    assert MIB << 20 <= second["rss_bytes"] <= (MIB + 64) << 20
    assert second["threads"] == 5
    assert second["open_files"] >= 3 + 7  # stdio and its files
    if second["io_source"] == "io":  # task I/O accounting in this kernel
        assert second["write_bytes"] >= 256 << 10
    assert second["state"] in ("R", "S")
    assert second["accel_memory_bytes"] is None
    # what is sent passes the backend's check
    check_metrics({"interval_s": 1.0, "samples": [second]})


def test_stopped_gone_and_reused(busy: JsonLineProc) -> None:
    pid = busy.proc.pid
    key = ProcessKey("m", pid, _ticks(pid))
    sampler = Sampler()
    os.kill(pid, signal.SIGSTOP)
    os.waitpid(pid, os.WUNTRACED)  # returns once it has stopped
    assert [s["state"] for s in sampler.sample([key])] == ["T"]
    os.kill(pid, signal.SIGCONT)
    os.waitpid(pid, os.WCONTINUED)
    assert sampler.sample([key])[0]["state"] != "T"
    assert sampler.sample([ProcessKey("m", pid, key.start_ticks + 1)]) == []  # not this one
    busy.kill()
    assert sampler.sample([key]) == []
