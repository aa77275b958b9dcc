"""Process metrics of AI jobs (seed 000 section 3.5): how samples are stored and aggregated.

Managers sample each running job every interval (JOB_METRICS, xpucore.job_wire.MetricSample).
With InfluxDB configured each sample is a point of the measurement ``xpu_process``; without,
a row of PostgreSQL's ``job_metrics`` (backend.repo.job_metrics, kept ``retention_days``).
Either way the job's row keeps its last sample (``jobs.latest_metrics``).

``xpu_process``  tags machine, job_id, pid
                 fields cpu_percent (float; absent at a job's first sample), rss_bytes,
                 threads, read_bytes, write_bytes, open_files, accel_memory_bytes (integers;
                 each absent when not known), suspended (1 in state T, else 0)
                 time: the sample's (ms precision)

Read back (``GET /jobs/{id}/process-metrics``) per interval of ``interval`` (aligned to the
Unix epoch, as InfluxQL's ``GROUP BY time`` aligns them; intervals without samples left out),
each field reduced as ``AGGREGATES`` says: CPU % the mean of the samples, the sizes and counts
their maximum (read and write bytes are totals since the process started, so their maximum is
the total at the interval's last sample), suspended whether any sample was. Both stores give
the same numbers for the same samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from backend.influx import InfluxConfig, query, quote_literal
from xpucore.job_wire import MetricSample

__all__ = [
    "AGGREGATES",
    "MAX_POINTS",
    "MEASUREMENT",
    "Range",
    "RangeError",
    "influx_series",
    "lines",
    "parse_interval",
    "point",
    "sample_json",
]

MEASUREMENT = "xpu_process"
#: Response field: (stored field, its aggregate over an interval).
AGGREGATES = {
    "cpuPercent": ("cpu_percent", "mean"),
    "rssBytes": ("rss_bytes", "max"),
    "threadCount": ("threads", "max"),
    "openFiles": ("open_files", "max"),
    "readBytes": ("read_bytes", "max"),
    "writeBytes": ("write_bytes", "max"),
    "accelMemoryBytes": ("accel_memory_bytes", "max"),
    "suspended": ("suspended", "max"),
    "samples": ("rss_bytes", "count"),
}
MAX_POINTS = 10_000  # intervals one answer may span
_INTERVAL = re.compile(r"([1-9][0-9]{0,5})(s|m|h|d)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: intervals tried, shortest first, when the request names none
DEFAULT_INTERVALS = ("10s", "1m", "5m", "15m", "1h", "6h", "1d")


class RangeError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Range:
    """[start_ms, end_ms) in intervals of step_ms, named interval."""

    start_ms: int
    end_ms: int
    interval: str
    step_ms: int


def parse_interval(text: str) -> int:
    """An interval ("10s", "1m", "5m", "1h", "1d": a number and a unit) in ms."""
    m = _INTERVAL.fullmatch(text)
    if m is None:
        raise RangeError("interval", "must be a number and a unit s, m, h or d (e.g. 1m)")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds > 7 * 86400:
        raise RangeError("interval", "must be at most 7 days")
    return seconds * 1000


def choose_range(start_ms: int, end_ms: int, interval: str | None) -> Range:
    """The range asked for, in the interval asked for, or else the shortest default interval
    that spans it in at most MAX_POINTS (RangeError naming the field otherwise)."""
    if end_ms <= start_ms:
        raise RangeError("endTime", "must be after startTime")
    if interval is None:
        for name in DEFAULT_INTERVALS:
            if (end_ms - start_ms) // parse_interval(name) < MAX_POINTS:
                interval = name
                break
        else:
            raise RangeError("startTime", f"the range spans more than {MAX_POINTS} days")
    step = parse_interval(interval)
    first, last = start_ms // step, (end_ms - 1) // step
    if last - first + 1 > MAX_POINTS:
        raise RangeError(
            "interval", f"{interval} splits the range into more than {MAX_POINTS} intervals"
        )
    return Range(start_ms, end_ms, interval, step)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def sample_json(s: MetricSample) -> dict[str, Any]:
    """A sample as the job's latestMetrics shows it."""
    return {
        "timestamp": _iso(s.time_ms),
        "state": s.state,
        "cpuPercent": s.cpu_percent,
        "rssBytes": s.rss_bytes,
        "memoryMb": round(s.rss_bytes / 2**20, 1),
        "threadCount": s.threads,
        "readBytes": s.read_bytes,
        "writeBytes": s.write_bytes,
        "ioSource": s.io_source,
        "openFiles": s.open_files,
        "accelMemoryBytes": s.accel_memory_bytes,
    }


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def lines(machine_id: str, samples: list[tuple[str, MetricSample]]) -> list[str]:
    """(job id, sample) pairs as xpu_process lines."""
    out = []
    for job_id, s in samples:
        fields = {
            "rss_bytes": s.rss_bytes,
            "threads": s.threads,
            "read_bytes": s.read_bytes,
            "write_bytes": s.write_bytes,
            "open_files": s.open_files,
            "accel_memory_bytes": s.accel_memory_bytes,
            "suspended": int(s.suspended),
        }
        text = ",".join(f"{k}={v}i" for k, v in fields.items() if v is not None)
        if s.cpu_percent is not None:
            text = f"cpu_percent={s.cpu_percent!r},{text}"
        out.append(
            f"{MEASUREMENT},machine={_tag(machine_id)},job_id={job_id},pid={s.key.pid} "
            f"{text} {s.time_ms * 1_000_000}"
        )
    return out


def point(start_ms: int, values: dict[str, Any]) -> dict[str, Any]:
    """One interval of the answer, from its aggregates by response field."""
    rss = values.get("rssBytes")
    out: dict[str, Any] = {
        "timestamp": _iso(start_ms),
        **{k: values.get(k) for k in AGGREGATES},
        "memoryMb": None if rss is None else round(rss / 2**20, 1),
    }
    cpu = out["cpuPercent"]
    out["cpuPercent"] = None if cpu is None else round(float(cpu), 2)
    out["suspended"] = bool(out["suspended"])
    for k in AGGREGATES:
        if k not in ("cpuPercent", "suspended") and out[k] is not None:
            out[k] = int(out[k])
    return out


async def influx_series(
    session: aiohttp.ClientSession, config: InfluxConfig, job_id: str, r: Range
) -> list[dict[str, Any]]:
    """The job's intervals from xpu_process (InfluxError when InfluxDB fails)."""
    select = ", ".join(f"{agg}({field}) AS {name}" for name, (field, agg) in AGGREGATES.items())
    q = (
        f"SELECT {select} FROM {MEASUREMENT} WHERE job_id = {quote_literal(job_id)} "
        f"AND time >= {r.start_ms * 1_000_000} AND time < {r.end_ms * 1_000_000} "
        f"GROUP BY time({r.step_ms}ms) fill(none)"
    )
    out = []
    for series in await query(session, config, q):
        columns = series["columns"]
        for row in series.get("values", ()):
            values = dict(zip(columns, row, strict=True))
            out.append(point(values.pop("time") // 1_000_000, values))
    return out
