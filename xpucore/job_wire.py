"""AI jobs on the control channel: what a manager reports of its machine's jobs, checked.

Manager → backend events (``xpucore.protocol.Event``), each with ``machine_id`` and ``time``:

- ``JOB_SEEN`` ``{"job": description}``: a job was described, first or again (seed 000 §3.2,
  with its ``parameters`` and ``code``), as ``manager.jobs.describe`` makes it;
- ``JOB_CHANGED`` ``{"pid", "start_ticks", "status", "exit_code", "signal", "core_dumped",
  "end_time", "reason"}``: a job ended (exited, killed, stopped by a STOP_JOB, lost);
- ``JOB_SNAPSHOT`` ``{"jobs": [{"pid", "start_ticks"}]}``: every job running now, sent after
  every HELLO (then a JOB_SEEN for each), so a backend that missed events learns them again
  and ends as ``lost`` the jobs it holds running that the manager no longer has;
- ``JOB_METRICS`` ``{"interval_s", "samples": [{"pid", "start_ticks", "time", "state",
  "cpu_percent", "rss_bytes", "threads", "read_bytes", "write_bytes", "io_source",
  "open_files", "accel_memory_bytes"}]}``: every running job sampled from /proc, one message
  an interval (``MetricSample``); a job whose ``state`` is ``T`` (stopped by SIGSTOP, SIGTSTP,
  SIGTTIN or SIGTTOU) is ``suspended`` until a sample says otherwise.

Backend → manager: ``STOP_JOB`` ``{"request_id", "pid", "start_ticks", "grace_s",
"allowed_users"}``: SIGTERM the job, SIGKILL after grace_s; answered when it has ended.

A process is one job for ever: (machine, pid, start_ticks), start_ticks being field 22 of
/proc/<pid>/stat. ``check_*`` validate what arrives and raise ``WireError`` naming the field.
Values of environment variables whose names look secret are never sent (the manager does not
read them); ``check_job`` drops any that arrive all the same.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "END_STATUSES",
    "JOB_STATUSES",
    "MAX_JOB_BYTES",
    "MAX_METRIC_SAMPLES",
    "MAX_SNAPSHOT_JOBS",
    "SUSPENDED_STATES",
    "JobEnd",
    "JobKey",
    "MetricSample",
    "WireError",
    "check_end",
    "check_job",
    "check_metrics",
    "check_snapshot",
    "check_stop",
    "fit_job",
    "looks_secret",
]

#: running; ended: exited (with its code), killed (by a signal), stopped (by a STOP_JOB),
#: lost (its end was not seen); unknown: its machine's manager is not heard from;
#: suspended: stopped by a signal (SIGSTOP, SIGTSTP...), not ended: SIGCONT resumes it.
JOB_STATUSES = ("running", "exited", "killed", "stopped", "lost", "unknown", "suspended")
END_STATUSES = ("exited", "killed", "stopped", "lost")
MAX_JOB_BYTES = 768 << 10  # one JOB_SEEN's job, encoded (the channel's frames are <= 1 MiB)
MAX_SNAPSHOT_JOBS = 20_000
#: One JOB_METRICS's samples at most (~250 bytes each encoded: well inside a 1 MiB frame); a
#: machine with more running jobs sends several messages an interval.
MAX_METRIC_SAMPLES = 2_000
#: The process states of /proc/<pid>/stat (field 3) a sample may say (proc_pid_stat(5)).
PROC_STATES = frozenset("RSDTtZXxIKWP")
#: The state of a process stopped by a job-control signal: its job is suspended. (``t``,
#: stopped by a debugger under ptrace, is not: a tracer holds it, nobody suspended it.)
SUSPENDED_STATES = frozenset("T")
IO_SOURCES = ("io", "rchar")  # read/write bytes: storage I/O (/proc/<pid>/io), or all I/O
_BIG = 2**63 - 1
PID_MAX = 1 << 22  # PID_MAX_LIMIT
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL", re.IGNORECASE)
_TEXT = {  # field: the longest value taken
    "jobName": 256,
    "jobType": 32,
    "framework": 64,
    "frameworkVersion": 128,
    "frameworkVersionSource": 1024,
    "accelerator": 32,
    "modelFormat": 32,
    "processName": 64,
    "commandLine": 32 << 10,
    "exe": 4096,
    "cwd": 4096,
    "user": 64,
    "reason": 1024,
}
_INTS = {  # field: (lowest, highest)
    "pid": (1, PID_MAX),
    "ppid": (0, PID_MAX),
    "pgid": (0, PID_MAX),
    "uid": (0, 2**32 - 1),
    "startTime": (0, 2**53),
    "endTime": (0, 2**53),
    "startTicks": (0, 2**63 - 1),
    "exitCode": (0, 255),
    "signal": (1, 64),
}
_LISTS = {"frameworks": (32, 64), "runtimes": (32, 64), "modelFiles": (256, 4096)}
_OBJECTS = {
    "parameters": MAX_JOB_BYTES,
    "code": MAX_JOB_BYTES,
    "container": 16 << 10,
    "evidence": 64 << 10,
    "jobTypeEvidence": 16 << 10,
}


class WireError(ValueError):
    """What arrived is not what the protocol says; the message starts with the field."""


@dataclass(frozen=True)
class JobKey:
    pid: int
    start_ticks: int


@dataclass(frozen=True)
class JobEnd:
    key: JobKey
    status: str
    exit_code: int | None
    signal: int | None
    core_dumped: bool
    end_time_ms: int | None
    reason: str | None


@dataclass(frozen=True)
class MetricSample:
    """One running job sampled from /proc: time (Unix ms); state (/proc/<pid>/stat field 3);
    cpu_percent: user + system time over the interval since its last sample, 100 = one
    core busy (None at its first sample); rss_bytes (VmRSS); threads; read_bytes and
    write_bytes since it started (None when unreadable), from io_source; open_files (its
    descriptors; None when unreadable); accel_memory_bytes: accelerator memory it holds, None
    when not known."""

    key: JobKey
    time_ms: int
    state: str
    cpu_percent: float | None
    rss_bytes: int
    threads: int
    read_bytes: int | None
    write_bytes: int | None
    io_source: str | None
    open_files: int | None
    accel_memory_bytes: int | None

    @property
    def suspended(self) -> bool:
        return self.state in SUSPENDED_STATES


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a secret."""
    return _SECRET.search(name) is not None


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise WireError(f"{name}: must be an integer in [{lo}, {hi}]")
    return v


def _text(v: Any, name: str, limit: int) -> str:
    if not isinstance(v, str) or len(v) > limit or "\0" in v:
        raise WireError(f"{name}: must be a string of at most {limit} characters, no NUL")
    return v


def _json_size(v: Any, name: str, limit: int) -> int:
    try:
        size = len(json.dumps(v, ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError) as e:
        raise WireError(f"{name}: not JSON ({e})") from None
    if size > limit:
        raise WireError(f"{name}: {size} bytes, more than {limit}")
    return size


def _no_nul(v: Any, name: str) -> None:
    """PostgreSQL's JSONB takes no NUL character in a string."""
    if isinstance(v, str):
        if "\0" in v:
            raise WireError(f"{name}: NUL character")
    elif isinstance(v, dict):
        for k, x in v.items():
            if "\0" in str(k):
                raise WireError(f"{name}: NUL character in a key")
            _no_nul(x, f"{name}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _no_nul(x, f"{name}[{i}]")
    elif isinstance(v, float) and not math.isfinite(v):
        raise WireError(f"{name}: not a finite number")


def _status(v: Any, name: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise WireError(f"{name}: must be one of {', '.join(allowed)}")
    return str(v)


def check_job(job: Any, machine_id: str) -> dict[str, Any]:
    """A JOB_SEEN's job, checked: the known fields with their types and sizes (others are
    dropped), its nodeId the reporting machine's, secret-looking variables dropped."""
    if not isinstance(job, dict):
        raise WireError("job: must be an object")
    _json_size(job, "job", MAX_JOB_BYTES)
    if job.get("nodeId") != machine_id:
        raise WireError("job.nodeId: a manager reports the jobs of its own machine only")
    out: dict[str, Any] = {"nodeId": machine_id}
    for k in ("pid", "startTicks", "startTime"):
        if job.get(k) is None:
            raise WireError(f"job.{k}: missing")
    for k, (lo, hi) in _INTS.items():
        if job.get(k) is not None:
            out[k] = _int(job[k], f"job.{k}", lo, hi)
    for k, limit in _TEXT.items():
        if job.get(k) is not None:
            out[k] = _text(job[k], f"job.{k}", limit)
    for k, (count, limit) in _LISTS.items():
        v = job.get(k)
        if v is None:
            continue
        if not isinstance(v, list) or len(v) > count:
            raise WireError(f"job.{k}: must be a list of at most {count} strings")
        out[k] = [_text(x, f"job.{k}[{i}]", limit) for i, x in enumerate(v)]
    for k, limit in _OBJECTS.items():
        v = job.get(k)
        if v is None:
            continue
        if k in ("parameters", "code", "container") and not isinstance(v, dict):
            raise WireError(f"job.{k}: must be an object")
        _json_size(v, f"job.{k}", limit)
        _no_nul(v, f"job.{k}")
        out[k] = v
    out["status"] = _status(job.get("status", "running"), "job.status", JOB_STATUSES[:5])
    core = job.get("coreDumped", False)
    if not isinstance(core, bool):
        raise WireError("job.coreDumped: must be true or false")
    out["coreDumped"] = core
    params = out.get("parameters")
    if params is not None:
        env = params.get("envVars")
        if env is not None:
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                raise WireError("job.parameters.envVars: must map names to strings")
            params["envVars"] = {n: v for n, v in env.items() if not looks_secret(n)}
    return out


def _key(v: Mapping[str, Any], name: str) -> JobKey:
    return JobKey(
        _int(v.get("pid"), f"{name}pid", 1, PID_MAX),
        _int(v.get("start_ticks"), f"{name}start_ticks", 0, 2**63 - 1),
    )


def check_end(msg: Mapping[str, Any]) -> JobEnd:
    """A JOB_CHANGED event, checked."""
    key = _key(msg, "")
    status = _status(msg.get("status"), "status", END_STATUSES)
    code, sig = msg.get("exit_code"), msg.get("signal")
    core, end, reason = msg.get("core_dumped", False), msg.get("end_time"), msg.get("reason")
    if not isinstance(core, bool):
        raise WireError("core_dumped: must be true or false")
    return JobEnd(
        key,
        status,
        None if code is None else _int(code, "exit_code", 0, 255),
        None if sig is None else _int(sig, "signal", 1, 64),
        core,
        None if end is None else _int(end, "end_time", 0, 2**53),
        None if reason is None else _text(reason, "reason", _TEXT["reason"]),
    )


def check_snapshot(msg: Mapping[str, Any]) -> list[JobKey]:
    """A JOB_SNAPSHOT's running jobs, checked."""
    jobs = msg.get("jobs")
    if not isinstance(jobs, list) or len(jobs) > MAX_SNAPSHOT_JOBS:
        raise WireError(f"jobs: must be a list of at most {MAX_SNAPSHOT_JOBS} objects")
    out = []
    for i, j in enumerate(jobs):
        if not isinstance(j, dict):
            raise WireError(f"jobs[{i}]: must be an object")
        out.append(_key(j, f"jobs[{i}]."))
    return out


def _opt_int(v: Any, name: str, lo: int, hi: int) -> int | None:
    return None if v is None else _int(v, name, lo, hi)


def _sample(v: Any, name: str) -> MetricSample:
    if not isinstance(v, dict):
        raise WireError(f"{name}: must be an object")
    state = v.get("state")
    if not isinstance(state, str) or state not in PROC_STATES:
        raise WireError(
            f"{name}.state: must be one process state of {''.join(sorted(PROC_STATES))}"
        )
    cpu = v.get("cpu_percent")
    if cpu is not None and (
        isinstance(cpu, bool)
        or not isinstance(cpu, int | float)
        or not math.isfinite(cpu)
        or not 0 <= cpu <= 100 * 65_536
    ):
        raise WireError(f"{name}.cpu_percent: must be a number in [0, 6553600] or null")
    io = v.get("io_source")
    if io is not None:
        io = _status(io, f"{name}.io_source", IO_SOURCES)
    return MetricSample(
        key=_key(v, f"{name}."),
        time_ms=_int(v.get("time"), f"{name}.time", 0, 2**53),
        state=state,
        cpu_percent=None if cpu is None else float(cpu),
        rss_bytes=_int(v.get("rss_bytes"), f"{name}.rss_bytes", 0, _BIG),
        threads=_int(v.get("threads"), f"{name}.threads", 0, PID_MAX),
        read_bytes=_opt_int(v.get("read_bytes"), f"{name}.read_bytes", 0, _BIG),
        write_bytes=_opt_int(v.get("write_bytes"), f"{name}.write_bytes", 0, _BIG),
        io_source=io,
        open_files=_opt_int(v.get("open_files"), f"{name}.open_files", 0, 2**31 - 1),
        accel_memory_bytes=_opt_int(
            v.get("accel_memory_bytes"), f"{name}.accel_memory_bytes", 0, _BIG
        ),
    )


def check_metrics(msg: Mapping[str, Any]) -> list[MetricSample]:
    """A JOB_METRICS's samples, checked (each field's type and bounds; a job sampled twice in
    one message is refused)."""
    interval = msg.get("interval_s")
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not math.isfinite(interval)
        or not 0 < interval <= 86_400
    ):
        raise WireError("interval_s: must be a number of seconds in (0, 86400]")
    samples = msg.get("samples")
    if not isinstance(samples, list) or len(samples) > MAX_METRIC_SAMPLES:
        raise WireError(f"samples: must be a list of at most {MAX_METRIC_SAMPLES} objects")
    out = [_sample(v, f"samples[{i}]") for i, v in enumerate(samples)]
    if len({s.key for s in out}) != len(out):
        raise WireError("samples: a job sampled twice")
    return out


def check_stop(msg: Mapping[str, Any]) -> tuple[JobKey, float]:
    """A STOP_JOB's process and grace period, checked."""
    grace = msg.get("grace_s", 10.0)
    if (
        isinstance(grace, bool)
        or not isinstance(grace, int | float)
        or not 0 <= grace <= 300
        or not math.isfinite(grace)
    ):
        raise WireError("grace_s: must be a number of seconds in [0, 300]")
    return _key(msg, ""), float(grace)


def fit_job(job: dict[str, Any], limit: int = MAX_JOB_BYTES) -> dict[str, Any]:
    """job, its largest texts (script contents, config files) cut until it encodes within
    limit; what was cut says so (``...Truncated``: true)."""

    def size() -> int:
        return len(json.dumps(job, ensure_ascii=False, default=str).encode())

    job = {k: v[: _TEXT[k]] if k in _TEXT and isinstance(v, str) else v for k, v in job.items()}
    if size() <= limit:
        return job
    code = dict(job.get("code") or {})
    params = dict(job.get("parameters") or {})
    job = {**job, "code": code, "parameters": params}
    for holder, key in ((code, "scriptContent"), (code, "shScriptContent")):
        if isinstance(holder.get(key), str) and size() > limit:
            over = size() - limit
            holder[key] = holder[key][: max(0, len(holder[key]) - over - 1024)]
            holder[key.replace("Content", "Truncated")] = True
    configs = [dict(c) for c in params.get("configFiles") or [] if isinstance(c, dict)]
    params["configFiles"] = configs
    for cfg in configs:
        if size() <= limit:
            break
        cfg.pop("configFileContent", None)
        cfg.pop("parameterData", None)
        cfg["contentDropped"] = "the job's description is too large"
    if size() > limit:  # what is left is the command line and the lists
        job["commandLine"] = str(job.get("commandLine", ""))[:4096]
        job["modelFiles"] = list(job.get("modelFiles") or [])[:16]
        code["sharedLibraries"] = list(code.get("sharedLibraries") or [])[:256]
        params["parameterRaw"] = str(params.get("parameterRaw", ""))[:4096]
        params["parameterData"] = {}
    return job
