"""The agent's command line for a START: a pure function of the command, the manager's
settings and what this machine said of the target (``TargetFacts``, read by
manager/target_facts.py). It reads nothing itself, so every refusal is testable without root.

Nothing from the network reaches ``exec`` unchecked: the monitor type picks an entry of the
allow-list, the pid must exist and not be the platform's, a library path must be an absolute
regular file whose real name matches that type's patterns, the data endpoint must go to an
allowed host, and every flag the agent gets is built here from checked values.

``check_command`` is what the command alone decides, before anything is looked at (a library's
name is checked before its file); ``agent_args`` repeats it, then judges the facts.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from manager.python.hooks import PythonHooks, hook_flag
from manager.python.target import PythonTarget, UnsupportedPython, agent_flags
from manager.settings import Settings
from manager.syscall_hub import HUB_RINGBUF_KB
from xpucore.protocol import CommandError, ErrorCode, StartMonitor

__all__ = [
    "AgentType",
    "Library",
    "Process",
    "TargetFacts",
    "agent_args",
    "check_command",
    "key_dir",
    "keyfile",
    "needs_hooks",
    "needs_python",
]


@dataclass(frozen=True)
class AgentType:
    """What one monitor type runs: its probe, which libraries it may be pointed at, and the
    target and config keys it does something with (announced in HELLO; any other key set to
    other than its default is refused). comm_filter: target.comm selects tasks by name in the
    kernel; otherwise, with a pid, it is checked against that process's name."""

    probe: str
    library_patterns: tuple[str, ...]  # none: the type takes no library (SYSCALL)
    target: tuple[str, ...]
    config: tuple[str, ...]
    comm_filter: bool = False

    def options(self) -> dict[str, list[str]]:
        return {"target": sorted(self.target), "config": sorted(self.config)}


@dataclass(frozen=True)
class Process:
    """What /proc said of target.pid."""

    exists: bool
    platform: bool = False  # xputrace's own, pid 1 or a kernel thread (manager/protected.py)
    user: str | None = None  # the Unix account it runs as
    comm: str | None = None  # its task name; None where it could not be read


@dataclass(frozen=True)
class Library:
    """target.library_path followed to its real path, and what is there: a regular file,
    nothing, or something else (or nothing this manager may read)."""

    real: str
    state: Literal["file", "missing", "other"]


@dataclass(frozen=True)
class TargetFacts:
    """What a START's target is, read once before its command line is built. Each part is
    there when the command needs it: process with target.pid, library with
    target.library_path, python where ``needs_python``, hooks with config.functions (a
    part read and found wanting holds the UnsupportedPython that says why)."""

    process: Process | None = None
    library: Library | None = None
    python: PythonTarget | UnsupportedPython | None = None
    hooks: PythonHooks | UnsupportedPython | None = None


def _one_of(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def needs_python(cmd: StartMonitor) -> bool:
    """Whether the agent gets flags read from the target's CPython."""
    c = cmd.config
    return (
        c.python_stacks
        or cmd.monitor_type == "PYTHON"
        or c.functions is not None
        or c.window is not None
    )


def needs_hooks(cmd: StartMonitor) -> bool:
    """Whether the agent gets the target's Python call hooks (--py-hooks)."""
    return cmd.config.functions is not None or cmd.config.window is not None


def _python_field(cmd: StartMonitor) -> str:
    """The field a refusal of the target's CPython names: what made it needed."""
    if cmd.monitor_type == "PYTHON":
        return "target.pid"
    return "config.python_stacks" if cmd.config.python_stacks else "config.window"


def key_dir(settings: Settings) -> Path:
    """Where the agents' CURVE key files are written, one a monitor while it starts."""
    return settings.runtime_dir / "keys"


def keyfile(cmd: StartMonitor, settings: Settings) -> Path | None:
    """The monitor's key file, when its data goes to the backend over CURVE."""
    if cmd.data_endpoint is None or not settings.data_curve:
        return None
    return key_dir(settings) / f"{cmd.monitor_id}.key"


def _invalid(message: str) -> CommandError:
    return CommandError(ErrorCode.INVALID_CONFIG, message)


def check_command(
    cmd: StartMonitor, types: Mapping[str, AgentType], settings: Settings, machine_id: str
) -> AgentType:
    """The monitor type's entry, once the command itself is one this manager runs: every
    refusal that needs nothing read from this machine."""
    if cmd.machine_id is not None and cmd.machine_id != machine_id:
        raise _invalid(f"machine_id: this is machine '{machine_id}', not '{cmd.machine_id}'")
    kind = types.get(cmd.monitor_type)
    if kind is None:
        raise _invalid(f"monitor_type: '{cmd.monitor_type}' is not supported here")
    t, c = cmd.target, cmd.config
    _check_options(cmd, kind)
    if cmd.allowed_users is not None and (t.pid is None or t.library_path is not None):
        raise CommandError(
            ErrorCode.PERMISSION_DENIED,
            "target: only a process named by target.pid may be traced by a "
            "user with granted Unix accounts; a library or task name in every "
            "process needs an admin",
        )
    if kind.library_patterns:
        if t.pid is None and t.library_path is None:
            raise _invalid("target.pid: missing: give target.pid or target.library_path")
        if t.syscalls is not None:
            raise _invalid("target.syscalls: only for SYSCALL monitors")
    elif t.library_path is not None:
        raise _invalid(f"target.library_path: a {cmd.monitor_type} monitor takes no library")
    if t.library_path is not None:
        _check_library_name(t.library_path, kind)
    if cmd.data_endpoint is not None:
        if not settings.data_endpoint_allowed(cmd.data_endpoint):
            raise _invalid(
                f"backend_zmq_data_endpoint: '{cmd.data_endpoint}' is not an "
                "allowed data endpoint for this manager"
            )
    elif settings.capture_dir is None:
        raise _invalid("backend_zmq_data_endpoint: missing")
    if cmd.monitor_type == "SYSCALL" and (c.ringbuf_kb or 0) > HUB_RINGBUF_KB:
        raise _invalid(
            f"config.ringbuf_kb: SYSCALL monitors share one tracer, whose ring "
            f"buffer is {HUB_RINGBUF_KB} KB"
        )
    if c.window is not None and (
        cmd.monitor_type not in ("CUDA", "ACL", "PYTHON") or t.pid is None
    ):
        raise _invalid(
            "config.window: needs a CUDA, ACL or PYTHON monitor of one Python process (target.pid)"
        )
    if needs_python(cmd):
        field = _python_field(cmd)
        if c.functions is not None and cmd.monitor_type != "PYTHON":
            raise _invalid("config.functions: only for PYTHON monitors")
        if cmd.monitor_type not in ("CUDA", "ACL", "PYTHON") or t.pid is None:
            raise _invalid(
                f"{field}: needs a CUDA, ACL or PYTHON monitor of one process (target.pid)"
            )
    return kind


def _check_options(cmd: StartMonitor, kind: AgentType) -> None:
    """INVALID_CONFIG naming the first target or config key set (to other than its default)
    that this monitor type does nothing with."""
    for part, allowed in (("target", kind.target), ("config", kind.config)):
        given = getattr(cmd, part)
        for f in fields(given):
            if f.name not in allowed and getattr(given, f.name) != f.default:
                raise _invalid(
                    f"{part}.{f.name}: not supported by {cmd.monitor_type} "
                    f"monitors (they take {part} "
                    f"{', '.join(sorted(allowed)) or 'keys: none'})"
                )


def _not_a_library(path: str, kind: AgentType) -> CommandError:
    """Every file that is not such a library is refused alike: nothing tells whether some
    other file exists or what it is."""
    return _invalid(
        f"target.library_path: '{path}' is not a library of {', '.join(kind.library_patterns)}"
    )


def _check_library_name(path: str, kind: AgentType) -> None:
    if not os.path.isabs(path):
        raise _invalid(f"target.library_path: '{path}' is not absolute")
    if not _one_of(os.path.basename(path), kind.library_patterns):
        raise _not_a_library(path, kind)


def agent_args(
    cmd: StartMonitor,
    types: Mapping[str, AgentType],
    settings: Settings,
    machine_id: str,
    facts: TargetFacts,
) -> list[str]:
    """Everything after the agent binary, from --monitor-id to --curve-keyfile; raises
    CommandError with the seed's error code for a command this manager does not run."""
    kind = check_command(cmd, types, settings, machine_id)
    t, c = cmd.target, cmd.config
    args = [
        "--monitor-id",
        cmd.monitor_id,
        "--monitor-type",
        cmd.monitor_type,
        "--machine-id",
        machine_id,
    ]
    if t.pid is not None:
        if facts.process is None:
            raise _unread("process")
        _check_process(cmd, facts.process)
        args += ["--target-pid", str(t.pid)]
    if not kind.library_patterns:
        if t.comm is not None and kind.comm_filter:
            args += ["--target-comm", t.comm]
        if t.syscalls is not None:
            args += ["--syscalls", ",".join(t.syscalls)]
    if t.library_path is not None:
        if facts.library is None:
            raise _unread("library")
        args += ["--target-library", _library(t.library_path, kind, facts.library)]
        if t.comm is not None:
            args += ["--target-comm", t.comm]
    if cmd.data_endpoint is not None:
        args += ["--backend-zmq-endpoint", cmd.data_endpoint]
    else:
        assert settings.capture_dir is not None  # check_command refused it otherwise
        args += ["--output", str(settings.capture_dir / f"{cmd.monitor_id}.bin")]
    for flag, value in (
        ("--attach-mode", c.attach_mode),
        ("--ringbuf-kb", c.ringbuf_kb),
        ("--batch-events", c.batch_events),
        ("--flush-ms", c.flush_ms),
    ):
        if value is not None:
            args += [flag, str(value)]
    if needs_python(cmd):
        args += _python_args(cmd, facts)
    key = keyfile(cmd, settings)
    if key is not None:
        args += ["--curve-keyfile", str(key)]
    return args


def _unread(name: str) -> ValueError:
    return ValueError(f"the command needs the target's {name}, which was not read")


def _check_process(cmd: StartMonitor, p: Process) -> None:
    t = cmd.target
    if not p.exists:
        raise CommandError(ErrorCode.TARGET_NOT_FOUND, f"Failed to find target PID {t.pid}.")
    if p.platform:
        raise CommandError(
            ErrorCode.PERMISSION_DENIED,
            f"target.pid: PID {t.pid} is refused: xputrace never traces its own "
            "processes, pid 1 or kernel threads",
        )
    if cmd.allowed_users is not None and p.user not in cmd.allowed_users:
        raise CommandError(
            ErrorCode.PERMISSION_DENIED,
            f"target.pid: PID {t.pid} belongs to no Unix account this user was granted",
        )
    if t.comm is not None and t.library_path is None:
        if p.comm is None:
            raise CommandError(ErrorCode.TARGET_NOT_FOUND, f"Failed to find target PID {t.pid}.")
        if p.comm != t.comm:  # what it runs instead is not told
            raise CommandError(
                ErrorCode.TARGET_NOT_FOUND, f"target.comm: PID {t.pid} does not run '{t.comm}'"
            )


def _library(path: str, kind: AgentType, lib: Library) -> str:
    """The library's real path, once it is a regular file whose real name is one of the
    type's libraries."""
    if lib.state == "missing":
        raise CommandError(ErrorCode.TARGET_NOT_FOUND, f"Failed to find target library {path}.")
    if lib.state != "file" or not _one_of(os.path.basename(lib.real), kind.library_patterns):
        raise _not_a_library(path, kind)
    return lib.real


def _python_args(cmd: StartMonitor, facts: TargetFacts) -> list[str]:
    """--py-runtime and --py-offsets for the target's CPython; a PYTHON monitor's sampler
    and function hooks."""
    field = _python_field(cmd)
    t = facts.python
    if t is None:
        raise _unread("CPython")
    if isinstance(t, UnsupportedPython):
        raise _invalid(f"{field}: {t}")
    args = agent_flags(t)
    c = cmd.config
    if cmd.monitor_type == "PYTHON":
        args += ["--py-binary", t.binary]  # its gc USDT probes, where it has them
        if c.sample_hz is not None:
            args += ["--sample-hz", str(c.sample_hz)]
    if c.functions is not None:
        _check_function_names(c.functions, t.version, "config.functions[{}]")
    if c.window is not None:
        _check_function_names((c.window.function,), t.version, "config.window.function")
    if needs_hooks(cmd):
        hooks = facts.hooks
        if hooks is None:
            raise _unread("call hooks")
        if isinstance(hooks, UnsupportedPython):
            raise _invalid(f"{'config.functions' if c.functions else 'config.window'}: {hooks}")
        if c.functions is not None:
            args += ["--py-functions", ",".join(c.functions)]
        args += ["--py-hooks", hook_flag(hooks)]
    if c.window is not None:
        args += ["--window", c.window.flag()]
        if cmd.monitor_type != "PYTHON":
            args += ["--py-binary", t.binary]  # where the hooks go
            if not c.python_stacks:
                args += ["--no-py-stacks"]
    return args


def _check_function_names(names: tuple[str, ...], version: tuple[int, ...], field: str) -> None:
    """CPython before 3.11 names a code object by co_name only (co_qualname came in 3.11): a
    qualified name could never match there, so it is refused, not run. field names the i-th
    name ({} for i)."""
    if version[:2] >= (3, 11):
        return
    for i, name in enumerate(names):
        if "." in name:
            short = name.rsplit(".", 1)[1]
            raise _invalid(
                f"{field.format(i)}: '{name}' is a qualified name, and the target runs "
                f"CPython {version[0]}.{version[1]}, whose functions carry no qualified name "
                f"(3.11+ do); name it '{short}' (every function of that name) instead"
            )
