"""Traces (seeds/003 section 6): generate from a filter, follow the job, download the file.

POST traces:generate checks the filter up front (a 400 naming the problem) and the caller's
quota of trace jobs queued or running (429), and answers 202 with the job id; the job is
queued, and backend.trace_jobs builds the file. A user sees only their own jobs and
traces: anyone else's are 404. The trace id is assigned with the job and shown once it is
COMPLETED; downloading a trace whose job has not completed is a 409.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from backend import request_db
from backend.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from backend.filters import FilterError, compile_filter
from backend.handlers.views import iso
from backend.models import TraceGenerate, decode_body, path_uuid
from backend.repo import trace_jobs
from backend.repo.events import EVENT_FIELDS
from backend.trace_files import content_disposition, content_type, download_name, trace_path
from backend.typedefs import SETTINGS, TRACE_JOBS, USER

__all__ = ["download_trace", "generate_trace", "get_trace_job", "job_view"]

log = logging.getLogger(__name__)


def job_view(j: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "trace_job_id": str(j["id"]),
        "trace_name": j["trace_name"],
        "status": j["status"],
        "progress": round(float(j["progress"]), 4),
        "filter": j["filter"],
        "format": j["format"],
        "gzip": j["gzip"],
        "events": j["events_done"],
        "events_total": j["events_total"],
        "attempts": j["attempts"],
        "create_time": iso(j["create_time"]),
        "start_time": iso(j["start_time"]),
        "end_time": iso(j["end_time"]),
    }
    if j["status"] == "COMPLETED":
        body["trace_id"] = str(j["trace_id"])
        body["download_url"] = f"/api/v1/traces/{j['trace_id']}"
        body["file_name"] = download_name(j["trace_name"], j["format"], j["gzip"])
        body["file_size"] = j["file_size"]
        body["stats"] = j["stats"]
    elif j["status"] == "FAILED":
        body["error_message"] = j["error_message"]
    return body


async def generate_trace(request: web.Request) -> web.Response:
    """Starts generating a trace of the events matching a filter."""
    body = await decode_body(request, TraceGenerate)
    try:
        compile_filter(body.filter, EVENT_FIELDS)
    except FilterError as e:
        raise BadRequest(e.param, e.problem) from None
    user_id = uuid.UUID(request[USER].user_id)
    quota = request.app[SETTINGS].max_trace_jobs_per_user
    try:
        async with request_db.connection(request) as conn:
            job = await trace_jobs.create_job(
                conn, user_id, body.trace_name, body.filter, body.format, body.gzip, max_jobs=quota
            )
    except trace_jobs.JobLimit as e:
        raise QuotaExceeded(
            f"XPUTRACE_MAX_TRACE_JOBS_PER_USER: you have {e.jobs} trace jobs "
            f"queued or running, the quota is {quota}; generate this one once "
            f"one of them is COMPLETED or FAILED"
        ) from None
    request.app[TRACE_JOBS].wake()
    return web.json_response(
        {"trace_job_id": str(job["id"])},
        status=202,
        headers={"Location": f"/api/v1/traces/jobs/{job['id']}"},
    )


async def get_trace_job(request: web.Request) -> web.Response:
    """A trace job: its status, progress and, once COMPLETED, where to download the trace."""
    job_id = path_uuid(request, "trace_job_id")
    async with request_db.connection(request) as conn:
        job = await trace_jobs.get_job(conn, job_id, uuid.UUID(request[USER].user_id))
    if job is None:
        raise NotFound(f"trace job '{job_id}' not found")
    return web.json_response(job_view(job))


async def download_trace(request: web.Request) -> web.StreamResponse:
    """Downloads a generated trace file."""
    trace_id = path_uuid(request, "trace_id")
    async with request_db.connection(request) as conn:
        job = await trace_jobs.get_job_by_trace(conn, trace_id, uuid.UUID(request[USER].user_id))
    if job is None:
        raise NotFound(f"trace '{trace_id}' not found")
    if job["status"] == "PROCESSING":
        raise Conflict(
            f"trace '{trace_id}' is still being generated "
            f"({float(job['progress']):.0%}); GET /api/v1/traces/jobs/{job['id']} "
            f"says when it is COMPLETED"
        )
    if job["status"] == "FAILED":
        raise Conflict(f"trace '{trace_id}' could not be generated: {job['error_message']}")
    path = trace_path(request.app[SETTINGS].traces_dir, trace_id)
    if not path.is_file():
        log.warning("trace file %s of COMPLETED job %s is missing", path, job["id"])
        raise NotFound(f"trace '{trace_id}' file is no longer on the server")
    name = download_name(job["trace_name"], job["format"], job["gzip"])
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type(job["format"], job["gzip"]),
            "Content-Disposition": content_disposition(name),
        },
    )
