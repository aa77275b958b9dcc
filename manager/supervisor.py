"""Agents: start them on validated commands, watch them, stop them, reap stray ones.

Nothing from the network reaches ``exec`` unchecked: the agent's command line is built from
the allow-list ``AGENT_TYPES`` and checked values by manager/agent_args.py, from what
manager/target_facts.py read of the target. No shell is involved.

Restart safety, two independent layers:

1. Each agent runs under ``setpriv --pdeathsig TERM`` (util-linux; it sets
   ``PR_SET_PDEATHSIG`` and execs the agent, so no ``preexec_fn`` runs in the forked child of
   a process with ZeroMQ threads). If the manager dies, even by SIGKILL, the kernel sends
   every agent SIGTERM and each flushes and exits.
2. Each agent has a record ``<runtime_dir>/agents/<monitor_id>.json`` (pid, its start time in
   clock ticks from ``/proc/<pid>/stat``, the agent path, the monitor id) from spawn to exit.
   A starting manager takes ``<runtime_dir>/manager.lock`` (so two managers never share
   records) and reaps every recorded agent still alive: it opens a pidfd, checks that the
   process has the recorded start time and an agent command line for that monitor (a reused
   pid is never signalled), sends SIGTERM, waits, then SIGKILL.

SYSCALL monitors are the exception to one agent per monitor: they are slots of the machine's
one SYSCALL tracer (manager/syscall_hub.py), started with the first and ended after the last,
whose pid each reports as its agent_pid; its own record makes it reaped like an agent.

STOP is idempotent: a running monitor is stopped (SIGTERM, ``agent_stop_timeout_s``,
SIGKILL); one this manager knows as already STOPPED or ERROR answers SUCCESS again; an id it
never ran (or ran before a restart) answers MONITOR_NOT_FOUND, which the backend treats as
stopped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import stat
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from manager import keys
from manager.agent_args import AgentType, agent_args, check_command, key_dir, keyfile
from manager.protected import platform_pids
from manager.reaper import reap_orphans, write_record
from manager.settings import Settings
from manager.syscall_hub import HubGone, HubOptions, SyscallHub
from manager.target_facts import read_facts
from manager.tasks import cancel_all
from xpucore.exit_codes import AGENT_EXIT
from xpucore.probes import PROBES
from xpucore.protocol import CommandError, ErrorCode, MonitorStatus, StartMonitor, isotime

__all__ = [
    "AGENT_EXIT_CODES",
    "AGENT_TYPES",
    "AgentType",
    "Monitor",
    "Supervisor",
    "reap_orphans",
]

log = logging.getLogger(__name__)


_BUFFERS = ("ringbuf_kb", "batch_events", "flush_ms")


# The allow-list: monitor type → probe. A type not here is refused as INVALID_CONFIG.
# sampling_rate (only 1.0: every call is recorded) and enable_profiling (only false) are
# options of none: they are refused with any other value.
AGENT_TYPES: Mapping[str, AgentType] = {
    "CUDA": AgentType(
        probe="cuda",
        library_patterns=PROBES["CUDA"].libraries,
        target=("pid", "library_path", "comm"),
        config=("python_stacks", "attach_mode", "window", *_BUFFERS),
    ),
    "ACL": AgentType(
        probe="acl",
        library_patterns=PROBES["ACL"].libraries,
        target=("pid", "library_path", "comm"),
        config=("python_stacks", "attach_mode", "window", *_BUFFERS),
    ),
    "SYSCALL": AgentType(
        probe="syscall",
        library_patterns=(),
        target=("pid", "comm", "syscalls"),
        config=_BUFFERS,
        comm_filter=True,
    ),
    "PYTHON": AgentType(
        probe="python",
        library_patterns=(),
        target=("pid", "comm"),
        config=("sample_hz", "functions", "window", *_BUFFERS),
    ),
}

# xputrace-agent's exit codes before it printed "ready" (enum agent_exit): each whose name,
# or name without AGENT_, is an error code (AGENT_INVALID_CONFIG: INVALID_CONFIG)
AGENT_EXIT_CODES: Mapping[int, ErrorCode] = {
    code: ErrorCode[n]
    for name, code in AGENT_EXIT.items()
    for n in {name, name.removeprefix("AGENT_")}
    if n in ErrorCode.__members__
}

AGENT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
STDERR_TAIL_LINES = 8
STDERR_LINE_MAX = 500
MAX_FINISHED = 1000  # finished monitors remembered for GET_STATUS and idempotent STOP
LINE_LIMIT = 1 << 20


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Monitor:
    monitor_id: str
    monitor_type: str
    spec: StartMonitor
    start_time: datetime
    status: MonitorStatus = MonitorStatus.STARTING
    agent_pid: int | None = None
    stop_time: datetime | None = None
    message: str | None = None  # why it stopped, for STOPPED and ERROR
    error_message: str | None = None  # ERROR only
    exit_code: int | None = None  # the agent's exit status, or -signal
    stats: dict[str, Any] | None = None
    libraries: list[str] = field(default_factory=list)
    stopping: bool = False
    in_hub: bool = False  # a slot of the SYSCALL tracer, not an agent of its own
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    stderr_tail: deque[str] = field(
        default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES), repr=False
    )
    keyfile: Path | None = field(default=None, repr=False)
    record: Path | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return not self.finished.is_set()

    def summary(self) -> dict[str, Any]:
        """One entry of GET_STATUS's active_monitors (and of HELLO/HEARTBEAT)."""
        return {
            "monitor_id": self.monitor_id,
            "agent_pid": self.agent_pid,
            "start_time": isotime(self.start_time),
            "monitor_type": self.monitor_type,
        }

    def status_reply(self, request_id: str) -> dict[str, Any]:
        """GET_STATUS for this monitor: the seed's fields."""
        reply: dict[str, Any] = {
            "request_id": request_id,
            "status": "SUCCESS",
            "monitor_id": self.monitor_id,
            "monitor_status": str(self.status),
            "start_time": isotime(self.start_time),
        }
        if self.active and self.agent_pid is not None:
            reply["agent_pid"] = self.agent_pid
        if self.status == MonitorStatus.ERROR:
            reply["error_message"] = self.error_message
        return reply

    def stderr_text(self) -> str:
        return "; ".join(self.stderr_tail)


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        return f"agent killed by signal {name}"
    code = AGENT_EXIT_CODES.get(rc)
    return f"agent exited with code {rc}" + (f" ({code})" if code else "")


def _agent_reason(tail: deque[str]) -> str | None:
    """The message of the agent's last ``xputrace-agent: NAME: message`` line."""
    for line in reversed(tail):
        parts = line.split(": ", 2)
        if len(parts) == 3 and parts[0] == "xputrace-agent" and parts[1].isupper():
            return parts[2]
    return None


def _private_dir(path: Path) -> Path:
    """A directory only this user can enter; refuses a symlink or someone else's."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory owned by uid {os.geteuid()}")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


# --------------------------------------------------------------------------------- supervisor


class Supervisor:
    """Runs one agent per monitor. Use as ``async with Supervisor(...)``: entering takes the
    runtime dir's lock and reaps agents a previous manager left; leaving stops every agent.
    """

    def __init__(
        self,
        settings: Settings,
        machine_id: str,
        *,
        proc_root: Path = Path("/proc"),
        on_status: Callable[[Monitor], None] | None = None,
    ) -> None:
        self.settings = settings
        self.machine_id = machine_id
        self.proc_root = proc_root
        self.on_status = on_status
        self.runtime_dir = settings.runtime_dir
        self.records = settings.runtime_dir / "agents"
        self.keydir = key_dir(settings)
        self._monitors: OrderedDict[str, Monitor] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock_fd: int | None = None
        self._setpriv: str | None = None
        self._hub: SyscallHub | None = None

    @property
    def monitor_types(self) -> dict[str, dict[str, list[str]]]:
        """Each monitor type this manager runs, with the target and config keys it honours
        (HELLO's monitor_types)."""
        return {name: kind.options() for name, kind in AGENT_TYPES.items()}

    # -- lifecycle

    async def __aenter__(self) -> Supervisor:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        _private_dir(self.runtime_dir)
        _private_dir(self.records)
        _private_dir(self.keydir)
        if self.settings.capture_dir is not None:
            _private_dir(self.settings.capture_dir)
        fd = os.open(
            self.runtime_dir / "manager.lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RuntimeError(f"another manager is using {self.runtime_dir}") from None
            raise
        self._lock_fd = fd
        for stale in self.keydir.iterdir():
            stale.unlink(missing_ok=True)
        reaped = await asyncio.to_thread(
            reap_orphans,
            self.records,
            self.proc_root,
            self.settings.agent_stop_timeout_s,
            self.settings.agent_kill_timeout_s,
        )
        if reaped:
            log.warning("stopped %d agent(s) left by a previous manager: %s", len(reaped), reaped)
        setpriv = self.settings.setpriv_path
        if self.settings.pdeathsig:
            if os.access(setpriv, os.X_OK):
                self._setpriv = str(setpriv)
            else:
                log.warning(
                    "%s not found: agents will not get SIGTERM if the manager dies "
                    "(the next manager still reaps them)",
                    setpriv,
                )
        s = self.settings
        self._hub = SyscallHub(
            HubOptions(
                agent_path=s.agent_path,
                machine_id=self.machine_id,
                records=self.records,
                proc_root=self.proc_root,
                env=AGENT_ENV,
                setpriv=self._setpriv,
                ready_timeout_s=s.agent_ready_timeout_s,
                stop_timeout_s=s.agent_stop_timeout_s,
                line_limit=LINE_LIMIT,
            ),
            on_end=self._hub_monitor_ended,
            on_exit=self._hub_exited,
        )

    async def close(self) -> None:
        await self.stop_all()
        if self._hub is not None:
            await self._hub.close()
        await cancel_all(list(self._tasks))
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock(self, monitor_id: str) -> asyncio.Lock:
        lock = self._locks.get(monitor_id)
        if lock is None:
            lock = self._locks[monitor_id] = asyncio.Lock()
        return lock

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- queries

    def get(self, monitor_id: str) -> Monitor | None:
        return self._monitors.get(monitor_id)

    def active(self) -> list[Monitor]:
        return [
            m for m in self._monitors.values() if m.active and m.status == MonitorStatus.RUNNING
        ]

    # -- START

    def _fail(self, code: ErrorCode, message: str) -> CommandError:
        return CommandError(code, message)

    def _own_pids(self) -> list[int]:
        """The agents and the SYSCALL tracer: never a target."""
        own = [m.agent_pid for m in self._monitors.values() if m.agent_pid is not None]
        if self._hub is not None and self._hub.pid is not None:
            own.append(self._hub.pid)
        return own

    async def start(self, cmd: StartMonitor) -> Monitor:
        """Starts (or, for a retried identical START, returns) the monitor's agent; raises
        CommandError with the seed's error code."""
        async with self._lock(cmd.monitor_id):
            old = self._monitors.get(cmd.monitor_id)
            if old is not None and old.active:
                if replace(old.spec, request_id="") == replace(cmd, request_id=""):
                    return old
                raise self._fail(
                    ErrorCode.INVALID_CONFIG,
                    f"monitor_id: '{cmd.monitor_id}' is already running with another configuration",
                )
            s = self.settings
            check_command(cmd, AGENT_TYPES, s, self.machine_id)  # before anything is read
            facts = await asyncio.to_thread(
                read_facts, cmd, self.proc_root, agent_path=s.agent_path, own=self._own_pids()
            )
            args = agent_args(cmd, AGENT_TYPES, s, self.machine_id, facts)
            if sum(m.active for m in self._monitors.values()) >= self.settings.max_monitors:
                raise self._fail(
                    ErrorCode.AGENT_START_FAILED,
                    f"this manager already runs {self.settings.max_monitors} monitors",
                )
            m = Monitor(cmd.monitor_id, cmd.monitor_type, cmd, _now())
            self._remember(m)
            try:
                if cmd.monitor_type == "SYSCALL":
                    await self._launch_in_hub(m, args)
                else:
                    await self._launch(m, args)
            except BaseException as e:
                await self._abort(m, e)
                raise
            return m

    def _remember(self, m: Monitor) -> None:
        self._monitors.pop(m.monitor_id, None)
        self._monitors[m.monitor_id] = m
        finished = [k for k, v in self._monitors.items() if not v.active]
        for k in finished[: max(0, len(finished) - MAX_FINISHED)]:
            del self._monitors[k]

    def _agent(self, m: Monitor) -> str:
        """The agent binary (checked executable); the monitor's CURVE key file is written
        now, when its data goes to the backend."""
        s = self.settings
        agent = str(s.agent_path)
        if not os.access(agent, os.X_OK):
            raise self._fail(ErrorCode.AGENT_START_FAILED, f"agent {agent} is not executable")
        m.keyfile = keyfile(m.spec, s)
        if m.keyfile is not None:
            keys.write_agent_keyfile(m.keyfile, s.data_key, s.public_key, s.secret_key)
        return agent

    async def _launch(self, m: Monitor, args: list[str]) -> None:
        s = self.settings
        agent = self._agent(m)
        argv = [agent, *args]
        if self._setpriv:
            argv = [self._setpriv, "--pdeathsig", "TERM", "--", *argv]
        log.info("monitor %s: starting %s", m.monitor_id, " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=AGENT_ENV,
                cwd="/",
                start_new_session=True,
                limit=LINE_LIMIT,
            )
        except OSError as e:
            raise self._fail(
                ErrorCode.AGENT_START_FAILED, f"cannot run agent {agent}: {e.strerror or e}"
            ) from None
        m.proc = proc
        self._write_record(m, proc.pid, agent)
        assert proc.stdout is not None and proc.stderr is not None
        stderr_done = asyncio.get_running_loop().create_task(self._drain_stderr(m, proc.stderr))
        try:
            ready = await asyncio.wait_for(self._read_ready(proc.stdout), s.agent_ready_timeout_s)
        except TimeoutError:
            await self._kill(proc)
            await _settle(stderr_done)
            tail = m.stderr_text()
            raise self._fail(
                ErrorCode.AGENT_START_FAILED,
                f"agent not ready within {s.agent_ready_timeout_s:g}s"
                + (f": {tail}" if tail else ""),
            ) from None
        except BaseException:
            await self._kill(proc)
            stderr_done.cancel()
            raise
        if ready is None:  # it exited (or closed stdout) before it was ready
            try:
                rc = await asyncio.wait_for(proc.wait(), s.agent_kill_timeout_s)
            except TimeoutError:
                await self._kill(proc)
                rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
            await _settle(stderr_done)
            m.exit_code = rc
            code = AGENT_EXIT_CODES.get(rc, ErrorCode.AGENT_START_FAILED)
            reason = _agent_reason(m.stderr_tail) or m.stderr_text()
            raise self._fail(
                code,
                f"{reason} ({_describe_exit(rc)})"
                if reason
                else f"{_describe_exit(rc)} before it was ready",
            )
        m.agent_pid = proc.pid
        m.libraries = [str(x) for x in ready.get("libraries", []) if isinstance(x, str)]
        m.status = MonitorStatus.RUNNING
        if m.keyfile is not None:  # the agent read it before printing ready
            m.keyfile.unlink(missing_ok=True)
        log.info(
            "monitor %s: agent pid %d ready (%s probes on %s)",
            m.monitor_id,
            proc.pid,
            ready.get("probes"),
            ", ".join(m.libraries) or "-",
        )
        self._spawn_task(self._watch(m, proc, stderr_done))

    async def _launch_in_hub(self, m: Monitor, args: list[str]) -> None:
        """Adds the monitor to the SYSCALL tracer (started first if need be) with the flags its
        own agent would have had; the platform's processes of its task name are skipped."""
        s = self.settings
        assert self._hub is not None
        self._agent(m)  # the tracer runs the same binary
        comm = m.spec.target.comm
        exclude: list[int] = []
        if comm is not None and m.spec.target.pid is None:
            own = [x.agent_pid for x in self._monitors.values() if x.agent_pid is not None]
            exclude = await asyncio.to_thread(
                platform_pids, comm, self.proc_root, agent_path=s.agent_path, own=own
            )
        m.in_hub = True
        log.info("monitor %s: adding to the SYSCALL tracer: %s", m.monitor_id, " ".join(args))
        try:
            line = await self._hub.add(m.monitor_id, args, exclude)
        except HubGone as e:
            code = AGENT_EXIT_CODES.get(e.rc, ErrorCode.AGENT_START_FAILED)
            reason = _agent_reason(deque(e.tail.split("; "))) or e.tail
            raise self._fail(
                code,
                f"{reason} (SYSCALL tracer: {_describe_exit(e.rc)})"
                if reason
                else f"SYSCALL tracer: {_describe_exit(e.rc)}",
            ) from None
        except TimeoutError:
            raise self._fail(
                ErrorCode.AGENT_START_FAILED,
                f"SYSCALL tracer did not answer within {s.agent_ready_timeout_s:g}s",
            ) from None
        if line.get("ready") is not True:
            rc = line.get("exit_code")
            code = AGENT_EXIT_CODES.get(
                rc if isinstance(rc, int) else 5, ErrorCode.AGENT_START_FAILED
            )
            raise self._fail(
                code, f"{line.get('message')} (SYSCALL tracer refused it: {line.get('error')})"
            )
        m.agent_pid = int(line["pid"])
        m.status = MonitorStatus.RUNNING
        if m.keyfile is not None:  # the tracer read it before it answered
            m.keyfile.unlink(missing_ok=True)
        log.info(
            "monitor %s: slot %s of the SYSCALL tracer pid %d",
            m.monitor_id,
            line.get("slot"),
            m.agent_pid,
        )

    def _hub_monitor_ended(self, monitor_id: str, line: dict[str, Any]) -> None:
        """A SYSCALL monitor the tracer ended on its own (its target exited, its output
        failed)."""
        m = self._monitors.get(monitor_id)
        if m is None or not m.in_hub or not m.active:
            return
        if isinstance(line.get("stats"), dict):
            m.stats = line["stats"]
        if isinstance(line.get("reason"), str):
            m.stderr_tail.append(line["reason"][:STDERR_LINE_MAX])
        rc = line.get("exit_code")
        self._finalize(m, rc if isinstance(rc, int) else 1)
        self._release_hub()

    def _hub_exited(self, rc: int, tail: str, served: set[str]) -> None:
        """The tracer ended: each monitor it still served ends with its status (ERROR unless
        the monitor was being stopped)."""
        for m in list(self._monitors.values()):
            if m.in_hub and m.active and m.status == MonitorStatus.RUNNING:
                m.stderr_tail.append(
                    f"SYSCALL tracer pid {m.agent_pid} ended" + (f": {tail}" if tail else "")
                )
                self._finalize(m, rc or (0 if m.stopping else 1))

    def _release_hub(self) -> None:
        if self._hub is not None:
            self._spawn_task(self._hub.release_if_idle())

    def _write_record(self, m: Monitor, pid: int, agent: str) -> None:
        m.record = write_record(
            self.records, m.monitor_id, pid, agent, isotime(m.start_time), self.proc_root
        )

    async def _abort(self, m: Monitor, e: BaseException) -> None:
        """A START that failed: nothing keeps running, the monitor is remembered as ERROR."""
        if m.proc is not None and m.proc.returncode is None:
            await self._kill(m.proc)
        m.status = MonitorStatus.ERROR
        m.stop_time = _now()
        m.error_message = m.message = e.message if isinstance(e, CommandError) else repr(e)
        self._cleanup(m)
        m.finished.set()

    def _cleanup(self, m: Monitor) -> None:
        for p in (m.keyfile, m.record):
            if p is not None:
                p.unlink(missing_ok=True)

    async def _read_ready(self, stdout: asyncio.StreamReader) -> dict[str, Any] | None:
        """The agent's ``{"ready": true, ...}`` line, or None at EOF."""
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # a line longer than LINE_LIMIT: not ours
                continue
            if not line:
                return None
            obj = _json_object(line)
            if obj is not None and obj.get("ready") is True:
                return obj

    async def _drain_stderr(self, m: Monitor, stderr: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text:
                m.stderr_tail.append(text[:STDERR_LINE_MAX])
                log.info("monitor %s: %s", m.monitor_id, text[:STDERR_LINE_MAX])

    async def _watch(
        self, m: Monitor, proc: asyncio.subprocess.Process, stderr_done: asyncio.Task[None]
    ) -> None:
        """Follows a running agent to its exit; reports exits nobody asked for."""
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                obj = _json_object(line)
                if obj is not None and isinstance(obj.get("stats"), dict):
                    m.stats = obj["stats"]
        except ValueError:
            await proc.stdout.read()
        rc = await proc.wait()
        await _settle(stderr_done)
        self._finalize(m, rc)

    def _finalize(self, m: Monitor, rc: int) -> None:
        """Records the agent's exit (once); reports it if nobody asked for it."""
        if m.finished.is_set():
            return
        m.exit_code, m.stop_time = rc, _now()
        how = _describe_exit(rc)
        tail = m.stderr_text()
        if m.stopping:
            m.status = MonitorStatus.STOPPED
            m.message = "stopped on request" + ("" if rc == 0 else f" ({how})")
        elif rc == 0:
            m.status = MonitorStatus.STOPPED
            m.message = "agent exited" + (f": {tail}" if tail else "")
        elif rc == AGENT_EXIT["AGENT_WINDOW_CLOSED"] and m.spec.config.window is not None:
            m.status = MonitorStatus.STOPPED
            m.message = m.spec.config.window.closed()
        else:
            m.status = MonitorStatus.ERROR
            m.message = m.error_message = how + (f": {tail}" if tail else "")
        log.log(
            logging.INFO if m.status == MonitorStatus.STOPPED else logging.WARNING,
            "monitor %s: %s (%s), stats %s",
            m.monitor_id,
            m.status,
            m.message,
            m.stats,
        )
        self._cleanup(m)
        m.finished.set()
        if not m.stopping and self.on_status is not None:
            try:
                self.on_status(m)
            except Exception:
                log.exception("monitor %s: status callback failed", m.monitor_id)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM, a short wait, SIGKILL: for agents that never got as far as running."""
        kill_wait = self.settings.agent_kill_timeout_s
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, kill_wait)):
            if proc.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), wait)

    # -- STOP

    async def stop(self, monitor_id: str) -> tuple[Monitor, bool]:
        """Stops the monitor's agent; returns (monitor, it was already stopped)."""
        async with self._lock(monitor_id):
            m = self._monitors.get(monitor_id)
            if m is None:
                raise self._fail(
                    ErrorCode.MONITOR_NOT_FOUND,
                    f"Monitor with id '{monitor_id}' not found or already stopped.",
                )
            if not m.active:
                return m, True
            if m.in_hub:
                return await self._stop_in_hub(m), False
            assert m.proc is not None
            m.stopping = True
            s = self.settings
            for sig, wait in (
                (signal.SIGTERM, s.agent_stop_timeout_s),
                (signal.SIGKILL, s.agent_kill_timeout_s),
            ):
                if m.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        m.proc.send_signal(sig)
                try:
                    # the process itself, not the watcher task: that one may be cancelled
                    # when the whole manager is going down
                    rc = await asyncio.wait_for(asyncio.shield(m.proc.wait()), wait)
                except TimeoutError:
                    log.warning(
                        "monitor %s: agent pid %s still running %.0fs after %s",
                        m.monitor_id,
                        m.agent_pid,
                        wait,
                        sig.name,
                    )
                    continue
                # let the watcher read the stats line and finish; finish for it if it is gone
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(m.finished.wait(), 2.0)
                self._finalize(m, rc)
                return m, False
            raise self._fail(
                ErrorCode.AGENT_STOP_FAILED,
                f"agent pid {m.agent_pid} of monitor '{monitor_id}' did not exit "
                "after SIGTERM and SIGKILL",
            )

    async def _stop_in_hub(self, m: Monitor) -> Monitor:
        """Ends a SYSCALL monitor's slot: the tracer answers once its final batch is
        delivered (or given up on after its linger)."""
        s = self.settings
        assert self._hub is not None
        m.stopping = True
        try:
            line = await self._hub.remove(
                m.monitor_id, s.agent_stop_timeout_s + s.agent_kill_timeout_s
            )
        except HubGone:
            self._finalize(m, 0)  # no-op when the tracer's end was already recorded
            return m
        except TimeoutError:
            raise self._fail(
                ErrorCode.AGENT_STOP_FAILED,
                f"SYSCALL tracer pid {m.agent_pid} did not end monitor '{m.monitor_id}' in time",
            ) from None
        if isinstance(line.get("stats"), dict):
            m.stats = line["stats"]
        rc = line.get("exit_code")
        self._finalize(m, rc if isinstance(rc, int) else 0)
        self._release_hub()
        return m

    async def stop_all(self) -> list[Monitor]:
        """Stops every running agent (manager shutdown); returns the monitors stopped."""
        running = [
            m for m in self._monitors.values() if m.active and (m.proc is not None or m.in_hub)
        ]
        results = await asyncio.gather(
            *(self.stop(m.monitor_id) for m in running), return_exceptions=True
        )
        for m, r in zip(running, results, strict=True):
            if isinstance(r, BaseException):
                log.error("monitor %s: %s", m.monitor_id, r)
        return running


async def _settle(task: asyncio.Task[None], timeout: float = 2.0) -> None:
    """Waits for a stderr drain after its process exited; a grandchild holding the pipe open
    does not keep us waiting."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
