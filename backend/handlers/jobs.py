"""AI jobs (seed 000 section 3, in the style of seeds/003): list, get, parameters, code,
status history, stop and batch stop. What a job is and how its status moves:
backend.job_events; stopping: backend.job_control. Fields are seed 000's (camelCase).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from backend import audit, csv_export, job_control, request_db
from backend.errors import ApiError, NotFound
from backend.handlers.listing import Sorting, every_row, list_query
from backend.handlers.views import iso
from backend.models import JobBatchStop, decode_body, path_text, path_uuid
from backend.repo import job_ranks, job_status_history, jobs, machines
from backend.typedefs import CALLER, DB

__all__ = [
    "SUMMARY_FIELDS",
    "batch_stop",
    "get_code",
    "get_job",
    "get_parameters",
    "get_ranks",
    "list_jobs",
    "list_machine_jobs",
    "status_history",
    "stop_job",
    "summary",
    "view",
]

_SORTING = Sorting(jobs.ORDERABLE, jobs.TIEBREAK, default="startTime desc")


def _ms(t: Any) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


# the fields of summary, in order: the CSV columns (a process job leaves the last three empty)
SUMMARY_FIELDS = (
    "jobId",
    "nodeId",
    "jobName",
    "jobType",
    "framework",
    "frameworkVersion",
    "modelFormat",
    "pid",
    "ppid",
    "pgid",
    "processName",
    "cwd",
    "user",
    "startTime",
    "endTime",
    "status",
    "statusReason",
    "exitCode",
    "signal",
    "coreDumped",
    "createdAt",
    "updatedAt",
    "kind",
    "distributedJobId",
    "launcher",
    "rank",
    "localRank",
    "worldSize",
    "device",
    "ranksSeen",
    "ranksMissing",
    "nodeIds",
)


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """A job as lists show it; a distributed job (kind) also with its ranks seen and missing
    and its machines."""
    out = {
        "jobId": str(r["id"]),
        "nodeId": r["machine_id"],
        "jobName": r["job_name"],
        "jobType": r["job_type"],
        "framework": r["framework"],
        "frameworkVersion": r["framework_version"],
        "modelFormat": r["model_format"],
        "pid": r["pid"],
        "ppid": r["ppid"],
        "pgid": r["pgid"],
        "processName": r["process_name"],
        "cwd": r["cwd"],
        "user": r["unix_user"],
        "startTime": _ms(r["start_time"]),
        "endTime": _ms(r["end_time"]),
        "status": r["status"],
        "statusReason": r["status_reason"],
        "exitCode": r["exit_code"],
        "signal": r["signal"],
        "coreDumped": r["core_dumped"],
        "createdAt": iso(r["created_at"]),
        "updatedAt": iso(r["updated_at"]),
        "kind": r["kind"],
        "distributedJobId": None if r["group_id"] is None else str(r["group_id"]),
        "launcher": _json(r["launcher"]),
        "rank": r["rank"],
        "localRank": r["local_rank"],
        "worldSize": r["world_size"],
        "device": r["device"],
    }
    if r["kind"] == "distributed":
        out.update(_ranks_seen(r["world_size"], r["ranks_seen"]))
        out["nodeIds"] = list(r["node_ids"] or [])
    return out


def _ranks_seen(world: int | None, seen: int | None) -> dict[str, Any]:
    seen = seen or 0
    return {"ranksSeen": seen, "ranksMissing": None if world is None else max(0, world - seen)}


def view(r: dict[str, Any], machine: dict[str, Any] | None = None) -> dict[str, Any]:
    details = _json(r["details"]) or {}
    out = {
        **summary(r),
        "commandLine": r["command_line"],
        "startTicks": r["start_ticks"],
        **{k: details.get(k) for k in jobs.DETAILS},
        "latestMetrics": _json(r.get("latest_metrics")),
    }
    out["node"] = (
        {"nodeId": machine["id"], "hostname": machine["hostname"]} if machine is not None else None
    )
    return out


async def _list(request: web.Request, machine_id: str | None) -> web.StreamResponse:
    as_csv = csv_export.wanted(request)
    q = list_query(request, jobs.FIELDS, _SORTING)
    where, params = q.where, list(q.params)
    if machine_id is not None:
        where = f"machine_id = %s AND kind = 'process' AND ({where})"
        params = [machine_id, *params]
    else:
        where = f"group_id IS NULL AND ({where})"

    async def fetch(conn: Any, after: tuple[object, ...] | None, limit: int) -> list[Any]:
        return await jobs.list_jobs(conn, where, params, q.order, after, limit)

    async with request_db.connection(request) as conn:
        if machine_id is not None and await machines.get_machine(conn, machine_id) is None:
            raise NotFound(f"machine '{machine_id[:80]}' not found")
        if not as_csv:
            rows = await fetch(conn, q.after, q.size + 1)
    if as_csv:
        batches = every_row(request, q, fetch, summary)
        return await csv_export.respond(request, "jobs", SUMMARY_FIELDS, batches)
    rows, token = q.page(rows, lambda r: r["_key"])
    return web.json_response({"jobs": [summary(r) for r in rows], "next_page_token": token})


async def list_jobs(request: web.Request) -> web.StreamResponse:
    """AI jobs on every machine, a page at a time: each process job, and each distributed job
    once (its ranks: GET /jobs/{id}/ranks). filter: kind (process, distributed), status,
    jobType, framework, machine, name, user, pid, modelFormat, startTime, endTime; order_by:
    startTime (newest first by default), name, machine, updateTime."""
    return await _list(request, None)


async def list_machine_jobs(request: web.Request) -> web.StreamResponse:
    """The AI processes on the machine, ranks of distributed jobs included, a page at a time
    (filter and order_by as GET /jobs)."""
    return await _list(request, path_text(request, "machine_id"))


async def _job(conn: Any, request: web.Request, parts: str = "") -> dict[str, Any]:
    jid = path_uuid(request, "job_id")
    row = await jobs.get_job(conn, jid, parts=parts)
    if row is None:
        raise NotFound(f"job '{jid}' not found")
    return row


async def get_job(request: web.Request) -> web.Response:
    """One job: its description and status, and its node."""
    async with request_db.connection(request) as conn:
        row = await _job(conn, request)
        machine = await machines.get_machine(conn, row["machine_id"])
    return web.json_response(view(row, machine))


async def get_ranks(request: web.Request) -> web.Response:
    """The job's ranks: for a distributed job every rank process on every machine (rank, local
    rank, device, status; a rank restarted elastically once per process), with the world size
    and how many ranks have not appeared; a process job is its own single rank."""
    async with request_db.connection(request) as conn:
        row = await _job(conn, request)
        rows = await job_ranks.ranks(conn, row["id"])
    seen = len({r["rank"] for r in rows if r["rank"] is not None})
    world = row["world_size"] if row["kind"] == "distributed" else (row["world_size"] or 1)
    return web.json_response(
        {
            "jobId": str(row["id"]),
            "worldSize": world,
            "ranksSeen": seen,
            "missing": None if world is None else max(0, world - seen),
            "ranks": [
                {
                    "jobId": str(r["job_id"]),
                    "nodeId": r["machine_id"],
                    "hostname": r["hostname"],
                    "pid": r["pid"],
                    "rank": r["rank"],
                    "localRank": r["local_rank"],
                    "device": r["device"],
                    "status": r["status"],
                    "startTime": _ms(r["start_time"]),
                    "endTime": _ms(r["end_time"]),
                }
                for r in rows
            ],
        }
    )


async def get_parameters(request: web.Request) -> web.Response:
    """The job's parameters: its arguments parsed, each config file they name, the allowed
    environment variables (secret-looking ones are never read)."""
    async with request_db.connection(request) as conn:
        row = await _job(conn, request, "parameters")
    p = _json(row["parameters"]) or {}
    jid, at = str(row["id"]), iso(row["created_at"])
    items = [
        {
            "jobId": jid,
            "parameterRaw": p.get("parameterRaw", ""),
            "parameterData": p.get("parameterData") or {},
            "parameterSource": p.get("parameterSource", "command_line"),
            "configFilePath": None,
            "configFileContent": None,
            "envVars": p.get("envVars") or {},
            "envVarsWithheld": p.get("envVarsWithheld") or [],
            "timestamp": at,
        }
    ]
    for cfg in p.get("configFiles") or []:
        if isinstance(cfg, dict):
            items.append(
                {
                    "jobId": jid,
                    "parameterRaw": "",
                    "parameterData": cfg.get("parameterData"),
                    "parameterSource": "config_file",
                    "configFilePath": cfg.get("configFilePath"),
                    "configFileContent": cfg.get("configFileContent"),
                    "error": cfg.get("error") or cfg.get("parseError"),
                    "envVars": {},
                    "envVarsWithheld": [],
                    "timestamp": at,
                }
            )
    return web.json_response({"jobId": jid, "items": items})


async def get_code(request: web.Request) -> web.Response:
    """The job's code: its script (path, content up to a size limit), the shell script that
    launched it, the libraries it imported and loaded, its config files."""
    async with request_db.connection(request) as conn:
        row = await _job(conn, request, "code")
    code = _json(row["code"]) or {}
    jid = str(row["id"])
    return web.json_response(
        {"jobId": jid, "items": [{**code, "jobId": jid, "timestamp": iso(row["created_at"])}]}
    )


async def status_history(request: web.Request) -> web.Response:
    """Every status the job has had, oldest first, with when and why."""
    async with request_db.connection(request) as conn:
        row = await _job(conn, request)
        rows = await job_status_history.list_for(conn, row["id"])
    jid = str(row["id"])
    return web.json_response(
        {
            "jobId": jid,
            "items": [
                {
                    "id": h["id"],
                    "jobId": jid,
                    "oldStatus": h["old_status"],
                    "newStatus": h["new_status"],
                    "reason": h["reason"],
                    "changedAt": iso(h["changed_at"]),
                }
                for h in rows
            ],
        }
    )


@audit.audited("STOP_JOB")
async def stop_job(request: web.Request) -> web.Response:
    """Stops a running job: SIGTERM, then SIGKILL after the grace period, by its machine's
    manager; answers once it has ended, with the job."""
    async with request_db.connection(request) as conn:
        row = await _job(conn, request)
    after = await job_control.stop_job(request.app, request[CALLER], row)
    return web.json_response(summary(after))


@audit.audited("BATCH_STOP_JOBS")
async def batch_stop(request: web.Request) -> web.Response:
    """Stops each job listed, at once; the result of each (success: the ids stopped; failed:
    the others, each with its reason)."""
    body = await decode_body(request, JobBatchStop)
    ids = list(dict.fromkeys(body.jobIds))

    async def one(jid: uuid.UUID) -> dict[str, Any] | None:
        try:
            async with request.app[DB].connection() as conn:
                row = await jobs.get_job(conn, jid)
            if row is None:
                raise NotFound(f"job '{jid}' not found")
            await job_control.stop_job(request.app, request[CALLER], row)
        except ApiError as e:
            return {
                "jobId": str(jid),
                "code": e.http_status,
                "status": e.status,
                "reason": e.message,
            }
        return None

    results = await asyncio.gather(*(one(j) for j in ids))
    failed = [r for r in results if r is not None]
    stopped = [str(j) for j, r in zip(ids, results, strict=True) if r is None]
    await audit.detail(
        f"stopped {len(stopped)}: {', '.join(stopped)}; failed {len(failed)}: "
        + ", ".join(f"{f['jobId']} ({f['status']})" for f in failed)
    )
    return web.json_response({"success": stopped, "failed": failed})
