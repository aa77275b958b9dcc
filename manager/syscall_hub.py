"""The machine's one SYSCALL tracer: every SYSCALL monitor is a slot of one process.

A SYSCALL agent of its own per monitor would attach its own system-wide syscall tracepoints,
so each monitor would cost every syscall on the host. Instead the first SYSCALL monitor starts
``xputrace-agent --monitor-id syscall-hub --monitor-type SYSCALL --hub`` (under setpriv
--pdeathsig, with a record in the agents' records like any agent, so a restarted manager reaps
a stale one), and each monitor is added to it over its stdin as the agent command line it
would have had, tab-separated; the tracer answers each command with one JSON line on stdout
(agent_c/syscall_monitor.c). It ends when its last monitor has.

The tracer's own end (a crash, a kill) is reported once, with its exit status, for the
monitors it still served; a monitor that ends on its own (its target exited, its output
failed) is reported with its stopped line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manager.reaper import write_record

__all__ = ["HUB_ID", "HUB_RINGBUF_KB", "HubGone", "HubOptions", "SyscallHub"]

log = logging.getLogger(__name__)

HUB_ID = "syscall-hub"  # its --monitor-id, and its record's name (monitor ids are UUIDs)
HUB_RINGBUF_KB = 32768  # one ring for every SYSCALL monitor of the machine
STDERR_TAIL_LINES = 8

Line = dict[str, Any]


class HubGone(Exception):
    """The tracer exited (or never became ready): its status and its last stderr lines."""

    def __init__(self, rc: int, tail: str) -> None:
        super().__init__(f"SYSCALL tracer exited with status {rc}" + (f": {tail}" if tail else ""))
        self.rc = rc
        self.tail = tail


@dataclass(frozen=True)
class HubOptions:
    agent_path: Path
    machine_id: str
    records: Path
    proc_root: Path
    env: Mapping[str, str]
    setpriv: str | None
    ready_timeout_s: float
    stop_timeout_s: float
    line_limit: int


class SyscallHub:
    """The tracer process and its command pipe. on_end(monitor_id, stopped line): a monitor
    ended on its own; on_exit(rc, stderr tail, monitor ids): the tracer ended with them."""

    def __init__(
        self,
        opts: HubOptions,
        on_end: Callable[[str, Line], None],
        on_exit: Callable[[int, str, set[str]], None],
    ) -> None:
        self.opts = opts
        self.on_end = on_end
        self.on_exit = on_exit
        self.monitors: set[str] = set()
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._adding: dict[str, asyncio.Future[Line]] = {}
        self._removing: dict[str, asyncio.Future[Line]] = {}
        self._excluding: deque[asyncio.Future[Line]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._record: Path | None = None

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.returncode is None else None

    # -- commands

    async def add(self, monitor_id: str, argv: list[str], exclude: Iterable[int] = ()) -> Line:
        """Adds a monitor (its agent flags); its ready or error line. Raises HubGone, or
        TimeoutError when the tracer does not answer in time."""
        async with self._lock:
            await self._ensure()
            for pid in exclude:
                await self._exclude(pid)
            fut = self._future(self._adding, monitor_id)
            self._send("add", *argv)
            try:
                line = await asyncio.wait_for(asyncio.shield(fut), self.opts.ready_timeout_s)
            except TimeoutError:
                self._send("remove", monitor_id)  # should it come after all
                raise
            finally:
                self._adding.pop(monitor_id, None)
            if line.get("ready") is True:
                self.monitors.add(monitor_id)
            return line

    async def remove(self, monitor_id: str, timeout: float) -> Line:
        """Ends a monitor; its stopped line (its final batch is delivered or given up on).
        Raises HubGone, or TimeoutError."""
        if self.pid is None:
            raise HubGone(0, "not running")
        fut = self._future(self._removing, monitor_id)
        self._send("remove", monitor_id)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            self._removing.pop(monitor_id, None)

    async def release_if_idle(self) -> None:
        """Ends the tracer once it serves no monitor."""
        async with self._lock:
            if not self.monitors and not self._removing and self._proc is not None:
                await self._close()

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    def _future(self, table: dict[str, asyncio.Future[Line]], key: str) -> asyncio.Future[Line]:
        fut: asyncio.Future[Line] = asyncio.get_running_loop().create_future()
        table[key] = fut
        return fut

    async def _exclude(self, pid: int) -> None:
        fut: asyncio.Future[Line] = asyncio.get_running_loop().create_future()
        self._excluding.append(fut)
        self._send("exclude", str(pid))
        line = await asyncio.wait_for(asyncio.shield(fut), self.opts.ready_timeout_s)
        if "error" in line:
            log.warning("SYSCALL tracer: cannot exclude pid %d: %s", pid, line.get("message"))

    def _send(self, *fields: str) -> None:
        p = self._proc
        if p is None or p.stdin is None or p.returncode is not None:
            raise HubGone(p.returncode if p and p.returncode is not None else 0, "not running")
        p.stdin.write("\t".join(fields).encode() + b"\n")

    # -- the process

    async def _ensure(self) -> None:
        if self.pid is not None:
            return
        o = self.opts
        argv = [
            str(o.agent_path),
            "--monitor-id",
            HUB_ID,
            "--monitor-type",
            "SYSCALL",
            "--machine-id",
            o.machine_id,
            "--hub",
            "--ringbuf-kb",
            str(HUB_RINGBUF_KB),
        ]
        if o.setpriv:
            argv = [o.setpriv, "--pdeathsig", "TERM", "--", *argv]
        log.info("starting the SYSCALL tracer: %s", " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(o.env),
                cwd="/",
                start_new_session=True,
                limit=o.line_limit,
            )
        except OSError as e:
            raise HubGone(5, f"cannot run {o.agent_path}: {e.strerror or e}") from None
        self._proc = proc
        self._tail.clear()
        self._record = write_record(
            o.records,
            HUB_ID,
            proc.pid,
            str(o.agent_path),
            datetime.now(UTC).isoformat(),
            o.proc_root,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr(proc.stderr))
        try:
            ready = await asyncio.wait_for(self._read_ready(proc.stdout), o.ready_timeout_s)
        except BaseException:
            await self._kill(proc)
            await _settle(stderr_task)
            self._forget()
            raise
        if ready is None:
            rc = await proc.wait()
            await _settle(stderr_task)
            self._forget()
            raise HubGone(rc, "; ".join(self._tail))
        log.info("SYSCALL tracer pid %d ready", proc.pid)
        self._tasks = [
            stderr_task,
            asyncio.get_running_loop().create_task(self._read(proc, stderr_task)),
        ]
        await self._exclude(os.getpid())  # the manager, and what it starts from now on

    async def _read_ready(self, stdout: asyncio.StreamReader) -> Line | None:
        while line := await _readline(stdout):
            obj = _json_object(line)
            if obj is not None and obj.get("hub") is True:
                return obj
        return None

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        while line := await _readline(stderr):
            text = line.decode(errors="replace").rstrip()[:500]
            if text:
                self._tail.append(text)
                log.info("SYSCALL tracer: %s", text)

    async def _read(
        self, proc: asyncio.subprocess.Process, stderr_task: asyncio.Task[None]
    ) -> None:
        """Routes each answer to its waiter; at EOF, the tracer's end."""
        assert proc.stdout is not None
        while line := await _readline(proc.stdout):
            obj = _json_object(line)
            if obj is not None:
                self._route(obj)
        rc = await proc.wait()
        await _settle(stderr_task)
        gone = HubGone(rc, "; ".join(self._tail))
        for table in (self._adding, self._removing):
            for fut in table.values():
                if not fut.done():
                    fut.set_exception(gone)
        for fut in self._excluding:
            if not fut.done():
                fut.set_exception(gone)
        self._excluding.clear()
        served, self.monitors = self.monitors, set()
        if self._proc is proc:
            self._forget()
        if served:
            log.warning(
                "SYSCALL tracer pid %d ended (%s) serving %d monitor(s)",
                proc.pid,
                gone,
                len(served),
            )
        self.on_exit(rc, gone.tail, served)

    def _route(self, obj: Line) -> None:
        if "excluded" in obj:
            if self._excluding:
                fut = self._excluding.popleft()
                if not fut.done():
                    fut.set_result(obj)
            return
        mid = obj.get("monitor_id")
        if not isinstance(mid, str):
            return
        if obj.get("stopped") is True:
            self.monitors.discard(mid)
            waiter = self._removing.pop(mid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(obj)
            else:
                self.on_end(mid, obj)
        elif mid in self._adding:
            fut = self._adding[mid]
            if not fut.done():
                fut.set_result(obj)
        elif "error" in obj and mid in self._removing:  # the tracer did not know it
            fut = self._removing.pop(mid)
            if not fut.done():
                fut.set_result(obj)

    async def _close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and proc.stdin is not None:
            proc.stdin.close()  # EOF: it ends every monitor left and exits
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), self.opts.stop_timeout_s)
            except TimeoutError:
                await self._kill(proc)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._proc is proc:
            self._forget()

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 3.0)

    def _forget(self) -> None:
        self._proc = None
        if self._record is not None:
            self._record.unlink(missing_ok=True)
            self._record = None


async def _readline(stream: asyncio.StreamReader) -> bytes:
    """The next line; one longer than the stream's limit is skipped; b"" at EOF."""
    while True:
        try:
            return await stream.readline()
        except ValueError:
            continue


async def _settle(task: asyncio.Task[None], timeout: float = 2.0) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _json_object(line: bytes) -> Line | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
