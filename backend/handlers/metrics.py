"""GET /api/v1/metrics/summary: key metrics, current and averaged (seeds/003 section 5).

Served from InfluxDB's aggregates when InfluxDB is configured, from PostgreSQL's events
otherwise; ``source=influxdb|postgresql`` asks for one (both give the same numbers:
backend.metrics_summary). The accelerator metrics (backend.device_summary) come from where the
samples are kept: InfluxDB when it is configured, PostgreSQL's device_metrics otherwise.

``cpu_utilization`` (backend.cpu_summary) is the CPU used by the AI jobs' processes, in % of one
core, summed over the jobs matched (``machine_id``, ``job_id``: a distributed job's ranks,
``pid``); not the whole machine's CPU. ``current`` is the sum of each job's latest sample in the
range, ``avg_<range>`` the sum of each job's mean over the range; from where the jobs' samples
are kept: InfluxDB's xpu_process when it is configured, PostgreSQL's job_metrics otherwise.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from backend import request_db
from backend.cpu_summary import CPU_METRIC, cpu_summary, influx_per_job
from backend.device_history import Scope, per_device
from backend.device_summary import DEVICE_METRICS, device_metrics_summary
from backend.errors import BadRequest, Unavailable
from backend.influx import InfluxError
from backend.metrics_summary import (
    IntervalTotals,
    SummaryError,
    SummaryQuery,
    parse_filter,
    parse_metrics,
    summarize,
)
from backend.repo import job_metrics, jobs
from backend.repo.metrics import influx_totals, pg_totals
from backend.typedefs import INFLUX, SETTINGS

__all__ = ["summary"]


async def summary(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    interval_ns = round(settings.aggregate_interval_s * 1e9)
    try:
        q = parse_filter(request.query.get("filter", ""), time.time_ns(), interval_ns)
        metrics = parse_metrics(request.query.get("metrics"), q)
    except SummaryError as e:
        raise BadRequest(e.param, e.problem) from None
    writer = request.app.get(INFLUX)
    source = request.query.get("source") or ("influxdb" if writer is not None else "postgresql")
    calls = [m for m in metrics if m not in DEVICE_METRICS and m != CPU_METRIC]
    by_device = [m for m in metrics if m in DEVICE_METRICS]
    if by_device and source == "postgresql" and writer is not None:
        raise BadRequest("source", "device samples are kept in InfluxDB when it is configured")
    if CPU_METRIC in metrics and source == "postgresql" and writer is not None:
        raise BadRequest("source", "job process samples are kept in InfluxDB when it is configured")
    per: dict[int, IntervalTotals] = {}
    memory: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    if not calls and source in ("influxdb", "postgresql"):
        if source == "influxdb" and writer is None:
            raise BadRequest("source", "InfluxDB is not configured")
    elif source == "influxdb":
        if writer is None:
            raise BadRequest("source", "InfluxDB is not configured")
        try:
            async with aiohttp.ClientSession() as session:
                per, memory = await influx_totals(session, writer.config, q)
        except InfluxError as e:
            raise Unavailable(str(e)) from None
    elif source == "postgresql":
        async with request_db.connection(request) as conn:
            per, memory = await pg_totals(conn, q)
    else:
        raise BadRequest("source", "must be influxdb or postgresql")
    # a long range is a lot of intervals: computed beside the event loop, never on it
    body = await asyncio.to_thread(summarize, q, per, memory, metrics, source)
    out = body["summary"]["metrics"]
    avg_key = f"avg_{q.range_label}"
    if by_device:
        rows = await _device_rows(request, q, {DEVICE_METRICS[m][0] for m in by_device})
        out.update(device_metrics_summary(by_device, rows, avg_key))
    if CPU_METRIC in metrics:
        out[CPU_METRIC] = cpu_summary(await _job_cpu(request, q), avg_key)
    body["summary"]["metrics"] = {m: out[m] for m in metrics}
    return web.json_response(body)


async def _job_cpu(request: web.Request, q: SummaryQuery) -> list[tuple[str, float, float]]:
    """Each matched job's mean and latest CPU % over the range (backend.cpu_summary)."""
    writer = request.app.get(INFLUX)
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=q.start_ns // 1000)
    end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=-(-q.end_ns // 1000))
    async with request_db.connection(request) as conn:
        ids = None if q.job_id is None else await jobs.process_jobs(conn, uuid.UUID(q.job_id))
        if writer is None:
            return await job_metrics.cpu_per_job(conn, start, end, q.machine_id, q.pid, ids)
    try:
        async with aiohttp.ClientSession() as session:
            return await influx_per_job(
                session,
                writer.config,
                q.start_ns,
                q.end_ns,
                q.machine_id,
                q.pid,
                None if ids is None else [str(i) for i in ids],
            )
    except InfluxError as e:
        raise Unavailable(str(e)) from None


async def _device_rows(
    request: web.Request, q: SummaryQuery, kinds: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per kind, each matched device's means and latest values over the range."""
    writer = request.app.get(INFLUX)
    start = datetime.fromtimestamp(q.start_ns / 1e9, UTC)
    end = datetime.fromtimestamp(q.end_ns / 1e9, UTC)
    values = sorted({DEVICE_METRICS[m][1] for m in DEVICE_METRICS})
    job = uuid.UUID(q.job_id) if q.job_id else None
    out: dict[str, list[dict[str, Any]]] = {}
    async with request_db.connection(request) as conn:
        for kind in sorted(kinds):
            scope = Scope(q.machine_id, kind, q.device, job)
            try:
                out[kind] = await per_device(
                    conn, None if writer is None else writer.config, scope, start, end, values
                )
            except InfluxError as e:
                raise Unavailable(str(e)) from None
    return out
