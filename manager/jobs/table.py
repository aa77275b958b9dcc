"""The machine's processes, keyed by (machine, pid, start time), and which of them are jobs.

The table is pure bookkeeping: it applies procwatch events and scan results and says what
changed; reading /proc and deciding what is a job is the watcher's (``watch.py``). Processes
that are not jobs are forgotten at their exit, so an exec storm leaves nothing behind; jobs
are kept after they end (up to ``keep_ended``, oldest dropped first) with how they ended.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from manager.jobs.procfs import Stat

__all__ = ["ProcessKey", "ProcessRecord", "ProcessTable", "boot_ns_to_unix_ms"]


def boot_ns_to_unix_ms(boot_ns: int) -> int:
    """A CLOCK_BOOTTIME time (procwatch's, /proc's start times) as Unix time in ms."""
    boot_epoch_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return (boot_epoch_ns + boot_ns) // 1_000_000


class ProcessKey(NamedTuple):
    """One process for ever: a pid names another process once reused, a start time does not."""

    machine: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22

    def __str__(self) -> str:
        return f"{self.machine}:{self.pid}:{self.start_ticks}"


@dataclass(slots=True)
class ProcessRecord:
    key: ProcessKey
    ppid: int
    parent_start_ticks: int | None
    comm: str
    source: str  # how it was learnt of: scan, fork or exec
    execs: int = 0
    status: str = "running"  # running, exited, killed, lost
    exit_code: int | None = None
    signal: int | None = None
    core: bool = False
    end_ns: int | None = None  # boottime ns of its exit
    job: dict[str, Any] | None = None  # the description, once it is a job
    checks: int = 0  # looks taken since its last exec
    state: Any = None  # the watcher's own (the last inspection, the pending re-check)

    def status_fields(self) -> dict[str, Any]:
        """status, exitCode, signal, coreDumped and endTime (Unix ms; null while running or
        when the end was not seen)."""
        return {
            "status": self.status,
            "exitCode": self.exit_code,
            "signal": self.signal,
            "coreDumped": self.core,
            "endTime": boot_ns_to_unix_ms(self.end_ns) if self.end_ns else None,
        }


@dataclass
class ProcessTable:
    machine: str
    keep_ended: int = 10_000
    live: dict[int, ProcessRecord] = field(default_factory=dict)  # pid -> its process now
    ended: OrderedDict[ProcessKey, ProcessRecord] = field(default_factory=OrderedDict)

    def key(self, pid: int, start_ticks: int) -> ProcessKey:
        return ProcessKey(self.machine, pid, start_ticks)

    def get(self, key: ProcessKey) -> ProcessRecord | None:
        rec = self.live.get(key.pid)
        if rec is not None and rec.key == key:
            return rec
        return self.ended.get(key)

    def jobs(self) -> list[ProcessRecord]:
        return [r for r in (*self.live.values(), *self.ended.values()) if r.job is not None]

    def _start(
        self, key: ProcessKey, ppid: int, parent_start: int | None, comm: str, source: str
    ) -> tuple[ProcessRecord, ProcessRecord | None]:
        """The record of key, made if new; and the record it replaced under the same pid."""
        old = self.live.get(key.pid)
        if old is not None and old.key == key:
            return old, None
        rec = ProcessRecord(key, ppid, parent_start, comm, source)
        if old is not None and old.key.start_ticks > key.start_ticks:
            return rec, None  # news of an older process under a pid reused since: not live
        self.live[key.pid] = rec
        if old is not None:  # its exit was not seen (lost events): the pid was reused
            self._end(old, "lost", None, None, False, None)
        return rec, old

    def _end(
        self,
        rec: ProcessRecord,
        status: str,
        code: int | None,
        sig: int | None,
        core: bool,
        end_ns: int | None,
    ) -> None:
        rec.status, rec.exit_code, rec.signal, rec.core, rec.end_ns = (
            status,
            code,
            sig,
            core,
            end_ns,
        )
        if self.live.get(rec.key.pid) is rec:
            del self.live[rec.key.pid]
        if rec.job is not None:
            self.ended[rec.key] = rec
            while len(self.ended) > self.keep_ended:
                self.ended.popitem(last=False)

    def apply(self, ev: dict[str, Any]) -> tuple[ProcessRecord, ProcessRecord | None]:
        """A procwatch fork, exec or exit line: (its record, a record it ended as lost)."""
        key = self.key(ev["pid"], ev["start_ticks"])
        kind = ev["event"]
        rec, replaced = self._start(key, ev["ppid"], ev.get("parent_start_ticks"), ev["comm"], kind)
        if kind == "exec":
            rec.execs += 1
            rec.comm = ev["comm"]
            rec.checks = 0
        elif kind == "exit" and rec.status == "running":
            status = "killed" if ev.get("signal") else "exited"
            self._end(
                rec,
                status,
                ev.get("exit_code"),
                ev.get("signal"),
                bool(ev.get("core")),
                ev.get("time_ns"),
            )
        return rec, replaced

    def add_scanned(self, st: Stat) -> ProcessRecord | None:
        """A process found by a scan; None when it was known already."""
        key = self.key(st.pid, st.start_ticks)
        if self.get(key) is not None:
            return None
        return self._start(key, st.ppid, None, st.comm, "scan")[0]

    def reconcile(self, running: set[tuple[int, int]]) -> list[ProcessRecord]:
        """After a scan (pid, start) set: live records no longer running, marked lost."""
        gone = [r for r in self.live.values() if (r.key.pid, r.key.start_ticks) not in running]
        for rec in gone:
            self._end(rec, "lost", None, None, False, None)
        return gone
