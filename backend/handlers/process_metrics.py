"""GET /api/v1/jobs/{job_id}/process-metrics (seed 000 section 3.5): a job's CPU %, memory,
threads, I/O and open files, per interval, from InfluxDB when configured, else PostgreSQL
(backend.process_metrics says which aggregate each field is)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from backend import request_db
from backend.errors import BadRequest, NotFound, Unavailable
from backend.filters import _parse_rfc3339
from backend.handlers.views import iso
from backend.influx import InfluxError
from backend.models import path_uuid
from backend.process_metrics import (
    AGGREGATES,
    RangeError,
    choose_range,
    influx_series,
    parse_interval,
)
from backend.repo import job_metrics, jobs
from backend.typedefs import INFLUX

__all__ = ["process_metrics"]


def _ms(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    ns = _parse_rfc3339(raw)
    if ns is None:
        raise BadRequest(name, f"'{raw[:80]}' is not an RFC 3339 time (e.g. 2024-02-05T10:00:00Z)")
    return ns // 1_000_000


async def process_metrics(request: web.Request) -> web.Response:
    """The job's process metrics in [startTime, endTime) (RFC 3339; default: from the job's
    start to its end, or now) per interval (e.g. 10s, 1m, 5m, 1h; default: the shortest of
    10s, 1m, 5m, 15m, 1h, 6h, 1d that spans the range in at most 10,000 intervals)."""
    jid = path_uuid(request, "job_id")
    start, end = _ms(request, "startTime"), _ms(request, "endTime")
    interval = request.query.get("interval") or None
    try:
        if interval is not None:
            parse_interval(interval)  # a bad one is a 400 whether or not the job exists
        if start is not None and end is not None:
            choose_range(start, end, interval)
    except RangeError as e:
        raise BadRequest(e.field, e.problem) from None
    async with request_db.connection(request) as conn:
        row = await jobs.get_job(conn, jid)
        if row is None:
            raise NotFound(f"job '{jid}' not found")
        if start is None:
            start = int(row["start_time"].timestamp() * 1000)
        if end is None:
            ended = row["end_time"]
            end = int(ended.timestamp() * 1000) + 1 if ended else time.time_ns() // 1_000_000
            end = max(end, start + 1)  # a start asked for after it: an empty range, not a 400
        try:
            r = choose_range(start, end, interval)
        except RangeError as e:
            raise BadRequest(e.field, e.problem) from None
        writer = request.app.get(INFLUX)
        if writer is None:
            points = await job_metrics.series(conn, jid, r)
    if writer is not None:
        try:
            async with aiohttp.ClientSession() as session:
                points = await influx_series(session, writer.config, str(jid), r)
        except InfluxError as e:
            raise Unavailable(str(e)) from None
    job_id = str(jid)
    return web.json_response(
        {
            "jobId": job_id,
            "pid": row["pid"],
            "startTime": iso(datetime.fromtimestamp(r.start_ms / 1000, UTC)),
            "endTime": iso(datetime.fromtimestamp(r.end_ms / 1000, UTC)),
            "interval": r.interval,
            "source": "influxdb" if writer is not None else "postgresql",
            "aggregates": {k: agg for k, (_, agg) in AGGREGATES.items()},
            "metrics": [{"jobId": job_id, "pid": row["pid"], **p} for p in points],
        }
    )
