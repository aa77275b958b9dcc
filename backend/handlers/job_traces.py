"""Traces of a job (issue #14 section 4, in the style of seeds/003): start (a monitor on
every rank), list, get, stop. What moves a job trace: backend.job_traces."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
from aiohttp import web

from backend import audit, job_traces, request_db
from backend.errors import Conflict, NotFound
from backend.handlers.listing import Sorting, list_query
from backend.handlers.views import iso
from backend.models import JobTraceCreate, decode_body, path_uuid
from backend.repo import job_traces as repo
from backend.repo import jobs
from backend.typedefs import CALLER

__all__ = ["get_job_trace", "list_job_traces", "start_job_trace", "stop_job_trace", "view"]

_SORTING = Sorting(repo.ORDERABLE, repo.TIEBREAK, default="createTime desc")


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def _rank(r: dict[str, Any], events: dict[str, Any]) -> dict[str, Any]:
    e = events.get(str(r["monitor_id"]), {})
    return {
        "rank": r["rank"],
        "jobId": str(r["process_id"]),
        "nodeId": r["machine_id"],
        "hostname": r["hostname"],
        "pid": r["pid"],
        "late": r["late"],
        "monitorId": None if r["monitor_id"] is None else str(r["monitor_id"]),
        "monitorStatus": r["monitor_status"],
        "error": r["error"]
        or (f"{r['error_code']}: {r['error_message']}" if r["error_code"] else r["error_message"]),
        # what its agent said it sent, and what was stored when the trace was generated
        "eventsSent": e.get("sent"),
        "eventsStored": e.get("stored"),
    }


def view(t: dict[str, Any], ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    clocks = _json(t["clocks"])
    events = _json(t["events"]) or {}
    out: dict[str, Any] = {
        "jobTraceId": str(t["id"]),
        "jobId": str(t["job_id"]),
        "monitorType": t["monitor_type"],
        "config": _json(t["config"]),
        "window": _json(t["window"]),
        "name": t["name"],
        "state": t["state"],
        "stateReason": t["state_reason"],
        "createdBy": None if t["created_by"] is None else str(t["created_by"]),
        "createTime": iso(t["create_time"]),
        "stopTime": iso(t["stop_time"]),
        "endTime": iso(t["end_time"]),
        "traceJobId": None if t["trace_job_id"] is None else str(t["trace_job_id"]),
        # how the machines' clocks were aligned: each one's offset added to its events'
        # timestamps, and the bound of that correction (None: never measured)
        "clockAlignment": None
        if clocks is None
        else [
            {"nodeId": m, "offsetNs": c["offset_ns"], "errorNs": c["error_ns"]}
            for m, c in sorted(clocks.items())
        ],
        # every rank's monitor stored what its agent sent (None: not yet generated)
        "complete": t["complete"],
    }
    if ranks is not None:
        out["ranks"] = [_rank(r, events) for r in ranks]
    return out


async def _job(conn: Any, request: web.Request) -> dict[str, Any]:
    jid = path_uuid(request, "job_id")
    row = await jobs.get_job(conn, jid)
    if row is None:
        raise NotFound(f"job '{jid}' not found")
    return row


async def _trace(conn: Any, request: web.Request) -> dict[str, Any]:
    job = await _job(conn, request)
    tid = path_uuid(request, "trace_id")
    t = await repo.get(conn, tid, job["id"])
    if t is None:
        raise NotFound(f"trace '{tid}' of job '{job['id']}' not found")
    return t


async def _answer(request: web.Request, tid: uuid.UUID, status: int = 200) -> web.Response:
    async with request_db.connection(request) as conn:
        t = await repo.get(conn, tid)
        ranks = await repo.ranks_of(conn, tid)
    assert t is not None
    headers = {"Location": f"/api/v1/jobs/{t['job_id']}/traces/{tid}"} if status == 202 else None
    return web.json_response(view(t, ranks), status=status, headers=headers)


@audit.audited("TRACE_JOB")
async def start_job_trace(request: web.Request) -> web.Response:
    """Starts a monitor of monitorType on every running rank of the job, on every machine:
    202 with the job trace (RUNNING, each rank with its monitor or why it has none); 409
    when no rank runs."""
    body = await decode_body(request, JobTraceCreate)
    async with request_db.connection(request) as conn:
        job = await _job(conn, request)
    config = body.monitor_config()
    name = body.name or f"{job['job_name'] or 'job'} {body.monitorType}"[:200]
    window = None if body.window is None else msgspec.to_builtins(body.window)
    t = await job_traces.start(
        request.app, request[CALLER], job, body.monitorType, config, window, name
    )
    await audit.detail(f"job trace {t['id']}")
    return await _answer(request, t["id"], 202)


async def list_job_traces(request: web.Request) -> web.Response:
    """The job's traces, a page at a time (filter: state, monitorType, name, createTime;
    order_by: createTime, newest first by default)."""
    q = list_query(request, repo.FIELDS, _SORTING)
    async with request_db.connection(request) as conn:
        job = await _job(conn, request)
        rows = await repo.list_page(conn, job["id"], q.where, q.params, q.order, q.after,
                                    q.size + 1)  # fmt: skip
    rows, token = q.page(rows, lambda r: r["_key"])
    return web.json_response({"traces": [view(r) for r in rows], "next_page_token": token})


async def get_job_trace(request: web.Request) -> web.Response:
    """One trace of the job: its state, each rank's monitor, the clock alignment used."""
    async with request_db.connection(request) as conn:
        t = await _trace(conn, request)
    return await _answer(request, t["id"])


@audit.audited("STOP_JOB_TRACE")
async def stop_job_trace(request: web.Request) -> web.Response:
    """Stops every rank's monitor together, then generates the trace: 202 with the job
    trace (STOPPING); 409 when it is not RUNNING."""
    async with request_db.connection(request) as conn:
        t = await _trace(conn, request)
    caller = request[CALLER]
    if not await job_traces.stop(request.app, t["id"], f"stopped by {caller.email}"):
        async with request_db.connection(request) as conn:
            now = await repo.get(conn, t["id"])
        raise Conflict(f"trace {t['id']} is {now['state'] if now else 'gone'}, not RUNNING")
    return await _answer(request, t["id"], 202)
