"""Process metrics of running jobs, read from /proc (the samples of JOB_METRICS).

Per process, through a ``ProcessHandle`` (so a reused pid is never sampled as the job):

- ``stat``: the state (field 3) and user + system time (fields 14, 15): CPU % is the time it
  ran since its previous sample over the wall time between them (100 = one core busy; None at
  its first sample: there is nothing to difference yet);
- ``status``: ``VmRSS`` (kB, as bytes) and ``Threads``;
- ``io``: ``read_bytes``/``write_bytes`` (storage I/O since it started); where the kernel has
  no task I/O accounting they are absent, and ``rchar``/``wchar`` (every read and write,
  pipes and sockets included) stand in, said by ``io_source``; an unreadable ``io`` (another
  user's process when the manager is not root) gives None;
- ``fd``: the number of its descriptors (None when unreadable).

Accelerator memory is None: no source here knows it per process. NVML's
``nvmlDeviceGetComputeRunningProcesses`` (``usedGpuMemory`` per pid), and ``npu-smi info``'s
process table for Ascend, are where it would come from (issue #15 brings NVML per process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from manager.jobs.procfs import ProcessGone, ProcessHandle
from manager.jobs.table import ProcessKey

__all__ = ["Sampler"]


def _fields(data: bytes, wanted: tuple[bytes, ...]) -> dict[bytes, int]:
    """The integer values of "name: value" lines (status, io) whose name is wanted."""
    out: dict[bytes, int] = {}
    for line in data.splitlines():
        name, _, value = line.partition(b":")
        if name in wanted:
            try:
                out[name] = int(value.split()[0])
            except (IndexError, ValueError):
                continue
    return out


def _count_fds(proc: ProcessHandle) -> int | None:
    try:
        fd = os.open("fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc.fd)
    except OSError:
        return None
    try:
        return len(os.listdir(fd))
    except OSError:
        return None
    finally:
        os.close(fd)


class Sampler:
    """Samples processes; remembers each one's CPU time at its last sample (forgotten when a
    round no longer lists it)."""

    def __init__(self, proc_root: Path = Path("/proc"), clk_tck: int | None = None) -> None:
        self.proc_root = proc_root
        self.clk_tck = clk_tck or os.sysconf("SC_CLK_TCK")
        self._last: dict[ProcessKey, tuple[int, int]] = {}  # key -> (cpu ticks, monotonic ns)

    def sample(self, keys: Iterable[ProcessKey]) -> list[dict[str, Any]]:
        """One sample (JOB_METRICS's fields) of each process still running; the ended are
        left out (their exit is reported on its own)."""
        out: list[dict[str, Any]] = []
        last: dict[ProcessKey, tuple[int, int]] = {}
        for key in keys:
            try:
                got = self._one(key, last)
            except ProcessGone:
                continue
            out.append(got)
        self._last = last
        return out

    def _one(self, key: ProcessKey, last: dict[ProcessKey, tuple[int, int]]) -> dict[str, Any]:
        # the handle's reads go through its /proc/<pid> descriptor: once the process has
        # exited they fail, they never reach a process that got its pid since
        with ProcessHandle(key.pid, key.start_ticks, self.proc_root) as proc:
            now_ns, time_ms = time.monotonic_ns(), time.time_ns() // 1_000_000
            st = proc.stat
            ticks = st.utime + st.stime
            status = _fields(proc.read("status"), (b"VmRSS", b"Threads"))
            try:
                io: dict[bytes, int] | None = _fields(
                    proc.read("io"), (b"read_bytes", b"write_bytes", b"rchar", b"wchar")
                )
            except ProcessGone:  # unreadable (not ours), or it is gone: the stat says which
                io = None
            fds = _count_fds(proc)
        cpu = None
        before = self._last.get(key)
        if before is not None and now_ns > before[1]:
            cpu = round((ticks - before[0]) / self.clk_tck / ((now_ns - before[1]) / 1e9) * 100, 2)
            cpu = max(cpu, 0.0)
        last[key] = (ticks, now_ns)
        source, read, write = None, None, None
        if io is not None:
            if b"read_bytes" in io:
                source, read, write = "io", io[b"read_bytes"], io.get(b"write_bytes")
            elif b"rchar" in io:
                source, read, write = "rchar", io[b"rchar"], io.get(b"wchar")
        return {
            "pid": key.pid,
            "start_ticks": key.start_ticks,
            "time": time_ms,
            "state": st.state,
            "cpu_percent": cpu,
            "rss_bytes": status.get(b"VmRSS", 0) * 1024,  # none for a zombie: 0
            "threads": status.get(b"Threads", 0),
            "read_bytes": read,
            "write_bytes": write,
            "io_source": source,
            "open_files": fds,
            "accel_memory_bytes": None,
        }
