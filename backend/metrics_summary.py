"""GET /api/v1/metrics/summary (seeds/003 section 5): current values and averages over a range.

The filter is a conjunction (AND) of ``machine_id``, ``monitor_id``, ``pid``, ``function``
(``=``), ``time_range`` (``= '1h'``: the range ends at the last whole interval before now)
and ``timestamp`` bounds (``>=``/``>``/``<``/``<=`` RFC 3339, rounded outward to whole
aggregation intervals). Both sources, InfluxDB (the aggregates) and PostgreSQL (``events``,
when no InfluxDB is configured), are reduced to the same per-interval totals
(``IntervalTotals``) and summarised here by one function, so they give the same numbers.

Metrics (``current``: the latest interval of the range with calls; ``avg_<range>``: the
whole range):

- ``api_calls_per_s``, ``api_errors_per_s``, ``bytes_copied_per_s``,
  ``bytes_allocated_per_s``, ``events_dropped_per_s``: count in the interval / its length;
  over the range, total / range length;
- ``latency_mean_ns``, ``latency_max_ns``, ``latency_p50_ns``, ``latency_p95_ns``,
  ``latency_p99_ns``: of the calls in the interval; over the range, of all its calls
  (percentiles from the merged histograms: backend.histogram, within +3.125 %);
- ``device_memory_bytes``: held at the end of the interval (summed over processes);
  over the range, the mean of that value at the end of each interval.

``machine_id``, ``monitor_id`` and ``pid`` restrict every metric; ``function`` restricts the
call metrics only (memory and drops are per process and per monitor).

Accelerator metrics (``gpu_memory_usage``, ``gpu_utilization``, ``npu_memory_usage``,
``npu_utilization``, ...: backend.device_summary) come from the devices' samples; the filter's
``machine_id``, ``device`` (an index) and ``job_id`` restrict them (``device`` and ``job_id``
restrict nothing else, so they take device metrics only), and ``monitor_id``, ``pid`` and
``function`` do not apply to them.

``cpu_utilization`` (backend.cpu_summary) is the CPU used by the AI jobs' processes, in % of
one core, summed over the jobs matched (not the whole machine's CPU), from the jobs' process
samples; ``machine_id``, ``job_id`` (a distributed job: its ranks) and ``pid`` restrict it,
``monitor_id`` and ``function`` do not apply, and ``device`` with it is a 400.
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.cpu_summary import CPU_METRIC
from backend.device_summary import DEVICE_METRICS
from backend.histogram import percentile

__all__ = ["METRICS", "IntervalTotals", "SummaryError", "SummaryQuery", "parse_filter", "summarize"]

METRICS = ("api_calls_per_s", "api_errors_per_s", "latency_mean_ns", "latency_max_ns",
           "latency_p50_ns", "latency_p95_ns", "latency_p99_ns", "bytes_copied_per_s",
           "bytes_allocated_per_s", "device_memory_bytes", "events_dropped_per_s")  # fmt: skip
_MAX_RANGE_NS = 31 * 86_400 * 10**9
_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
          "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}  # fmt: skip
_RESTRICTION = re.compile(
    r"""\s*([A-Za-z_]+)\s*(==|=|>=|<=|>|<)\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s()'"]+)\s*"""
)
_SAFE = re.compile(r"^[A-Za-z0-9_.:@+/-]{1,128}$")


class SummaryError(ValueError):
    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param, self.problem = param, problem


@dataclass(frozen=True)
class SummaryQuery:
    start_ns: int  # whole intervals: [start_ns, end_ns)
    end_ns: int
    interval_ns: int
    range_label: str
    machine_id: str | None = None
    monitor_id: str | None = None
    pid: int | None = None
    function: str | None = None
    device: int | None = None
    job_id: str | None = None


@dataclass
class IntervalTotals:
    calls: int = 0
    errors: int = 0
    dsum: int = 0
    dmax: int = 0
    copied: int = 0
    allocated: int = 0
    dropped: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def merge(self, other: IntervalTotals) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.dsum += other.dsum
        self.dmax = max(self.dmax, other.dmax)
        self.copied += other.copied
        self.allocated += other.allocated
        self.dropped += other.dropped
        for b, c in other.hist.items():
            self.hist[b] = self.hist.get(b, 0) + c


def _label(ns: int) -> str:
    for unit in ("w", "d", "h", "m", "s", "ms", "us", "ns"):
        if ns % _UNITS[unit] == 0:
            return f"{ns // _UNITS[unit]}{unit}"
    return f"{ns}ns"


def _parse_duration(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ns|us|ms|s|m|h|d|w)", text)
    if not m:
        raise SummaryError("filter", f"time_range {text!r} is not a duration like 15m, 1h, 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _parse_time(text: str) -> int:
    from backend.filters import _parse_rfc3339  # one RFC 3339 reader for every filter

    ns = _parse_rfc3339(text)
    if ns is None:
        raise SummaryError("filter", f"timestamp {text!r} is not RFC 3339")
    return ns


def parse_filter(text: str, now_ns: int, interval_ns: int) -> SummaryQuery:
    """The summary filter; SummaryError names what is wrong."""
    values: dict[str, Any] = {}
    lo: int | None = None
    hi: int | None = None
    span: int | None = None
    parts = [p for p in re.split(r"\s+AND\s+", text.strip()) if p] if text.strip() else []
    for part in parts:
        m = _RESTRICTION.fullmatch(part)
        if not m:
            raise SummaryError(
                "filter",
                f"cannot read {part!r}: use field = value, joined by"
                " AND (fields: machine_id, monitor_id, pid, function, "
                "device, job_id, time_range, timestamp)",
            )
        name, op, raw = m.groups()
        value = raw[1:-1].replace("\\'", "'").replace('\\"', '"') if raw[0] in "'\"" else raw
        if name == "timestamp":
            t = _parse_time(value)
            if op in (">", ">="):
                lo = t
            elif op in ("<", "<="):
                hi = t + (op == "<=")
            else:
                raise SummaryError("filter", "timestamp takes >, >=, < or <=")
            continue
        if op not in ("=", "=="):
            raise SummaryError("filter", f"{name} takes = only")
        if name == "time_range":
            span = _parse_duration(value)
        elif name in ("pid", "device"):
            if not value.isdigit() or len(value) > 9:
                raise SummaryError("filter", f"{name} {value!r} is not an integer")
            values[name] = int(value)
        elif name == "job_id":
            try:
                values[name] = str(uuid.UUID(value))
            except ValueError:
                raise SummaryError("filter", f"job_id {value!r} is not a job id (a UUID)") from None
        elif name in ("machine_id", "monitor_id", "function"):
            if not _SAFE.match(value):
                raise SummaryError("filter", f"{name} {value!r} has characters not allowed")
            values[name] = value
        else:
            raise SummaryError(
                "filter",
                f"unknown field {name!r}; known: device, function, job_id, "
                "machine_id, monitor_id, pid, time_range, timestamp",
            )
    end = hi if hi is not None else (now_ns // interval_ns) * interval_ns
    end = -(-end // interval_ns) * interval_ns
    if lo is not None:
        start = (lo // interval_ns) * interval_ns
    else:
        start = end - (span if span is not None else 3600 * 10**9)
        start = (start // interval_ns) * interval_ns
    if end <= start:
        raise SummaryError("filter", "the time range is empty")
    if end - start > _MAX_RANGE_NS:
        raise SummaryError("filter", "the time range is longer than 31 days")
    label = (
        _label(end - start) if span is None or lo is not None or hi is not None else _label(span)
    )
    return SummaryQuery(start, end, interval_ns, label, **values)


def parse_metrics(text: str | None, q: SummaryQuery | None = None) -> list[str]:
    """The metrics asked (absent: the call metrics; with a device filter the accelerator
    metrics; with a job_id filter those and cpu_utilization); SummaryError names what cannot
    be answered."""
    device = q is not None and q.device is not None
    job = q is not None and q.job_id is not None
    if not text:
        if job:
            return [*DEVICE_METRICS, CPU_METRIC]
        return list(DEVICE_METRICS) if device else list(METRICS)
    names = [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        if m not in METRICS and m not in DEVICE_METRICS and m != CPU_METRIC:
            raise SummaryError(
                "metrics",
                f"unknown metric {m!r}; known: "
                + ", ".join([*METRICS, *DEVICE_METRICS, CPU_METRIC]),
            )
        if (device or job) and m in METRICS:
            raise SummaryError(
                "filter", f"device and job_id restrict accelerator and CPU metrics only, not {m}"
            )
        if device and m == CPU_METRIC:
            raise SummaryError("filter", f"device restricts accelerator metrics only, not {m}")
    return names


def summarize(
    q: SummaryQuery,
    per_interval: Mapping[int, IntervalTotals],
    memory: Mapping[tuple[str, ...], Iterable[tuple[int, int]]],
    metrics: list[str],
    source: str,
) -> dict[str, Any]:
    """The response body. per_interval: {interval start ns: totals} (only [start, end));
    memory: {process: [(interval start ns, held after it)]}, sorted, from any time < end."""
    step = q.interval_ns
    with_calls = [t for t, v in per_interval.items() if v.calls]
    current_t = max(with_calls) if with_calls else q.end_ns - step
    current = per_interval.get(current_t, IntervalTotals())
    total = IntervalTotals()
    for t in sorted(per_interval):
        total.merge(per_interval[t])
    range_s = (q.end_ns - q.start_ns) / 1e9
    held_now, held_mean = _held(q, memory, current_t)
    avg_key = f"avg_{q.range_label}"
    out: dict[str, Any] = {}
    for name in metrics:
        if name in DEVICE_METRICS or name == CPU_METRIC:
            continue  # backend.device_summary, backend.cpu_summary
        if name == "device_memory_bytes":
            cur: float | int | None = held_now
            avg: float | int | None = held_mean
        else:
            cur = _value(name, current, step / 1e9)
            avg = _value(name, total, range_s)
        out[name] = {"current": cur, avg_key: avg}
    body: dict[str, Any] = {
        "time_range": q.range_label,
        "start_ns": q.start_ns,
        "end_ns": q.end_ns,
        "interval_ns": step,
        "current_interval_ns": current_t,
        "source": source,
        "metrics": out,
    }
    if q.machine_id is not None:
        body = {"machine_id": q.machine_id, **body}
    for key in ("monitor_id", "pid", "function", "device", "job_id"):
        if getattr(q, key) is not None:
            body[key] = getattr(q, key)
    return {"summary": body}


def _value(name: str, t: IntervalTotals, seconds: float) -> float | int | None:
    if name.endswith("_per_s"):
        count = {"api_calls_per_s": t.calls, "api_errors_per_s": t.errors,
                 "bytes_copied_per_s": t.copied, "bytes_allocated_per_s": t.allocated,
                 "events_dropped_per_s": t.dropped}[name]  # fmt: skip
        return count / seconds
    if not t.calls:
        return None
    if name == "latency_mean_ns":
        return t.dsum / t.calls
    if name == "latency_max_ns":
        return t.dmax
    q = {"latency_p50_ns": 0.5, "latency_p95_ns": 0.95, "latency_p99_ns": 0.99}[name]
    return percentile(t.hist, q, t.dmax)


def _held(
    q: SummaryQuery, memory: Mapping[tuple[str, ...], Iterable[tuple[int, int]]], at: int
) -> tuple[int, float]:
    """(bytes held at the end of interval ``at``, the mean over the range's intervals of the
    bytes held at their ends), summed over processes. Each process's holding is a step
    function of its changes, so this is a sum over its changes, not over the intervals:
    a 30-day range of 1 s intervals (2.6M) costs what its changes cost."""
    n = (q.end_ns - q.start_ns) // q.interval_ns
    now, weighted = 0, 0
    for changes in memory.values():
        points = sorted(changes)
        times = [t for t, _ in points]
        k = bisect.bisect_right(times, at)
        now += points[k - 1][1] if k else 0
        for i, (t, held) in enumerate(points):
            # intervals whose start is >= t and < the next change's time hold `held`
            first = _first_step(q, t)
            last = _first_step(q, points[i + 1][0]) if i + 1 < len(points) else n
            weighted += held * max(0, last - first)
    return now, weighted / n if n else 0.0


def _first_step(q: SummaryQuery, t: int) -> int:
    """Index of the first interval of the range starting at or after t (0..n)."""
    n = (q.end_ns - q.start_ns) // q.interval_ns
    return min(n, max(0, -(-(t - q.start_ns) // q.interval_ns)))
