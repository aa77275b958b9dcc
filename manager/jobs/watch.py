"""Discovery: the process table kept current from xputrace-procwatch, jobs found and described.

``Watcher.start`` runs xputrace-procwatch (asyncio subprocess, no shell), waits for its ready
line, then scans /proc once: everything that starts afterwards arrives as an event, so no
process falls between the scan and the events (one found both ways is one key).

When to look at a process. At exec a process has mapped only its program and the dynamic loader:
its libraries, and an interpreter's framework, come later. Rather than polling, each exec (and
each fork of a job: its workers) books a bounded series of looks at fixed times after it
(``RECHECK_DELAYS``: 0.1, 0.5, 2, 5, 10, 30 and 60 s), voided by its exit and restarted by its next
exec; looks due within the same 50 ms share one timer. The first look is late enough that the
short-lived processes of a busy machine (shells, compilers, /bin/true in an exec storm) have
exited and are never read at all, which is what keeps discovery cheap; the last is late enough
for a framework import (torch takes a few seconds). A process that loads an accelerator library
only later still, by dlopen after minutes, is found at its next exec or the next rescan, not at
once: catching that instantly needs a hook on mmap (an fentry/LSM program), which this kernel's
tp_btf-only budget leaves out. Processes found by the start scan are looked at once: they have
loaded what they load.

Processes that come and go within ``DEFER_MS`` (100 ms) are never heard of: procwatch holds
each fork and exec that long and, when the exit comes first, prints neither (its stats count
them as ``brief``). They would have exited before their first look anyway, and in an exec storm
(shells, compilers, /bin/true) they are nearly all there is. Every other start reaches the table
within ``DEFER_MS + 2 * batch_ms`` (0.2 s), and every exit of a process it holds within
``2 * batch_ms``.

With a ``root_pid`` (the manager's ``--jobs-root-pid``) only that process and its descendants
are looked at (``manager.jobs.scope``): every other process is left out at its first event, before
it reaches the table, so it is never read, described or reported (nor stopped: STOP_JOB acts on
the table's jobs only).

A ``drops`` line from procwatch (records lost to a full ring) triggers a rescan: processes
missed are added, and those that ended unseen are marked lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from manager.jobs.container import own_mount_namespace
from manager.jobs.describe import Inspection, describe, inspect
from manager.jobs.procfs import ProcessGone, ProcessHandle
from manager.jobs.scan import scan
from manager.jobs.scope import Scope
from manager.jobs.table import ProcessKey, ProcessRecord, ProcessTable

__all__ = ["DEFER_MS", "RECHECK_DELAYS", "Change", "Watcher"]

log = logging.getLogger(__name__)
T = TypeVar("T")

RECHECK_DELAYS: tuple[float, ...] = (0.1, 0.5, 2.0, 5.0, 10.0, 30.0, 60.0)
#: procwatch holds each fork and exec this long and drops both when the process has exited
#: meanwhile: no sooner than this would its first look be due anyway.
DEFER_MS = 100


@dataclass(frozen=True)
class Change:
    """What a listener hears: a job was described, first or again ("job"), a job ended
    ("ended"), a job ended unseen ("lost"), procwatch lost records ("drops")."""

    kind: str
    record: ProcessRecord | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    seen: Inspection | None = None
    step: int = 0
    generation: int = 0  # bumped by each exec: looks booked before it are void
    booked: bool = False  # a look is booked


#: Looks due within one slot share one timer: an exec storm books a list entry per process,
#: not a timer; the entries of processes that have exited meanwhile are skipped.
LOOK_SLOT_S = 0.05


class Watcher:
    def __init__(
        self,
        procwatch: Path,
        machine: str,
        *,
        proc_root: Path = Path("/proc"),
        recheck_delays: Sequence[float] = RECHECK_DELAYS,
        ring_kb: int = 1024,
        batch_ms: int = 50,
        defer_ms: int = DEFER_MS,
        describe_jobs: bool = True,
        root_pid: int | None = None,
    ) -> None:
        self.procwatch = procwatch
        self.proc_root = proc_root
        self.delays = tuple(recheck_delays)
        self.ring_kb = ring_kb
        self.batch_ms = batch_ms  # procwatch -w: events arrive within 2 * batch_ms
        self.defer_ms = defer_ms  # procwatch -d
        self.describe_jobs = describe_jobs
        self.table = ProcessTable(machine)
        self.scope = Scope(root_pid, proc_root) if root_pid is not None else None
        if self.scope is not None and self.scope.root is None:
            log.warning("jobs root pid %d is not running: no job will be reported", root_pid)
        self.listeners: list[Callable[[Change], None]] = []
        self.counts = {"events": 0, "looks": 0, "described": 0, "lost": 0, "rescans": 0}
        self.drops = 0
        self.final_stats: dict[str, Any] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._changed = asyncio.Event()
        self._own_mnt_ns = own_mount_namespace()
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        self._scan_pending: set[ProcessKey] = set()
        self._slots: dict[int, list[tuple[ProcessKey, int]]] = {}
        self._decode = msgspec.json.Decoder()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, timeout: float = 10.0) -> None:
        self._ready = asyncio.get_running_loop().create_future()
        self._proc = await asyncio.create_subprocess_exec(
            str(self.procwatch),
            "-b",
            str(self.ring_kb),
            "-w",
            str(self.batch_ms),
            "-d",
            str(self.defer_ms),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        waits: set[asyncio.Future[Any]] = {self._ready, self._reader}
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self._ready not in done or self._ready.exception() is not None:
            err = b""
            if self._proc.stderr is not None and self._reader in done:
                err = await self._proc.stderr.read()
            await self.stop()
            raise RuntimeError(f"xputrace-procwatch did not start: {err.decode().strip()}")
        # From here its stderr is logged as it comes: a full pipe would stall it.
        self._stderr = asyncio.create_task(self._log_stderr())
        self._rescan(first=True)

    async def _log_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for line in self._proc.stderr:
            log.warning("xputrace-procwatch: %s", line.decode(errors="replace").rstrip())

    async def stop(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """SIGTERM procwatch, read to its stats line, SIGKILL after timeout; its stats."""
        proc = self._proc
        if proc is None:
            return self.final_stats
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await self._reader
        if self._stderr is not None:
            await self._stderr
        for rec in list(self.table.live.values()):
            self._cancel(rec)
        self._slots.clear()
        self._proc = None
        return self.final_stats

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float) -> T:
        """The first non-None predicate(), evaluated after each batch of events or looks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value is not None:
                return value
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("condition not met")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _emit(self, change: Change) -> None:
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:
                log.exception("job listener failed")

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        rest = b""
        while True:
            chunk = await stdout.read(1 << 16)
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            try:  # the whole batch as one JSON array: one decoder call, not one a line
                events = self._decode.decode(b"[" + b",".join(lines) + b"]")
            except msgspec.DecodeError:
                events = []
                for line in lines:
                    try:
                        events.append(self._decode.decode(line))
                    except msgspec.DecodeError:
                        log.warning("procwatch: bad line %r", line[:200])
            for ev in events:
                try:
                    self._line(ev)
                except (KeyError, TypeError):
                    log.warning("procwatch: bad record %r", ev)
            self._notify()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError("procwatch exited"))
            self._ready.exception()  # retrieved here: start() reports it from stderr

    def _line(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind in ("fork", "exec", "exit"):
            self.counts["events"] += 1
            if kind == "fork" and not self._fork_matters(ev):
                return  # shows what it is at its exec; unknown at its exit: nothing to end
            if kind != "exit" and not self._in_scope(ev):
                return
            if kind == "exit":
                rec = self.table.live.get(ev["pid"])
                if rec is None or rec.key.start_ticks != ev["start_ticks"]:
                    return
            rec, replaced = self.table.apply(ev)
            if replaced is not None:
                self._ended(replaced, "lost")
            if kind == "exit":
                self._ended(rec, rec.status)
            elif rec.status == "running":
                # The first look is due delays[0] after the event itself, which procwatch
                # held back defer_ms already.
                age = (time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ev["time_ns"]) / 1e9
                self._schedule(rec, 0, fresh=True, delay=max(0.0, self.delays[0] - age))
        elif kind == "ready":
            assert self._ready is not None
            self._ready.set_result(ev)
        elif kind == "drops":
            self.drops = ev["dropped"]
            self._emit(Change("drops", None, ev))
            self._rescan()
        elif kind == "stats":
            self.final_stats = ev
            self.drops = ev["dropped"]

    def _in_scope(self, ev: dict[str, Any]) -> bool:
        """Whether a fork or exec is of a process this watcher answers for."""
        if self.scope is None:
            return True
        rec = self.table.live.get(ev["pid"])
        if rec is not None and rec.key.start_ticks == ev["start_ticks"]:
            return True  # judged at its first event
        return self.scope.contains(
            ev["pid"], ev["start_ticks"], ev["ppid"], ev.get("parent_start_ticks")
        )

    def refresh(self, key: ProcessKey) -> ProcessRecord | None:
        """Look at a running process now, out of its schedule (its job description is made
        again); its record, or None when it is not running."""
        rec = self.table.get(key)
        if rec is None or rec.status != "running":
            return None
        if not isinstance(rec.state, _Pending):
            rec.state = _Pending()
        self._look(key, rec.state.generation, force=True)  # its booked looks stay booked
        return rec

    def _fork_matters(self, ev: dict[str, Any]) -> bool:
        """Whether a new process that has not exec'd (yet) is worth a record: when its parent
        is a job (a DataLoader worker) or an interpreter (a rank forked by multiprocessing,
        which may import a framework without an exec). The forks of shells and make, most of
        an exec storm, are left to their exec."""
        parent = self.table.live.get(ev["ppid"])
        if parent is None or parent.key.start_ticks != ev.get("parent_start_ticks"):
            return str(ev["comm"]).startswith("python")
        return parent.job is not None or parent.comm.startswith("python")

    @property
    def settled(self) -> bool:
        """Whether the processes of the start scan have all been looked at (or ended)."""
        return not self._scan_pending

    def _ended(self, rec: ProcessRecord, how: str) -> None:
        self._cancel(rec)
        self._scan_pending.discard(rec.key)
        if how == "lost":
            self.counts["lost"] += 1
        if rec.job is not None:
            rec.job.update(rec.status_fields())
            self._emit(Change("ended" if how != "lost" else "lost", rec))

    def _cancel(self, rec: ProcessRecord) -> None:
        """Void the look booked for rec, if any (its slot entry is skipped when due)."""
        if isinstance(rec.state, _Pending):
            rec.state.generation += 1
            rec.state.booked = False

    def _schedule(
        self, rec: ProcessRecord, step: int, fresh: bool = False, delay: float | None = None
    ) -> None:
        if not isinstance(rec.state, _Pending):
            rec.state = _Pending()
        pending: _Pending = rec.state
        if fresh:
            self._cancel(rec)
            pending.step = 0
            pending.seen = None
            step = 0
        if pending.booked or step >= len(self.delays):
            return
        if delay is None:
            delay = self.delays[step] - (self.delays[step - 1] if step else 0.0)
        pending.step = step
        pending.booked = True
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + delay) / LOOK_SLOT_S)
        entries = self._slots.get(slot)
        if entries is None:
            entries = self._slots[slot] = []
            loop.call_at(slot * LOOK_SLOT_S, self._run_slot, slot)
        entries.append((rec.key, pending.generation))

    def _run_slot(self, slot: int) -> None:
        for key, generation in self._slots.pop(slot, ()):
            self._look(key, generation)
        self._notify()

    def _rescan(self, first: bool = False) -> None:
        self.counts["rescans"] += 1
        stats = scan(self.proc_root)
        by_pid = {st.pid: st for st in stats}
        for st in stats:
            if self.scope is not None and not self.scope.contains(
                st.pid, st.start_ticks, st.ppid, known=by_pid
            ):
                continue
            rec = self.table.add_scanned(st)
            if rec is not None:  # looked at once, right away: it has loaded what it loads
                self._schedule(rec, len(self.delays) - 1, delay=0.0)
                if first:
                    self._scan_pending.add(rec.key)
        if not first:
            for rec in self.table.reconcile({(st.pid, st.start_ticks) for st in stats}):
                self._ended(rec, "lost")
        self._notify()

    def _look(self, key: ProcessKey, generation: int, force: bool = False) -> None:
        rec = self.table.live.get(key.pid)
        if rec is None or rec.key != key or not isinstance(rec.state, _Pending):
            return  # ended since
        pending: _Pending = rec.state
        if not force:
            if pending.generation != generation or not pending.booked:
                return  # voided by an exec or an end since it was booked
            pending.booked = False
        self._scan_pending.discard(key)
        self.counts["looks"] += 1
        rec.checks += 1
        try:
            with ProcessHandle(key.pid, key.start_ticks, self.proc_root) as proc:
                before = pending.seen.classification if pending.seen else None
                seen = inspect(proc, None, self._own_mnt_ns, pending.seen, quick=True)
                pending.seen = seen
                c = seen.classification
                # Described when it becomes a job, and again at a later look while what it
                # has loaded changes or its model is not known yet (it opens its model files
                # as it starts up); at most once a look, so a few times a job.
                if c.is_job and (
                    force
                    or rec.job is None
                    or rec.job.get("modelFormat") is None
                    or before is None
                    or (before.frameworks, before.runtimes) != (c.frameworks, c.runtimes)
                ):
                    rec.job = (
                        self._describe(proc, rec)
                        if self.describe_jobs
                        else {"jobId": str(key), **rec.status_fields()}
                    )
                    self.counts["described"] += 1
                    self._emit(Change("job", rec))
        except ProcessGone:
            return  # its exit event follows
        if not force:
            self._schedule(rec, pending.step + 1)

    def _describe(self, proc: ProcessHandle, rec: ProcessRecord) -> dict[str, Any]:
        return describe(
            proc,
            job_id=str(rec.key),
            machine=rec.key.machine,
            status=rec.status_fields(),
            parent_start=rec.parent_start_ticks,
            proc_root=self.proc_root,
            clk_tck=self._clk_tck,
            own_mnt_ns=self._own_mnt_ns,
        )
