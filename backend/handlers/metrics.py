"""GET /api/v1/metrics/summary: key metrics, current and averaged (seeds/003 section 5).

Served from InfluxDB's aggregates when InfluxDB is configured, from PostgreSQL's events
otherwise; ``source=influxdb|postgresql`` asks for one (both give the same numbers:
backend.metrics_summary).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from backend import request_db
from backend.errors import BadRequest, Unavailable
from backend.influx import InfluxError
from backend.metrics_summary import SummaryError, parse_filter, parse_metrics, summarize
from backend.repo.metrics import influx_totals, pg_totals
from backend.typedefs import INFLUX, SETTINGS

__all__ = ["summary"]


async def summary(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    interval_ns = round(settings.aggregate_interval_s * 1e9)
    try:
        q = parse_filter(request.query.get("filter", ""), time.time_ns(), interval_ns)
        metrics = parse_metrics(request.query.get("metrics"))
    except SummaryError as e:
        raise BadRequest(e.param, e.problem) from None
    writer = request.app.get(INFLUX)
    source = request.query.get("source") or ("influxdb" if writer is not None else "postgresql")
    if source == "influxdb":
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
    return web.json_response(body)
