"""The control channel's client: a CURVE DEALER that dials the backend's ROUTER.

The manager dials out (it works behind NAT); the backend routes commands by the DEALER's
routing id, which is the machine id. After every completed CURVE handshake (first connect
and every reconnect, e.g. after the backend restarted) the manager sends HELLO; it sends
HEARTBEAT every ``heartbeat_interval_s`` while connected, answers each command in its own
task (a slow START never holds up a STOP or a heartbeat), and pushes MONITOR_STATUS when an
agent exits on its own. The messages are defined in ``xpucore.protocol``.

``IMMEDIATE`` is set, so nothing queues while there is no authenticated backend: heartbeats
are skipped, replies wait up to ``reply_timeout_s``, MONITOR_STATUS events wait (in order)
for the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from manager.identity import Identity
from manager.job_reports import JobReporter
from manager.settings import Settings
from manager.supervisor import Monitor, Supervisor
from manager.tasks import cancel_all
from xpucore import clock_sync, protocol
from xpucore.clock_sync import ClockFilter
from xpucore.job_wire import WireError
from xpucore.protocol import (
    CommandError,
    ErrorCode,
    GetStatus,
    StartMonitor,
    StopJob,
    StopMonitor,
)

__all__ = ["ControlClient"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
EVENT_QUEUE_MAX = 10_000
_MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_MONITOR_STOPPED
)


def _now() -> datetime:
    return datetime.now(UTC)


def _clock_echo(frames: list[bytes]) -> dict[str, Any] | None:
    """The CLOCK_ECHO these frames are, if they are one (else: a command, for _answer)."""
    if len(frames) != 1 or protocol.CLOCK_ECHO.encode() not in frames[0][:128]:
        return None
    try:
        msg = protocol.decode(frames[0])
    except CommandError:
        return None
    return msg if msg.get("event") == protocol.CLOCK_ECHO else None


class ControlClient:
    """Use as ``async with ControlClient(...)``: entering dials the backend; leaving flushes
    queued MONITOR_STATUS events (briefly), says GOODBYE and closes the socket."""

    def __init__(
        self,
        settings: Settings,
        identity: Identity,
        supervisor: Supervisor,
        *,
        context: zmq.asyncio.Context | None = None,
        jobs: JobReporter | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs  # AI jobs: reported after each HELLO and as they change; STOP_JOB
        self.identity = identity
        self.supervisor = supervisor
        self._own_context = context is None
        self.context = context or zmq.asyncio.Context()
        self.connected = asyncio.Event()  # HELLO went out on the current connection
        self.handshakes = 0
        self.auth_failures = 0
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE_MAX)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._commands: set[asyncio.Task[Any]] = set()
        self._seq = 0
        self.clock = ClockFilter()  # this machine's clock against the backend's
        self.jobs_missed = 0  # job events dropped (queue full) since the last resync
        self._probe: tuple[int, int, int] | None = None  # the last CLOCK_PROBE: seq, t1, mono
        self._sock: zmq.asyncio.Socket | None = None
        self._mon: zmq.asyncio.Socket | None = None
        self._redial: asyncio.Task[None] | None = None

    # -- lifecycle

    async def __aenter__(self) -> ControlClient:
        self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def open(self) -> None:
        s = self.settings
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.identity.machine_id.encode())
        sock.curve_serverkey = s.server_public_key
        sock.curve_publickey = s.public_key
        sock.curve_secretkey = s.secret_key
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.RECONNECT_IVL, 200)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        ivl = max(100, int(s.heartbeat_interval_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)  # ZMTP pings find a dead TCP peer
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
        self._mon = sock.get_monitor_socket(_MONITOR_EVENTS)
        sock.connect(s.backend)
        self._sock = sock
        for coro in (
            self._watch_connection(),
            self._receive(),
            self._heartbeats(),
            self._send_events(),
        ):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
        log.info("dialing %s as machine %s", s.backend, self.identity.machine_id)

    async def close(self, flush_timeout_s: float = 2.0) -> None:
        if self._sock is None:
            return
        await cancel_all(list(self._commands))
        if self.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), flush_timeout_s)
        await cancel_all(list(self._tasks))
        self._tasks.clear()
        if self.connected.is_set():
            with contextlib.suppress(TimeoutError, zmq.ZMQError):
                await self._send(protocol.goodbye(self.identity.machine_id, _now()), 1.0)
        sock, self._sock = self._sock, None
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        if self._mon is not None:
            self._mon.close(linger=0)
            self._mon = None
        sock.close(linger=500 if self.connected.is_set() else 0)
        self.connected.clear()
        if self._own_context:
            self.context.term()

    # -- outgoing

    async def _send(self, msg: dict[str, Any], timeout: float) -> None:
        assert self._sock is not None
        async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel (3.11)
            await self._sock.send(protocol.encode(msg))

    def notify(self, m: Monitor) -> None:
        """Queues a MONITOR_STATUS event for m's current state (the supervisor's callback)."""
        msg = protocol.monitor_status(
            self.identity.machine_id,
            m.monitor_id,
            m.status,
            m.agent_pid,
            m.exit_code,
            m.message,
            m.error_message,
            m.stop_time,
            _now(),
            m.stats,
        )
        try:
            self._events.put_nowait(msg)
        except asyncio.QueueFull:
            log.error("event queue full: MONITOR_STATUS %s %s dropped", m.monitor_id, m.status)

    def emit(self, msg: dict[str, Any]) -> None:
        """Queues an event (a job's, from the JobReporter) for the backend, in order. One
        dropped because the queue is full is made good by a snapshot of the jobs, queued once
        the queue has room again (resync_jobs)."""
        try:
            self._events.put_nowait(msg)
        except asyncio.QueueFull:
            self.jobs_missed += 1
            log.error("event queue full: %s dropped; a job snapshot will follow", msg.get("event"))

    async def resync_jobs(self) -> bool:
        """After job events were dropped: queues a JOB_SNAPSHOT and a JOB_SEEN of each live job
        (the backend settles what it missed: a job whose end was dropped becomes lost), once
        the queue is at most half full. Whether it did."""
        if not self.jobs_missed or self.jobs is None:
            return False
        if self._events.qsize() > EVENT_QUEUE_MAX // 2:
            return False
        missed, self.jobs_missed = self.jobs_missed, 0
        log.warning("%d job events were dropped: queueing a snapshot of the jobs", missed)
        for msg in await self.jobs.snapshot(settle_s=0.0):
            self.emit(msg)
        return True

    def _hello(self) -> dict[str, Any]:
        i = self.identity
        return protocol.hello(
            i.machine_id,
            i.hostname,
            i.os_info,
            [a.to_json() for a in i.accelerators],
            i.version,
            self.supervisor.monitor_types,
            self._active(),
            _now(),
        )

    def _active(self) -> list[dict[str, Any]]:
        return [m.summary() for m in self.supervisor.active()]

    async def _watch_connection(self) -> None:
        assert self._mon is not None
        while True:
            ev = await recv_monitor_message(self._mon)
            kind = ev["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
                try:
                    await self._send(self._hello(), self.settings.reply_timeout_s)
                    if self.jobs is not None:  # before anything queued: the backend's view
                        for msg in await self.jobs.snapshot():  # of the jobs is whole again
                            await self._send(msg, self.settings.reply_timeout_s)
                except TimeoutError:
                    log.warning("HELLO not sent within %.0fs", self.settings.reply_timeout_s)
                    continue
                self.connected.set()
                log.info("registered with the backend at %s", self.settings.backend)
                await self._probe_clock()  # so that the first heartbeat can carry a clock
            elif kind == zmq.EVENT_DISCONNECTED:
                if self.connected.is_set():
                    log.warning("lost the backend at %s; reconnecting", self.settings.backend)
                self.connected.clear()
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.auth_failures += 1
                log.error(
                    "the backend at %s refused this manager's key (not enrolled?); retrying in %gs",
                    self.settings.backend,
                    self.settings.auth_retry_s,
                )
                self._redial_later()
            elif kind in (
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            ):
                self.auth_failures += 1  # libzmq retries these itself
                log.warning(
                    "CURVE handshake with %s failed (wrong server key, or the backend "
                    "went away mid-handshake)",
                    self.settings.backend,
                )
            elif kind == zmq.EVENT_MONITOR_STOPPED:
                return

    def _redial_later(self) -> None:
        """libzmq does not reconnect after a refused handshake; the key may be enrolled (or
        the backend fixed) later, so dial again after auth_retry_s."""
        if self._redial is None or self._redial.done():
            self._redial = asyncio.get_running_loop().create_task(self._dial_again())
            self._tasks.add(self._redial)
            self._redial.add_done_callback(self._tasks.discard)

    async def _dial_again(self) -> None:
        await asyncio.sleep(self.settings.auth_retry_s)
        assert self._sock is not None
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disconnect(self.settings.backend)
        self._sock.connect(self.settings.backend)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            if not self.connected.is_set():
                continue
            self._seq += 1
            msg = protocol.heartbeat(
                self.identity.machine_id, self._seq, self._active(), _now(), self.clock_report()
            )
            try:
                await self._send(msg, min(1.0, self.settings.heartbeat_interval_s))
            except TimeoutError:
                log.debug("heartbeat %d not sent: no backend", self._seq)
                continue
            await self._probe_clock()
            await self.resync_jobs()

    # -- the clock (xpucore.clock_sync): a CLOCK_PROBE with each heartbeat

    def _wall_ns(self) -> int:
        return time.time_ns() + self.settings.test_clock_skew_ns

    async def _probe_clock(self) -> None:
        seq = self._seq
        t1, mono1 = self._wall_ns(), time.monotonic_ns()
        self._probe = (seq, t1, mono1)
        try:
            msg = protocol.clock_probe(self.identity.machine_id, seq, t1)
            await self._send(msg, min(1.0, self.settings.heartbeat_interval_s))
        except TimeoutError:
            log.debug("clock probe %d not sent: no backend", seq)

    def _on_echo(self, msg: dict[str, Any], t4: int, mono4: int) -> None:
        try:
            seq, t1, t2, t3 = clock_sync.check_echo(msg)
        except WireError as e:
            log.warning("CLOCK_ECHO refused: %s", e)
            return
        probe = self._probe
        if probe is None or (seq, t1) != probe[:2]:
            log.debug("CLOCK_ECHO %d answers no probe awaited: ignored", seq)
            return
        self._probe = None
        s = clock_sync.sample(t1, t2, t3, t4, probe[2], mono4)
        if s is None:
            log.info("clock sample %d dropped: inconsistent (a clock was stepped?)", seq)
            return
        self.clock.add(s)

    def clock_report(self) -> dict[str, int] | None:
        """The best estimate of this clock against the backend's, for a HEARTBEAT."""
        best = self.clock.best(time.monotonic_ns())
        if best is None:
            return None
        return {
            "offset_ns": best.offset_ns,
            "error_ns": best.error_ns,
            "measured_at_ns": best.measured_at_ns,
        }

    async def _send_events(self) -> None:
        while True:
            msg = await self._events.get()
            try:
                while True:
                    await self.connected.wait()
                    try:
                        await self._send(msg, self.settings.reply_timeout_s)
                        break
                    except TimeoutError:
                        continue
            finally:
                self._events.task_done()

    # -- incoming

    async def _receive(self) -> None:
        assert self._sock is not None
        while True:
            frames = await self._sock.recv_multipart()
            t4, mono4 = self._wall_ns(), time.monotonic_ns()
            echo = _clock_echo(frames)
            if echo is not None:
                self._on_echo(echo, t4, mono4)
                continue
            task = asyncio.get_running_loop().create_task(self._answer(frames))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    async def _answer(self, frames: list[bytes]) -> None:
        # One frame; an empty delimiter before it (REQ-style) is tolerated and echoed back.
        prefix: list[bytes] = []
        while len(frames) > 1 and frames[0] == b"":
            prefix.append(frames.pop(0))
        if len(frames) != 1:
            reply = protocol.failure(
                None,
                None,
                ErrorCode.INVALID_CONFIG,
                f"message: expected one frame, got {len(frames)}",
            )
        else:
            reply = await self.handle(frames[0])
        assert self._sock is not None
        try:
            async with asyncio.timeout(self.settings.reply_timeout_s):
                await self._sock.send_multipart([*prefix, protocol.encode(reply)])
        except TimeoutError:
            log.warning("reply to %s dropped: no backend", reply.get("request_id"))

    async def handle(self, frame: bytes) -> dict[str, Any]:
        """One command frame → its reply; never raises."""
        try:
            cmd = protocol.parse_command(frame, self.supervisor.monitor_types)
        except CommandError as e:
            log.warning("refused command: %s", e.message)
            return e.reply()
        if isinstance(cmd, StopJob):
            return await self._stop_job(cmd)
        try:
            if isinstance(cmd, StartMonitor):
                m = await self.supervisor.start(cmd)
                return {
                    "request_id": cmd.request_id,
                    "status": "SUCCESS",
                    "monitor_id": cmd.monitor_id,
                    "message": "Monitor started successfully.",
                    "agent_pid": m.agent_pid,
                }
            if isinstance(cmd, StopMonitor):
                m, already = await self.supervisor.stop(cmd.monitor_id)
                return {
                    "request_id": cmd.request_id,
                    "status": "SUCCESS",
                    "monitor_id": cmd.monitor_id,
                    "message": "Monitor already stopped."
                    if already
                    else "Monitor stopped successfully.",
                    **protocol.agent_counts(m.stats),
                }
            return self._status(cmd)
        except CommandError as e:
            e.request_id, e.monitor_id = cmd.request_id, cmd.monitor_id
            log.warning("%s %s: %s %s", type(cmd).__name__, cmd.monitor_id, e.code, e.message)
            return e.reply()
        except Exception as e:  # a bug here must not take the daemon down
            log.exception("%s %s failed", type(cmd).__name__, cmd.monitor_id)
            code = (
                ErrorCode.AGENT_STOP_FAILED
                if isinstance(cmd, StopMonitor)
                else ErrorCode.AGENT_START_FAILED
            )
            return protocol.failure(
                cmd.request_id, cmd.monitor_id, code, f"internal error: {type(e).__name__}: {e}"
            )

    async def _stop_job(self, cmd: StopJob) -> dict[str, Any]:
        try:
            if self.jobs is None:
                raise CommandError(
                    ErrorCode.TARGET_NOT_FOUND, "pid: job discovery is off on this manager"
                )
            return await self.jobs.stop(cmd)
        except CommandError as e:
            e.request_id = cmd.request_id
            log.warning("STOP_JOB %d: %s %s", cmd.pid, e.code, e.message)
            return e.reply()
        except Exception as e:  # a bug here must not take the daemon down
            log.exception("STOP_JOB %d failed", cmd.pid)
            return protocol.failure(
                cmd.request_id,
                None,
                ErrorCode.AGENT_STOP_FAILED,
                f"internal error: {type(e).__name__}: {e}",
            )

    def _status(self, cmd: GetStatus) -> dict[str, Any]:
        if cmd.monitor_id is None:
            return {
                "request_id": cmd.request_id,
                "status": "SUCCESS",
                "agent_manager_status": "RUNNING",
                "machine_id": self.identity.machine_id,
                "active_monitors": self._active(),
                "version": self.identity.version,
            }
        m = self.supervisor.get(cmd.monitor_id)
        if m is None:
            raise CommandError(ErrorCode.MONITOR_NOT_FOUND, "Monitor not found.")
        return m.status_reply(cmd.request_id)
