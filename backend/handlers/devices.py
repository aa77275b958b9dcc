"""Accelerators (issue #15, seed 000 sections 2.3 and 4): GET /machines/{id}/devices,
/machines/{id}/device-processes, /machines/{id}/device-metrics and /device-metrics.

Values keep the wire's names and units (xpucore.device_wire: bytes, W, C, %, MHz); times
are the machines' sampling times. device-metrics reduce each interval (``interval``: 1m, 5m,
1h; default 1m; intervals aligned on the Unix epoch) per device: the mean of utilisation,
memory-copy utilisation, power, temperature and SM clock, the maximum of memory, HBM, PCIe
throughput and error counters (backend.device_samples.AGGREGATION, listed in each answer),
from InfluxDB when it is configured, else from PostgreSQL (samples kept
settings.device_retention_days). Both device-metrics lists answer CSV too
(backend.csv_export): the items of "metrics", columns CSV_COLUMNS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from backend import csv_export, request_db
from backend.device_history import Scope, history
from backend.device_samples import AGGREGATION, VALUES
from backend.errors import BadRequest, NotFound, Unavailable
from backend.filters import _parse_rfc3339
from backend.handlers.views import iso
from backend.influx import InfluxError
from backend.models import path_text
from backend.repo import devices, machines
from backend.typedefs import INFLUX

__all__ = [
    "list_device_metrics",
    "list_devices",
    "list_processes",
    "machine_device_metrics",
    "range_query",
]

INTERVALS = {"1m": 60, "5m": 300, "1h": 3600}
MAX_POINTS = 100_000  # rows one answer holds
#: a CSV answer's columns: those of each item of the JSON's "metrics"
CSV_COLUMNS = ("machine_id", "kind", "index", "uuid", "time", *VALUES)
_CSV_BATCH = 10_000
_MAX_RANGE = timedelta(days=31)


async def _machine(conn: Any, machine_id: str) -> None:
    if await machines.get_machine(conn, machine_id) is None:
        raise NotFound(f"machine '{machine_id[:80]}' not found")


def _device_filter(request: web.Request) -> tuple[str | None, int | None]:
    kind = request.query.get("kind")
    if kind is not None and kind not in ("gpu", "npu"):
        raise BadRequest("kind", "must be gpu or npu")
    raw = request.query.get("device")
    if raw is None:
        return kind, None
    if not raw.isdigit() or int(raw) > 4095:
        raise BadRequest("device", "must be a device index, 0 to 4095")
    return kind, int(raw)


def _values(row: dict[str, Any]) -> dict[str, Any]:
    return {v: row[v] for v in VALUES}


async def list_devices(request: web.Request) -> web.Response:
    """The machine's accelerators: inventory, health and latest sample."""
    machine_id = path_text(request, "machine_id")
    async with request_db.connection(request) as conn:
        await _machine(conn, machine_id)
        rows = await devices.list_devices(conn, machine_id)
        errors = await devices.device_errors(conn, machine_id)
    return web.json_response(
        {
            "machine_id": machine_id,
            # what the manager's last sample said failed (no library, a crash, a hang);
            # null: it never sent a sample
            "errors": errors,
            "devices": [
                {
                    "kind": r["kind"],
                    "index": r["index"],
                    **{k: r[k] for k in devices.INVENTORY},
                    **_values(r),
                    "sampled_at": iso(r["sampled_at"]),
                }
                for r in rows
            ],
        }
    )


async def list_processes(request: web.Request) -> web.Response:
    """The processes holding memory on the machine's accelerators, with their jobs."""
    machine_id = path_text(request, "machine_id")
    kind, index = _device_filter(request)
    async with request_db.connection(request) as conn:
        await _machine(conn, machine_id)
        rows = await devices.list_processes(conn, machine_id, kind, index)
    return web.json_response(
        {
            "machine_id": machine_id,
            "processes": [
                {
                    "kind": r["kind"],
                    "index": r["index"],
                    "uuid": r["uuid"],
                    "pid": r["pid"],
                    "memory_bytes": r["memory_bytes"],
                    "job_id": None if r["job_id"] is None else str(r["job_id"]),
                    "job_name": r["job_name"],
                    "process_name": r["process_name"],
                    "sampled_at": iso(r["sampled_at"]),
                }
                for r in rows
            ],
        }
    )


async def _batches(items: list[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    for i in range(0, len(items), _CSV_BATCH):
        yield items[i : i + _CSV_BATCH]


def _time(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if raw is None:
        return default
    ns = _parse_rfc3339(raw)
    if ns is None:
        raise BadRequest(name, f"{raw[:64]!r} is not an RFC 3339 time")
    return datetime.fromtimestamp(ns / 1e9, UTC)


def range_query(request: web.Request) -> tuple[str, int, datetime, datetime]:
    """interval (its label and length), startTime and endTime of a device-history query,
    checked: the last hour at 1m by default, at most 31 days."""
    label = request.query.get("interval", "1m")
    if label not in INTERVALS:
        raise BadRequest("interval", "must be 1m, 5m or 1h")
    end = _time(request, "endTime", datetime.now(UTC))
    start = _time(request, "startTime", end - timedelta(hours=1))
    if start >= end:
        raise BadRequest("startTime", "must be before endTime")
    if end - start > _MAX_RANGE:
        raise BadRequest("startTime", "the range is longer than 31 days")
    return label, INTERVALS[label], start, end


async def _metrics(
    request: web.Request, machine_id: str | None, *, known: bool
) -> web.StreamResponse:
    """known: machine_id is the path's (404 when there is no such machine)."""
    kind, index = _device_filter(request)
    as_csv = csv_export.wanted(request)
    label, step, start, end = range_query(request)
    writer = request.app.get(INFLUX)
    async with request_db.connection(request) as conn:
        if known and machine_id is not None:
            await _machine(conn, machine_id)
        try:
            rows = await history(
                conn,
                None if writer is None else writer.config,
                Scope(machine_id, kind, index),
                start,
                end,
                step,
                MAX_POINTS + 1,
            )
        except InfluxError as e:
            raise Unavailable(str(e)) from None
    if len(rows) > MAX_POINTS:
        raise BadRequest(
            "interval", f"more than {MAX_POINTS} points: ask a longer interval or a shorter range"
        )
    metrics = [
        {
            "machine_id": r["machine_id"],
            "kind": r["kind"],
            "index": r["index"],
            "uuid": r["uuid"],
            "time": iso(r["time"]),
            **_values(r),
        }
        for r in rows
    ]
    if as_csv:
        return await csv_export.respond(request, "device-metrics", CSV_COLUMNS, _batches(metrics))
    body: dict[str, Any] = {
        "start_time": iso(start),
        "end_time": iso(end),
        "interval": label,
        "aggregation": AGGREGATION,
        "source": "postgresql" if writer is None else "influxdb",
        "metrics": metrics,
    }
    if machine_id is not None:
        body = {"machine_id": machine_id, **body}
    return web.json_response(body)


async def machine_device_metrics(request: web.Request) -> web.StreamResponse:
    """The machine's accelerator samples over a range, reduced per device and interval."""
    return await _metrics(request, path_text(request, "machine_id"), known=True)


async def list_device_metrics(request: web.Request) -> web.StreamResponse:
    """Every machine's (or machine_id's) accelerator samples, per device and interval."""
    machine_id = request.query.get("machine_id")
    if machine_id is not None and (not 0 < len(machine_id) <= 256 or "\0" in machine_id):
        raise BadRequest("machine_id", "must be 1 to 256 characters, no NUL")
    return await _metrics(request, machine_id, known=False)
