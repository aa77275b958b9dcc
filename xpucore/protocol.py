"""The control channel's messages: commands in, replies and events out (seeds/003 part 2).

Transport: the manager's DEALER dials the backend's ROUTER (CURVE). Every message is one
frame holding one UTF-8 JSON object; the DEALER's routing id is the machine id, so on the
backend's ROUTER a message arrives as ``[machine_id, json]``.

Backend → manager: the seed's commands, exactly as the seed writes them::

    {"command": "START_MONITOR", "request_id": str, "monitor_id": uuid, "monitor_type": "CUDA",
     "target": {"pid": int, "library_path": str, "comm": str, "syscalls": [str]},
     "config": {"sampling_rate": 1.0, "enable_profiling": bool, "attach_mode": str,
                "ringbuf_kb": int, "batch_events": int, "flush_ms": int,
                "python_stacks": bool, "sample_hz": int, "functions": [str],
                "window": {"function": str, "skip": int, "count": int} | null},
     "backend_zmq_data_endpoint": "tcp://host:port" | "ipc://path", "machine_id": str}
    {"command": "STOP_MONITOR", "request_id": str, "monitor_id": uuid}
    {"command": "GET_STATUS", "request_id": str, "monitor_id": uuid | null | absent}

Manager → backend, two kinds told apart by one key:

- replies carry ``request_id`` and never ``event``: exactly the seed's reply fields
  (``status`` SUCCESS | FAILURE, ``error_code`` one of ``ErrorCode``);
- events carry ``event`` and never ``request_id``: ``HELLO`` (registration, sent after
  every completed CURVE handshake, so a restarted backend learns the machine again),
  ``HEARTBEAT`` (every ``heartbeat_interval_s``, with the machine's clock as last measured),
  ``CLOCK_PROBE`` (the manager measures its clock against the backend's: the backend answers
  with a ``CLOCK_ECHO``, the one message to the manager that is not a command; see
  ``xpucore.clock_sync``), ``MONITOR_STATUS`` (a monitor changed
  state without a command asking: its agent exited or died) and ``GOODBYE`` (clean shutdown);
  ``JOB_SEEN``, ``JOB_CHANGED``, ``JOB_SNAPSHOT`` and ``JOB_METRICS`` report the machine's
  AI jobs (and ``STOP_JOB`` ends one): see ``xpucore.job_wire``.

A monitor's final state (``MONITOR_STATUS`` STOPPED or ERROR, and STOP's SUCCESS reply) says
what its agent sent: ``events_sent`` (events handed to the ingest socket, delivered or not)
and ``events_dropped`` (lost in the kernel or never sent), each an integer >= 0, or null
when the agent said none (it was killed before its last line). ``sent_counts`` reads them.

A command that cannot be parsed or validated is answered, never dropped: FAILURE with
``INVALID_CONFIG`` and a message that starts with the offending field (``target.pid: ...``).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from xpucore import job_wire

__all__ = [
    "CLOCK_ECHO",
    "MAX_EVENT_COUNT",
    "PROTOCOL_VERSION",
    "AgentConfig",
    "AnyCommand",
    "Command",
    "CommandError",
    "ErrorCode",
    "Event",
    "GetStatus",
    "MonitorStatus",
    "Reply",
    "ReplyStatus",
    "StartMonitor",
    "StepWindow",
    "StopJob",
    "StopMonitor",
    "Target",
    "agent_counts",
    "clock_echo",
    "clock_probe",
    "command_of",
    "decode",
    "device_metrics",
    "encode",
    "event_of",
    "failure",
    "get_status",
    "goodbye",
    "heartbeat",
    "hello",
    "is_event",
    "is_reply",
    "isotime",
    "job_changed",
    "job_metrics",
    "job_seen",
    "job_snapshot",
    "monitor_status",
    "parse_command",
    "parse_reply",
    "sent_counts",
    "start_monitor",
    "stop_job",
    "stop_monitor",
]

PROTOCOL_VERSION = 1
CLOCK_ECHO = "CLOCK_ECHO"  # backend → manager, answering a CLOCK_PROBE (its "event")
MAX_REQUEST_ID_LEN = 128
COMM_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,14}$")  # printable, 1-15 (TASK_COMM_LEN-1)


class Command(StrEnum):
    START_MONITOR = "START_MONITOR"
    STOP_MONITOR = "STOP_MONITOR"
    GET_STATUS = "GET_STATUS"
    STOP_JOB = "STOP_JOB"  # xpucore.job_wire


class Event(StrEnum):
    HELLO = "HELLO"
    HEARTBEAT = "HEARTBEAT"
    MONITOR_STATUS = "MONITOR_STATUS"
    GOODBYE = "GOODBYE"
    JOB_SEEN = "JOB_SEEN"  # the jobs' events: xpucore.job_wire
    JOB_CHANGED = "JOB_CHANGED"
    JOB_SNAPSHOT = "JOB_SNAPSHOT"
    CLOCK_PROBE = "CLOCK_PROBE"  # answered by a CLOCK_ECHO: xpucore.clock_sync
    DEVICE_METRICS = "DEVICE_METRICS"  # the machine's accelerators: xpucore.device_wire
    JOB_METRICS = "JOB_METRICS"


class ReplyStatus(StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


class ErrorCode(StrEnum):
    TARGET_NOT_FOUND = "TARGET_NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    AGENT_START_FAILED = "AGENT_START_FAILED"
    INVALID_CONFIG = "INVALID_CONFIG"
    MONITOR_NOT_FOUND = "MONITOR_NOT_FOUND"
    AGENT_STOP_FAILED = "AGENT_STOP_FAILED"


class MonitorStatus(StrEnum):
    STARTING = "STARTING"  # internal only: never in a reply (START answers when it is known)
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class CommandError(Exception):
    """A command that gets a FAILURE reply; carries what the reply echoes."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        request_id: str | None = None,
        monitor_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.monitor_id = monitor_id

    def reply(self) -> dict[str, Any]:
        return failure(self.request_id, self.monitor_id, self.code, self.message)


_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?")


def _allowed_users(v: Any) -> tuple[str, ...] | None:
    """allowed_users: absent or null (no restriction), or 0-64 Unix account names."""
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > 64:
        raise _invalid("allowed_users", "must be a list of at most 64 Unix account names")
    for i, name in enumerate(v):
        if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
            raise _invalid(f"allowed_users[{i}]", "must be a Unix account name")
    return tuple(v)


def _invalid(name: str, problem: str) -> CommandError:
    return CommandError(ErrorCode.INVALID_CONFIG, f"{name}: {problem}")


@dataclass(frozen=True)
class Target:
    pid: int | None = None
    library_path: str | None = None
    comm: str | None = None
    syscalls: tuple[str, ...] | None = None  # SYSCALL: the syscalls to record (None: all)


@dataclass(frozen=True)
class StepWindow:
    """config.window: events only from the start of call skip+1 of the Python function (a
    qualified name) to the end of call skip+count, counted in the process on every thread;
    then the agent ends and the monitor stops (xpucore/include/window.h)."""

    function: str
    skip: int
    count: int

    def flag(self) -> str:
        """The agent's --window."""
        return f"{self.function}:{self.skip}:{self.count}"

    def closed(self) -> str:
        """Why a monitor with this window stopped by itself."""
        return f"its window closed: {self.count} calls of {self.function} after {self.skip}"


@dataclass(frozen=True)
class AgentConfig:
    """The ``config`` keys a monitor may set; each maps to one checked agent flag or none."""

    sampling_rate: float = 1.0
    enable_profiling: bool = False
    attach_mode: str | None = None
    ringbuf_kb: int | None = None
    batch_events: int | None = None
    flush_ms: int | None = None
    python_stacks: bool = False  # CUDA: each call's Python stack (--py-runtime/--py-offsets)
    sample_hz: int | None = None  # PYTHON: samples per second per CPU
    functions: tuple[str, ...] | None = None  # PYTHON: qualified names whose calls to trace
    window: StepWindow | None = None  # CUDA, ACL, PYTHON of a Python process: the step window


@dataclass(frozen=True)
class StartMonitor:
    request_id: str
    monitor_id: str
    monitor_type: str
    target: Target
    config: AgentConfig = field(default_factory=AgentConfig)
    data_endpoint: str | None = None
    machine_id: str | None = None
    # the target policy (backend: an operator's granted Unix accounts): None, any process
    # but the platform's; else only a process of one of these accounts, named by pid
    allowed_users: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StopMonitor:
    request_id: str
    monitor_id: str


@dataclass(frozen=True)
class GetStatus:
    request_id: str
    monitor_id: str | None = None


@dataclass(frozen=True)
class StopJob:
    request_id: str
    pid: int
    start_ticks: int
    grace_s: float = 10.0
    allowed_users: tuple[str, ...] | None = None  # whose jobs it may stop (None: any)


AnyCommand = StartMonitor | StopMonitor | GetStatus | StopJob

_START_KEYS = {
    "command",
    "request_id",
    "monitor_id",
    "monitor_type",
    "target",
    "config",
    "backend_zmq_data_endpoint",
    "machine_id",
    "allowed_users",
}
_STOP_KEYS = {"command", "request_id", "monitor_id"}
_STOP_JOB_KEYS = {"command", "request_id", "pid", "start_ticks", "grace_s", "allowed_users"}
_TARGET_KEYS = {"pid", "library_path", "comm", "binary_path", "syscalls"}
SYSCALL_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a syscall's name, as the agent's table has it
_CONFIG_KEYS = {
    "sampling_rate",
    "enable_profiling",
    "attach_mode",
    "ringbuf_kb",
    "batch_events",
    "flush_ms",
    "python_stacks",
    "sample_hz",
    "functions",
    "window",
}
_WINDOW_KEYS = {"function", "skip", "count"}
WINDOW_MAX = 1 << 62  # skip and count: the agent's parse bound


def isotime(t: datetime | None) -> str | None:
    """RFC 3339 UTC with microseconds and a Z, as every timestamp on the channel."""
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(msg: Mapping[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode(frame: bytes) -> dict[str, Any]:
    """One frame → a JSON object; anything else is INVALID_CONFIG."""
    try:
        obj = json.loads(frame.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise _invalid("message", f"not valid UTF-8 JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _invalid("message", "must be a JSON object")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def failure(
    request_id: str | None, monitor_id: str | None, code: ErrorCode, message: str
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "status": str(ReplyStatus.FAILURE),
        "monitor_id": monitor_id,
        "error_code": str(code),
        "message": message,
    }


def is_reply(msg: Mapping[str, Any]) -> bool:
    """A reply: it carries a request_id (a string) and no ``event``."""
    return isinstance(msg.get("request_id"), str) and "event" not in msg


def is_event(msg: Mapping[str, Any]) -> bool:
    """An event (known or not): its ``event`` is a string."""
    return isinstance(msg.get("event"), str)


def event_of(msg: Mapping[str, Any]) -> Event | None:
    """The event a message is, None when it names none this protocol knows."""
    name = msg.get("event")
    return Event(name) if isinstance(name, str) and name in Event.__members__ else None


def command_of(msg: Mapping[str, Any]) -> Command | None:
    """The command a message (as sent) is, None when it names none this protocol knows."""
    name = msg.get("command")
    return Command(name) if isinstance(name, str) and name in Command.__members__ else None


@dataclass(frozen=True)
class Reply:
    """What the backend reads of a manager's reply; fields absent or of the wrong type are
    None (texts: also when empty)."""

    ok: bool  # status SUCCESS
    error_code: str | None = None
    message: str | None = None
    agent_pid: int | None = None
    monitor_status: str | None = None  # GET_STATUS of one monitor
    error_message: str | None = None
    active_monitors: list[Any] | None = None  # GET_STATUS of the manager
    events_sent: int | None = None  # STOP: what the agent sent (sent_counts)
    events_dropped: int | None = None


MAX_EVENT_COUNT = 2**63 - 1


def _count_or_none(v: Any) -> int | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_EVENT_COUNT
    return v if ok else None


def sent_counts(msg: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(events_sent, events_dropped) of a monitor's final MONITOR_STATUS or STOP reply; each
    None when absent or not an integer in [0, MAX_EVENT_COUNT]."""
    return _count_or_none(msg.get("events_sent")), _count_or_none(msg.get("events_dropped"))


def agent_counts(stats: Mapping[str, Any] | None) -> dict[str, int | None]:
    """The events_sent and events_dropped fields from an agent's stats line (None: it
    printed none, or printed them wrong)."""
    s = stats or {}
    sent = _count_or_none(s.get("sent"))
    drops = [_count_or_none(s.get(k)) for k in ("kernel_drops", "inflight_drops", "send_drops")]
    dropped = None if sent is None or None in drops else sum(d for d in drops if d is not None)
    return {"events_sent": sent, "events_dropped": dropped}


def _text_or_none(v: Any) -> str | None:
    return str(v) if v else None


def parse_reply(msg: Mapping[str, Any]) -> Reply:
    pid, status = msg.get("agent_pid"), msg.get("monitor_status")
    active = msg.get("active_monitors")
    return Reply(
        ok=msg.get("status") == ReplyStatus.SUCCESS,
        error_code=_text_or_none(msg.get("error_code")),
        message=_text_or_none(msg.get("message")),
        agent_pid=pid if isinstance(pid, int) else None,
        monitor_status=status if isinstance(status, str) else None,
        error_message=_text_or_none(msg.get("error_message")),
        active_monitors=active if isinstance(active, list) else None,
        events_sent=_count_or_none(msg.get("events_sent")),
        events_dropped=_count_or_none(msg.get("events_dropped")),
    )


def _request_id(msg: Mapping[str, Any]) -> str:
    v = msg.get("request_id")
    if v is None:
        raise _invalid("request_id", "missing")
    if not isinstance(v, str) or not v or len(v) > MAX_REQUEST_ID_LEN or not v.isprintable():
        raise _invalid(
            "request_id", f"must be a printable string of 1-{MAX_REQUEST_ID_LEN} characters"
        )
    return v


def _monitor_id(msg: Mapping[str, Any], *, required: bool = True) -> str | None:
    v = msg.get("monitor_id")
    if v is None:
        if required:
            raise _invalid("monitor_id", "missing")
        return None
    if not isinstance(v, str):
        raise _invalid("monitor_id", "must be a UUID string")
    try:
        canonical = str(uuid.UUID(v))
    except ValueError:
        raise _invalid("monitor_id", f"'{v[:64]}' is not a UUID") from None
    if canonical != v.lower():
        raise _invalid("monitor_id", f"'{v[:64]}' is not a UUID in canonical 8-4-4-4-12 form")
    return v


def _unknown(msg: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    extra = sorted(set(msg) - allowed)
    if extra:
        raise _invalid(f"{prefix}{extra[0]}", "unknown field")


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _invalid(name, "must be an integer")
    if not lo <= v <= hi:
        raise _invalid(name, f"must be in [{lo}, {hi}]")
    return v


def _target(v: Any) -> Target:
    if v is None:
        raise _invalid("target", "missing")
    if not isinstance(v, dict):
        raise _invalid("target", "must be an object")
    _unknown(v, _TARGET_KEYS, "target.")
    pid = v.get("pid")
    if pid is not None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise _invalid("target.pid", "must be a positive integer")
        pid = _int(pid, "target.pid", 1, 2**22)  # PID_MAX_LIMIT
    lib = v.get("library_path")
    if lib is not None and (not isinstance(lib, str) or not lib or "\0" in lib or len(lib) > 4096):
        raise _invalid("target.library_path", "must be a non-empty path string")
    comm = v.get("comm")
    if comm is not None and (not isinstance(comm, str) or not COMM_RE.match(comm)):
        raise _invalid("target.comm", "must be 1-15 printable ASCII characters")
    if v.get("binary_path") is not None:
        raise _invalid("target.binary_path", "not used by the monitor types this manager runs")
    names = v.get("syscalls")
    if names is not None:
        if not isinstance(names, list) or not 1 <= len(names) <= 512:
            raise _invalid("target.syscalls", "must be a list of 1-512 syscall names")
        for i, n in enumerate(names):
            if not isinstance(n, str) or not SYSCALL_RE.match(n):
                raise _invalid(f"target.syscalls[{i}]", "must be a syscall name ([a-z0-9_])")
        names = tuple(names)
    if pid is None and lib is None and comm is None:
        raise _invalid("target.pid", "missing: give target.pid, target.library_path or target.comm")
    return Target(pid=pid, library_path=lib, comm=comm, syscalls=names)


def _config(v: Any) -> AgentConfig:
    if v is None:
        return AgentConfig()
    if not isinstance(v, dict):
        raise _invalid("config", "must be an object")
    _unknown(v, _CONFIG_KEYS, "config.")
    rate = v.get("sampling_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise _invalid("config.sampling_rate", "must be a number")
    if rate != 1.0:
        raise _invalid("config.sampling_rate", "the agent records every call: only 1.0")
    prof = v.get("enable_profiling", False)
    if not isinstance(prof, bool):
        raise _invalid("config.enable_profiling", "must be true or false")
    mode = v.get("attach_mode")
    if mode is not None and mode not in ("auto", "multi", "perf"):
        raise _invalid("config.attach_mode", "must be 'auto', 'multi' or 'perf'")
    ring = v.get("ringbuf_kb")
    if ring is not None:
        ring = _int(ring, "config.ringbuf_kb", 4, 1 << 20)
        if ring & (ring - 1):
            raise _invalid("config.ringbuf_kb", "must be a power of two")
    batch = v.get("batch_events")
    if batch is not None:
        batch = _int(batch, "config.batch_events", 1, 1 << 20)
    flush = v.get("flush_ms")
    if flush is not None:
        flush = _int(flush, "config.flush_ms", 1, 600_000)
    stacks = v.get("python_stacks", False)
    if not isinstance(stacks, bool):
        raise _invalid("config.python_stacks", "must be true or false")
    hz = v.get("sample_hz")
    if hz is not None:
        hz = _int(hz, "config.sample_hz", 1, 10_000)
    return AgentConfig(
        float(rate),
        prof,
        mode,
        ring,
        batch,
        flush,
        stacks,
        hz,
        _functions(v.get("functions")),
        _window(v.get("window")),
    )


def _window(v: Any) -> StepWindow | None:
    """config.window: {"function", "skip", "count"} (what reaches the agent's --window)."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _invalid("config.window", "must be an object: function, skip, count")
    _unknown(v, _WINDOW_KEYS, "config.window.")
    function = v.get("function")
    if not isinstance(function, str) or not _FUNCTION.fullmatch(function):
        raise _invalid(
            "config.window.function", "must be a qualified name: 1-63 of letters, digits, _ . < >"
        )
    if "count" not in v:
        raise _invalid("config.window.count", "missing: how many calls the window spans")
    skip = _int(v.get("skip", 0), "config.window.skip", 0, WINDOW_MAX)
    count = _int(v["count"], "config.window.count", 1, WINDOW_MAX)
    return StepWindow(function, skip, count)


_FUNCTION = re.compile(r"[A-Za-z0-9_.<>]{1,63}")


def _functions(v: Any) -> tuple[str, ...] | None:
    """config.functions: 1-8 qualified names (what reaches the agent's --py-functions)."""
    if v is None:
        return None
    if not isinstance(v, list) or not 1 <= len(v) <= 8:
        raise _invalid("config.functions", "must be a list of 1 to 8 qualified names")
    for i, name in enumerate(v):
        if not isinstance(name, str) or not _FUNCTION.fullmatch(name):
            raise _invalid(
                f"config.functions[{i}]",
                "must be a qualified name: 1-63 of letters, digits, _ . < >",
            )
    return tuple(v)


def _data_endpoint(v: Any) -> str | None:
    if v is None:
        return None
    if (
        not isinstance(v, str)
        or not v.startswith(("tcp://", "ipc://"))
        or len(v) > 1024
        or not v.isprintable()
        or any(c.isspace() for c in v)
    ):
        raise _invalid("backend_zmq_data_endpoint", "must be a tcp:// or ipc:// endpoint")
    return v


def _machine_id(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise _invalid("machine_id", "must be a non-empty string")
    return v


def parse_command(frame: bytes, monitor_types: Collection[str]) -> AnyCommand:
    """Validates one frame from the backend; raises CommandError (INVALID_CONFIG) naming the
    field, with request_id and monitor_id filled in for the reply as far as they were usable.
    """
    msg = decode(frame)
    rid = msg.get("request_id")
    mid = msg.get("monitor_id")
    echo_rid = rid if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID_LEN else None
    echo_mid = mid if isinstance(mid, str) and len(mid) <= 64 else None
    try:
        return _parse(msg, monitor_types)
    except CommandError as e:
        e.request_id, e.monitor_id = echo_rid, echo_mid
        raise


def _parse(msg: dict[str, Any], monitor_types: Collection[str]) -> AnyCommand:
    cmd = msg.get("command")
    if cmd is None:
        raise _invalid("command", "missing")
    if not isinstance(cmd, str) or cmd not in Command.__members__:
        raise _invalid(
            "command", f"unknown command '{str(cmd)[:64]}' (known: {', '.join(Command)})"
        )
    rid = _request_id(msg)
    if cmd == Command.START_MONITOR:
        _unknown(msg, _START_KEYS)
        mid = _monitor_id(msg)
        assert mid is not None
        mtype = msg.get("monitor_type")
        if mtype is None:
            raise _invalid("monitor_type", "missing")
        if not isinstance(mtype, str) or mtype not in monitor_types:
            raise _invalid(
                "monitor_type",
                f"'{str(mtype)[:32]}' is not supported here "
                f"(supported: {', '.join(sorted(monitor_types))})",
            )
        return StartMonitor(
            request_id=rid,
            monitor_id=mid,
            monitor_type=mtype,
            target=_target(msg.get("target")),
            config=_config(msg.get("config")),
            data_endpoint=_data_endpoint(msg.get("backend_zmq_data_endpoint")),
            machine_id=_machine_id(msg.get("machine_id")),
            allowed_users=_allowed_users(msg.get("allowed_users")),
        )
    if cmd == Command.STOP_MONITOR:
        _unknown(msg, _STOP_KEYS)
        mid = _monitor_id(msg)
        assert mid is not None
        return StopMonitor(rid, mid)
    if cmd == Command.STOP_JOB:
        _unknown(msg, _STOP_JOB_KEYS)
        try:
            key, grace = job_wire.check_stop(msg)
        except job_wire.WireError as e:
            field_name, _, problem = str(e).partition(": ")
            raise _invalid(field_name, problem) from None
        return StopJob(
            rid, key.pid, key.start_ticks, grace, _allowed_users(msg.get("allowed_users"))
        )
    _unknown(msg, _STOP_KEYS)
    return GetStatus(rid, _monitor_id(msg, required=False))


def start_monitor(
    monitor_id: str,
    monitor_type: str,
    target: Mapping[str, Any],
    config: Mapping[str, Any],
    data_endpoint: str | None,
    machine_id: str,
    allowed_users: Sequence[str] | None = None,
) -> dict[str, Any]:
    """START_MONITOR as the backend sends it (request_id is added when it is sent);
    allowed_users: the Unix accounts whose processes it may target (None: any)."""
    msg: dict[str, Any] = {
        "command": str(Command.START_MONITOR),
        "monitor_id": monitor_id,
        "monitor_type": monitor_type,
        "target": {k: v for k, v in target.items() if v is not None},
        "config": dict(config),
        "backend_zmq_data_endpoint": data_endpoint,
        "machine_id": machine_id,
    }
    if allowed_users is not None:
        msg["allowed_users"] = list(allowed_users)
    return msg


def stop_monitor(monitor_id: str) -> dict[str, Any]:
    return {"command": str(Command.STOP_MONITOR), "monitor_id": monitor_id}


def get_status(monitor_id: str | None = None) -> dict[str, Any]:
    """GET_STATUS of one monitor, or (None) of the manager and its active monitors."""
    msg: dict[str, Any] = {"command": str(Command.GET_STATUS)}
    if monitor_id is not None:
        msg["monitor_id"] = monitor_id
    return msg


def hello(
    machine_id: str,
    hostname: str,
    os_info: str,
    accelerators: list[dict[str, Any]],
    version: str,
    monitor_types: Mapping[str, Mapping[str, list[str]]],
    active_monitors: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """monitor_types: {type: {"target": [keys], "config": [keys]}}, the monitor types this
    manager runs and the keys each does something with (the backend refuses others)."""
    return {
        "event": str(Event.HELLO),
        "protocol": PROTOCOL_VERSION,
        "machine_id": machine_id,
        "hostname": hostname,
        "os_info": os_info,
        "accelerators": accelerators,
        "version": version,
        "monitor_types": {k: dict(v) for k, v in sorted(monitor_types.items())},
        "agent_manager_status": "RUNNING",
        "active_monitors": active_monitors,
        "time": isotime(now),
    }


def heartbeat(
    machine_id: str,
    seq: int,
    active_monitors: list[dict[str, Any]],
    now: datetime,
    clock: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """clock: {"offset_ns", "error_ns", "measured_at_ns"} (xpucore.clock_sync), when measured."""
    msg = {
        "event": str(Event.HEARTBEAT),
        "machine_id": machine_id,
        "seq": seq,
        "agent_manager_status": "RUNNING",
        "active_monitors": active_monitors,
        "time": isotime(now),
    }
    if clock is not None:
        msg["clock"] = dict(clock)
    return msg


def clock_probe(machine_id: str, seq: int, t1_ns: int) -> dict[str, Any]:
    return {"event": str(Event.CLOCK_PROBE), "machine_id": machine_id, "seq": seq, "t1": t1_ns}


def clock_echo(seq: int, t1_ns: int, t2_ns: int, t3_ns: int) -> dict[str, Any]:
    """The backend's answer to a CLOCK_PROBE: the probe's seq and t1, its own t2 and t3."""
    return {"event": CLOCK_ECHO, "seq": seq, "t1": t1_ns, "t2": t2_ns, "t3": t3_ns}


def monitor_status(
    machine_id: str,
    monitor_id: str,
    status: MonitorStatus,
    agent_pid: int | None,
    exit_code: int | None,
    message: str | None,
    error_message: str | None,
    stop_time: datetime | None,
    now: datetime,
    stats: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A monitor changed state on its own. exit_code: the agent's exit status, or minus the
    signal that killed it; message says why (also for STOPPED); error_message only for ERROR;
    stats: the agent's last stats line, whose counts it carries (agent_counts)."""
    return {
        "event": str(Event.MONITOR_STATUS),
        "machine_id": machine_id,
        "monitor_id": monitor_id,
        "monitor_status": str(status),
        "agent_pid": agent_pid,
        "exit_code": exit_code,
        "message": message,
        "error_message": error_message,
        "stop_time": isotime(stop_time),
        **agent_counts(stats),
        "time": isotime(now),
    }


def goodbye(machine_id: str, now: datetime) -> dict[str, Any]:
    return {
        "event": str(Event.GOODBYE),
        "machine_id": machine_id,
        "agent_manager_status": "STOPPED",
        "time": isotime(now),
    }


def stop_job(
    pid: int, start_ticks: int, grace_s: float, allowed_users: Sequence[str] | None
) -> dict[str, Any]:
    """STOP_JOB as the backend sends it (request_id is added when it is sent): SIGTERM the
    job (pid, start_ticks), SIGKILL after grace_s; allowed_users: whose jobs (None: any)."""
    msg: dict[str, Any] = {
        "command": str(Command.STOP_JOB),
        "pid": pid,
        "start_ticks": start_ticks,
        "grace_s": grace_s,
    }
    if allowed_users is not None:
        msg["allowed_users"] = list(allowed_users)
    return msg


def job_seen(machine_id: str, job: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "event": str(Event.JOB_SEEN),
        "machine_id": machine_id,
        "job": dict(job),
        "time": isotime(now),
    }


def job_changed(
    machine_id: str,
    pid: int,
    start_ticks: int,
    status: str,
    exit_code: int | None,
    signal: int | None,
    core_dumped: bool,
    end_time_ms: int | None,
    reason: str | None,
    now: datetime,
) -> dict[str, Any]:
    """A job ended: status exited, killed, stopped or lost; end_time_ms: Unix ms, when seen."""
    return {
        "event": str(Event.JOB_CHANGED),
        "machine_id": machine_id,
        "pid": pid,
        "start_ticks": start_ticks,
        "status": status,
        "exit_code": exit_code,
        "signal": signal,
        "core_dumped": core_dumped,
        "end_time": end_time_ms,
        "reason": reason,
        "time": isotime(now),
    }


def device_metrics(
    machine_id: str,
    sampled_at_ms: int,
    devices: Sequence[dict[str, Any]],
    errors: Sequence[dict[str, str]],
    now: datetime,
) -> dict[str, Any]:
    """One sample of the machine's accelerators (xpucore.device_wire says the fields)."""
    return {
        "event": str(Event.DEVICE_METRICS),
        "machine_id": machine_id,
        "sampled_at": sampled_at_ms,
        "devices": list(devices),
        "errors": list(errors),
        "time": isotime(now),
    }


def job_snapshot(
    machine_id: str, running: Sequence[tuple[int, int]], now: datetime
) -> dict[str, Any]:
    """Every job running now, as (pid, start_ticks)."""
    return {
        "event": str(Event.JOB_SNAPSHOT),
        "machine_id": machine_id,
        "jobs": [{"pid": p, "start_ticks": t} for p, t in running],
        "time": isotime(now),
    }


def job_metrics(
    machine_id: str, interval_s: float, samples: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """Samples of the running jobs (xpucore.job_wire.MetricSample's fields, snake_case)."""
    return {
        "event": str(Event.JOB_METRICS),
        "machine_id": machine_id,
        "interval_s": interval_s,
        "samples": [dict(s) for s in samples],
        "time": isotime(now),
    }
