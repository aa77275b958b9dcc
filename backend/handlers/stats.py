"""Statistics (issue #15, seed 000 section 5): GET /stats/cluster, /stats/machines/{id},
/stats/jobs and /stats/trends. Names are the API's snake_case; the seed's map onto them
(totalNodes: machines.total, activeNodes: machines.by_status.ACTIVE, totalNPUs and
healthyNPUs: devices.by_kind and devices.by_health, avgNPUUsage: utilization_pct_mean,
avgNPUTemp: temperature_c_mean, avgNPUPower: power_w_mean, jobTypeDistribution:
jobs.by_type, frameworkDistribution: jobs.by_framework, runningJobs: jobs.by_status.running).

Device figures are over each device's latest sample (GET /machines/{id}/devices): means over
the devices reporting the value, memory summed. Jobs are single-process and distributed jobs,
not a distributed job's ranks; a job without a type or framework counts under "unknown".

/stats/jobs: the jobs that held the most on the accelerators, ``order_by`` device_time
(default), memory (held now) or peak_memory, each with its devices. A job's device time is
the time its processes held memory on a device, summed over its devices, from consecutive
device samples (backend.repo.job_devices: both samples show it there; gaps over 300 s do not
count), so the same with and without InfluxDB.

/stats/trends: per interval (``interval`` 1m, 5m, 1h; aligned on the Unix epoch) of
[startTime, endTime): the mean over the devices of their interval mean utilisation and
temperature, the sum over the devices of their interval maximum memory used (device metrics'
aggregation), how many devices were sampled, and the jobs running at some time in it (from
their start and end times).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend import request_db
from backend.device_history import Scope, history
from backend.errors import BadRequest, NotFound, Unavailable
from backend.handlers.devices import MAX_POINTS, range_query
from backend.handlers.machines import machine_status
from backend.handlers.views import iso
from backend.influx import InfluxError
from backend.models import path_text
from backend.repo import job_devices, machines, stats
from backend.typedefs import INFLUX, SETTINGS

__all__ = ["cluster", "machine", "top_jobs", "trends"]

_MAX_LIMIT = 100


def _devices(counts: list[dict[str, Any]], means: dict[str, Any]) -> dict[str, Any]:
    by_kind: Counter[str] = Counter()
    by_health: Counter[str] = Counter({"ok": 0, "warning": 0, "critical": 0, "unknown": 0})
    for r in counts:
        by_kind[r["kind"]] += r["count"]
        by_health[r["health"]] += r["count"]
    return {
        "devices": {
            "total": means["devices"],
            "by_kind": {"gpu": by_kind["gpu"], "npu": by_kind["npu"]},
            "by_health": dict(by_health),
        },
        "utilization_pct_mean": means["utilization_pct_mean"],
        "temperature_c_mean": means["temperature_c_mean"],
        "power_w_mean": means["power_w_mean"],
        "memory_used_bytes": means["memory_used_bytes"] or 0,
        "memory_total_bytes": means["memory_total_bytes"] or 0,
    }


def _jobs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"total": sum(r["count"] for r in rows)}
    for key, col in (
        ("by_status", "status"),
        ("by_type", "job_type"),
        ("by_framework", "framework"),
    ):
        c: Counter[str] = Counter()
        for r in rows:
            c[r[col] or "unknown"] += r["count"]
        out[key] = dict(sorted(c.items()))
    return out


async def cluster(request: web.Request) -> web.Response:
    """Machines by status, devices by kind and health with their means, jobs by status, type
    and framework."""
    timeout = request.app[SETTINGS].heartbeat_timeout_s
    async with request_db.connection(request) as conn:
        by_status = await stats.machine_counts(conn, timeout)
        counts, means = await stats.device_figures(conn, None)
        jobs = await stats.job_counts(conn, None)
    return web.json_response(
        {
            "machines": {"total": sum(by_status.values()), "by_status": by_status},
            **_devices(counts, means),
            "jobs": _jobs(jobs),
            "timestamp": iso(datetime.now(UTC)),
        }
    )


async def machine(request: web.Request) -> web.Response:
    """One machine's figures: its devices by kind and health with their means, its jobs."""
    machine_id = path_text(request, "machine_id")
    async with request_db.connection(request) as conn:
        row = await machines.get_machine(conn, machine_id)
        if row is None:
            raise NotFound(f"machine '{machine_id[:80]}' not found")
        counts, means = await stats.device_figures(conn, machine_id)
        jobs = await stats.job_counts(conn, machine_id)
    return web.json_response(
        {
            "machine_id": machine_id,
            "hostname": row["hostname"],
            "status": machine_status(row, request.app[SETTINGS].heartbeat_timeout_s),
            **_devices(counts, means),
            "jobs": _jobs(jobs),
            "timestamp": iso(datetime.now(UTC)),
        }
    )


def _machine_param(request: web.Request) -> str | None:
    machine_id = request.query.get("machine_id")
    if machine_id is not None and (not 0 < len(machine_id) <= 256 or "\0" in machine_id):
        raise BadRequest("machine_id", "must be 1 to 256 characters, no NUL")
    return machine_id


async def top_jobs(request: web.Request) -> web.Response:
    """The jobs that held the most on the accelerators, with their devices."""
    order_by = request.query.get("order_by", "device_time")
    if order_by not in job_devices.ORDERS:
        raise BadRequest("order_by", "must be device_time, memory or peak_memory")
    raw = request.query.get("limit", "10")
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
        raise BadRequest("limit", f"must be 1 to {_MAX_LIMIT}")
    machine_id = _machine_param(request)
    async with request_db.connection(request) as conn:
        rows = await job_devices.top(conn, order_by, int(raw), machine_id)
        held = await job_devices.devices_of(conn, [r["job_id"] for r in rows])
    return web.json_response(
        {
            "order_by": order_by,
            "jobs": [
                {
                    "job_id": str(r["job_id"]),
                    "job_name": r["job_name"],
                    "machine_id": r["machine_id"],
                    "hostname": r["hostname"],
                    "status": r["status"],
                    "device_seconds": r["device_seconds"],
                    "memory_bytes": r["memory_bytes"],
                    "peak_memory_bytes": r["peak_memory_bytes"],
                    "devices": [_held(d) for d in held.get(r["job_id"], [])],
                }
                for r in rows
            ],
        }
    )


def _held(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine_id": d["machine_id"],
        "kind": d["kind"],
        "index": d["index"],
        "uuid": d["uuid"],
        "device_seconds": d["device_seconds"],
        "memory_bytes": d["memory_bytes"],
        "peak_memory_bytes": d["peak_memory_bytes"],
    }


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


async def trends(request: web.Request) -> web.Response:
    """The cluster's (or machine_id's) figures per interval over a range."""
    machine_id = _machine_param(request)
    label, step, start, end = range_query(request)
    writer = request.app.get(INFLUX)
    async with request_db.connection(request) as conn:
        try:
            rows = await history(
                conn,
                None if writer is None else writer.config,
                Scope(machine_id),
                start,
                end,
                step,
                MAX_POINTS + 1,
            )
        except InfluxError as e:
            raise Unavailable(str(e)) from None
        if len(rows) > MAX_POINTS:
            raise BadRequest(
                "interval",
                f"more than {MAX_POINTS} device points: ask a longer interval or a shorter range",
            )
        running = await stats.running_per_interval(conn, start, end, step, machine_id)
    per: dict[datetime, list[dict[str, Any]]] = {t: [] for t in running}
    for r in rows:
        per.setdefault(r["time"], []).append(r)
    points = []
    for t in sorted(per):
        got = per[t]
        util = [r["utilization_pct"] for r in got if r["utilization_pct"] is not None]
        temp = [r["temperature_c"] for r in got if r["temperature_c"] is not None]
        points.append(
            {
                "time": iso(t),
                "devices": len(got),
                "utilization_pct_mean": _mean(util),
                "temperature_c_mean": _mean(temp),
                "memory_used_bytes": sum(r["memory_used_bytes"] or 0 for r in got),
                "jobs_running": running.get(t, 0),
            }
        )
    body: dict[str, Any] = {
        "start_time": iso(start),
        "end_time": iso(end),
        "interval": label,
        "source": "postgresql" if writer is None else "influxdb",
        "points": points,
    }
    if machine_id is not None:
        body["machine_id"] = machine_id
    return web.json_response(body)
