"""The machine's AI jobs, told to the backend; and STOP_JOB, carried out.

``JobReporter`` listens to the jobs watcher (``manager.jobs.watch.Watcher``): each job
described becomes a JOB_SEEN, each end a JOB_CHANGED (``xpucore.job_wire``), queued on the
control channel. After every HELLO the control client sends ``snapshot()``: a JOB_SNAPSHOT of
the jobs running now and a JOB_SEEN of each, so a backend that missed events (restarted, or
the manager's queue overflowed) learns every live job again.

STOP_JOB: SIGTERM, then SIGKILL after the grace period, through a pidfd opened on the process
the backend names by (pid, start time): a pid reused meanwhile is never signalled. Only a
process this manager knows as an AI job and that is running; never pid 1 nor the platform's
own processes (``manager.protected``); with allowed_users, only a process of one of those Unix
accounts. The reply comes when the process has ended, with how it ended; its JOB_CHANGED says
``stopped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manager.jobs.procfs import ProcessGone, ProcessHandle
from manager.jobs.table import ProcessKey, ProcessRecord
from manager.jobs.watch import Change, Watcher
from manager.protected import platform_process, process_user
from xpucore import protocol
from xpucore.job_wire import fit_job
from xpucore.protocol import CommandError, ErrorCode, ReplyStatus, StopJob

__all__ = ["KILL_WAIT_S", "JobReporter", "own_pids", "start_watcher", "wait_closed"]

log = logging.getLogger(__name__)

KILL_WAIT_S = 5.0  # after SIGKILL, how long its exit may take to be seen
Emit = Callable[[dict[str, Any]], None]


def _now() -> datetime:
    return datetime.now(UTC)


class JobReporter:
    def __init__(
        self,
        watcher: Watcher,
        machine_id: str,
        emit: Emit,
        *,
        agent_path: Path | None = None,
        own: Callable[[], Iterable[int]] = tuple,
        proc_root: Path = Path("/proc"),
    ) -> None:
        self.watcher = watcher
        self.machine_id = machine_id
        self.emit = emit
        self.agent_path = agent_path
        self.own = own  # the pids the platform runs here (agents, procwatch)
        self.proc_root = proc_root
        self._stopping: dict[ProcessKey, list[str]] = {}  # a STOP_JOB's signals sent so far
        watcher.listeners.append(self._on_change)

    # -- events

    def _seen(self, rec: ProcessRecord) -> dict[str, Any]:
        assert rec.job is not None
        return protocol.job_seen(self.machine_id, fit_job(rec.job), _now())

    def _on_change(self, change: Change) -> None:
        rec = change.record
        if rec is None or rec.job is None:
            return
        if change.kind == "job":
            self.emit(self._seen(rec))
        elif change.kind in ("ended", "lost"):
            self.emit(self._ended(rec))

    def _ended(self, rec: ProcessRecord) -> dict[str, Any]:
        status, sent = rec.status, self._stopping.pop(rec.key, None)
        if status == "lost":
            reason = "its exit was not seen (procwatch lost records, or its pid was reused)"
        elif sent is not None:
            status, reason = "stopped", f"stopped on request ({', '.join(sent)})"
        elif status == "killed":
            reason = f"killed by signal {rec.signal}"
        else:
            reason = f"exited with code {rec.exit_code}"
        f = rec.status_fields()
        return protocol.job_changed(
            self.machine_id,
            rec.key.pid,
            rec.key.start_ticks,
            status,
            f["exitCode"],
            f["signal"],
            f["coreDumped"],
            f["endTime"],
            reason,
            _now(),
        )

    def running(self) -> list[ProcessRecord]:
        return [r for r in self.watcher.table.live.values() if r.job is not None]

    async def snapshot(self, settle_s: float = 10.0) -> list[dict[str, Any]]:
        """JOB_SNAPSHOT and a JOB_SEEN of each running job, once the start scan's processes
        have been looked at (at most settle_s)."""
        with contextlib.suppress(TimeoutError):
            await self.watcher.wait_for(lambda: self.watcher.settled or None, settle_s)
        live = self.running()
        return [
            protocol.job_snapshot(
                self.machine_id, [(r.key.pid, r.key.start_ticks) for r in live], _now()
            ),
            *(self._seen(r) for r in live),
        ]

    # -- STOP_JOB

    def _refuse(self, code: ErrorCode, message: str) -> CommandError:
        return CommandError(code, message)

    def _check(self, cmd: StopJob) -> ProcessRecord:
        key = ProcessKey(self.machine_id, cmd.pid, cmd.start_ticks)
        rec = self.watcher.table.get(key)
        if rec is None or rec.job is None:
            raise self._refuse(
                ErrorCode.TARGET_NOT_FOUND,
                f"pid: {cmd.pid} (start {cmd.start_ticks}) is not an AI job "
                "this manager knows; only AI jobs are stopped",
            )
        if rec.status != "running":
            return rec
        if cmd.pid == 1 or platform_process(
            cmd.pid, self.proc_root, agent_path=self.agent_path, own=self.own()
        ):
            raise self._refuse(
                ErrorCode.PERMISSION_DENIED,
                f"pid: {cmd.pid} is a process the platform does not stop",
            )
        if cmd.allowed_users is not None:
            user = process_user(cmd.pid, self.proc_root)
            if user not in cmd.allowed_users:
                raise self._refuse(
                    ErrorCode.PERMISSION_DENIED,
                    f"pid: {cmd.pid} runs as a Unix account not granted to the caller",
                )
        return rec

    def _pidfd(self, rec: ProcessRecord) -> int:
        """A pidfd of the process, checked to be the same process (its start time) after it
        was opened: signals through it never reach a process that reused the pid."""
        try:
            fd = os.pidfd_open(rec.key.pid)
        except ProcessLookupError:
            raise self._refuse(
                ErrorCode.TARGET_NOT_FOUND, f"pid: {rec.key.pid} has exited"
            ) from None
        try:
            with ProcessHandle(rec.key.pid, rec.key.start_ticks, self.proc_root):
                pass
        except ProcessGone:
            os.close(fd)
            raise self._refuse(
                ErrorCode.TARGET_NOT_FOUND, f"pid: {rec.key.pid} has exited"
            ) from None
        return fd

    async def _ended_within(self, rec: ProcessRecord, timeout: float) -> bool:
        try:
            await self.watcher.wait_for(lambda: rec.status != "running" or None, timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, cmd: StopJob) -> dict[str, Any]:
        """STOP_JOB → its reply (SUCCESS once the process has ended); CommandError when
        refused."""
        rec = self._check(cmd)
        sent: list[str] = []
        if rec.status == "running":
            fd = self._pidfd(rec)
            self._stopping[rec.key] = sent
            try:
                for sig, wait in ((signal.SIGTERM, cmd.grace_s), (signal.SIGKILL, KILL_WAIT_S)):
                    sent.append(sig.name)  # first: its exit may be read while we wait
                    with contextlib.suppress(ProcessLookupError):  # ended meanwhile: its
                        signal.pidfd_send_signal(fd, sig)  # exit is on its way
                    log.info("job %s: %s sent", rec.key, sig.name)
                    if await self._ended_within(rec, wait):
                        break
                else:
                    raise CommandError(
                        ErrorCode.AGENT_STOP_FAILED,
                        f"pid: {rec.key.pid} has not ended after SIGKILL",
                    )
            finally:
                os.close(fd)
        f = rec.status_fields()
        status = "stopped" if sent else f["status"]
        return {
            "request_id": cmd.request_id,
            "status": str(ReplyStatus.SUCCESS),
            "job_status": status,
            "exit_code": f["exitCode"],
            "signal": f["signal"],
            "end_time": f["endTime"],
            "signals_sent": sent,
            "message": (
                f"stopped ({', '.join(sent)})" if sent else f"already ended ({f['status']})"
            ),
        }


async def start_watcher(
    procwatch: Path, machine_id: str, root_pid: int | None = None
) -> Watcher | None:
    """The jobs watcher, started (root_pid: only that process and its descendants); None
    (with the reason logged) when it cannot run here."""
    if not procwatch.exists():
        log.warning(
            "job discovery off: %s not found (build it, or set --procwatch-path)", procwatch
        )
        return None
    watcher = Watcher(procwatch, machine_id, root_pid=root_pid)
    try:
        await watcher.start()
    except (OSError, RuntimeError) as e:
        log.error("job discovery off: %s", e)
        return None
    scope = f", jobs under pid {root_pid} only" if root_pid is not None else ""
    log.info("job discovery on: %s (pid %s)%s", procwatch, watcher.pid, scope)
    return watcher


def own_pids(*groups: Callable[[], Iterable[int | None]]) -> Callable[[], list[int]]:
    """The platform's own pids now, from each group's callable (Nones left out)."""

    def pids() -> list[int]:
        return [p for g in groups for p in g() if p is not None]

    return pids


async def wait_closed(watcher: Watcher | None) -> None:
    if watcher is not None:
        with contextlib.suppress(Exception):
            await asyncio.shield(watcher.stop())
