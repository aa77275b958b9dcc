"""AI jobs, as their machines' managers report them (migration 0014, backend.job_events)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.filters import FieldSpec
from backend.paging import OrderBy
from backend.repo.pages import fetch_page

__all__ = [
    "DETAILS",
    "FIELDS",
    "FINAL",
    "LIVE",
    "ORDERABLE",
    "PLACEMENT",
    "SUMMARY_COLS",
    "TIEBREAK",
    "get_job",
    "group_of",
    "job_id",
    "list_jobs",
    "live_by_pid",
    "live_not_listed",
    "lock",
    "lock_many",
    "process_jobs",
    "set_latest_metrics",
    "set_status",
    "upsert",
    "with_status",
]

Conn = AsyncConnection[Any]
Row = dict[str, Any]
#: A job's id: derived from its key, so a report applied twice lands on the same row.
_NAMESPACE = uuid.UUID("5b0f3f0e-6f7c-4d55-9d0a-0c2f1a6f5e14")
FINAL = ("exited", "killed", "stopped")  # its end was seen: nothing moves it again
LIVE = ("running", "unknown", "suspended")  # not known to have ended
SUMMARY_COLS = (
    "id, machine_id, pid, start_ticks, job_name, job_type, framework, "
    "framework_version, model_format, ppid, pgid, process_name, cwd, unix_user, "
    "start_time, end_time, status, status_reason, exit_code, signal, core_dumped, "
    "created_at, updated_at, kind, group_id, launcher, rank, local_rank, world_size, device, "
    "ranks_seen, node_ids"
)
_COLS = SUMMARY_COLS + ", command_line, details, latest_metrics, latest_metrics_at"
# Description fields (xpucore.job_wire.check_job) -> columns; the rest goes to details.
_COLUMNS = {
    "jobName": "job_name",
    "jobType": "job_type",
    "framework": "framework",
    "frameworkVersion": "framework_version",
    "modelFormat": "model_format",
    "ppid": "ppid",
    "pgid": "pgid",
    "processName": "process_name",
    "commandLine": "command_line",
    "cwd": "cwd",
    "user": "unix_user",
}
#: Where a process stands in a distributed job (backend.job_groups), written with its
#: description.
PLACEMENT = ("group_id", "launcher", "rank", "local_rank", "world_size", "device")
#: The description fields kept in the details column, as a job's view shows them.
DETAILS = (
    "accelerator",
    "runtimes",
    "frameworks",
    "evidence",
    "jobTypeEvidence",
    "exe",
    "uid",
    "modelFiles",
    "frameworkVersionSource",
    "container",
)


def job_id(machine_id: str, pid: int, start_ticks: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{machine_id}:{pid}:{start_ticks}")


def _ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _jsonb(v: Any) -> str | None:
    return None if v is None else json.dumps(v)


async def lock(conn: Conn, jid: uuid.UUID) -> str | None:
    """The job's status, its row locked for the transaction; None when unknown."""
    cur = await conn.execute("SELECT status FROM jobs WHERE id = %s FOR UPDATE", (jid,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def group_of(conn: Conn, jid: uuid.UUID) -> uuid.UUID | None:
    """The distributed job the process job is a rank of (None: none, or no such job)."""
    cur = await conn.execute("SELECT group_id FROM jobs WHERE id = %s", (jid,))
    row = await cur.fetchone()
    return None if row is None else row[0]


async def process_jobs(conn: Conn, jid: uuid.UUID) -> list[uuid.UUID]:
    """The process jobs a job id stands for: a process job itself, a distributed job its
    ranks (on every machine); none for an unknown id."""
    cur = await conn.execute(
        "SELECT id FROM jobs WHERE (id = %s AND kind = 'process') OR group_id = %s ORDER BY id",
        (jid, jid),
    )
    return [r[0] for r in await cur.fetchall()]


async def lock_many(conn: Conn, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of ids that is a job, their rows locked (in id order)."""
    cur = await conn.execute(
        "SELECT id, status FROM jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(ids),)
    )
    return {r[0]: str(r[1]) for r in await cur.fetchall()}


async def set_latest_metrics(
    conn: Conn, latest: Sequence[tuple[uuid.UUID, dict[str, Any], int]]
) -> None:
    """(job id, its last sample as JSON, the sample's Unix ms) of each job; an older sample
    than the one kept changes nothing."""
    await conn.execute(
        "UPDATE jobs j SET latest_metrics = n.m, latest_metrics_at = n.at FROM "
        "unnest(%s::uuid[], %s::jsonb[], %s::timestamptz[]) AS n(id, m, at) "
        "WHERE j.id = n.id AND (j.latest_metrics_at IS NULL OR j.latest_metrics_at <= n.at)",
        (
            [jid for jid, _, _ in latest],
            [json.dumps(m) for _, m, _ in latest],
            [_ms(ms) for _, _, ms in latest],
        ),
    )


async def upsert(
    conn: Conn,
    jid: uuid.UUID,
    machine_id: str,
    job: dict[str, Any],
    status: str,
    reason: str,
    placement: dict[str, Any],
) -> None:
    """Writes the job's description (a checked JOB_SEEN job) with status, and its placement
    (PLACEMENT: its distributed job, rank, device)."""
    cols: dict[str, Any] = {c: job.get(f) for f, c in _COLUMNS.items()}
    cols.update({k: placement.get(k) for k in PLACEMENT})
    cols["launcher"] = _jsonb(cols["launcher"])
    cols["job_name"] = cols["job_name"] or ""
    cols["process_name"] = cols["process_name"] or ""
    cols["command_line"] = cols["command_line"] or ""
    values = {
        **cols,
        "details": json.dumps({k: job[k] for k in DETAILS if k in job}),
        "parameters": _jsonb(job.get("parameters")),
        "code": _jsonb(job.get("code")),
        "start_time": _ms(job["startTime"]),
        "status": status,
        "status_reason": reason,
    }
    names = list(values)
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != "status_reason")
    updates += (
        ", status_reason = CASE WHEN jobs.status = EXCLUDED.status "
        "THEN jobs.status_reason ELSE EXCLUDED.status_reason END"
    )
    await conn.execute(
        f"INSERT INTO jobs (id, machine_id, pid, start_ticks, {', '.join(names)}) "
        f"VALUES (%s, %s, %s, %s, {', '.join(['%s'] * len(names))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now()".encode(),
        [jid, machine_id, job["pid"], job["startTicks"], *values.values()],
    )


async def set_status(
    conn: Conn,
    jid: uuid.UUID,
    status: str,
    reason: str,
    *,
    exit_code: int | None = None,
    signal: int | None = None,
    core_dumped: bool = False,
    end_time_ms: int | None = None,
    ended: bool = False,
) -> uuid.UUID | None:
    """Moves the job to status; ended: also its end (code, signal, time: None when it was
    not seen). The distributed job it is a rank of, if any."""
    if ended:
        cur = await conn.execute(
            "UPDATE jobs SET status = %s, status_reason = %s, exit_code = %s, signal = %s, "
            "core_dumped = %s, end_time = %s, updated_at = now() "
            "WHERE id = %s RETURNING group_id",
            (status, reason, exit_code, signal, core_dumped, _ms(end_time_ms), jid),
        )
    else:
        cur = await conn.execute(
            "UPDATE jobs SET status = %s, status_reason = %s, updated_at = now() "
            "WHERE id = %s RETURNING group_id",
            (status, reason, jid),
        )
    row = await cur.fetchone()
    return None if row is None else row[0]


async def live_not_listed(
    conn: Conn, machine_id: str, listed: Sequence[tuple[int, int]]
) -> list[tuple[uuid.UUID, str]]:
    """(id, status) of the machine's running or unknown jobs not in listed (pid,
    start_ticks), locked."""
    cur = await conn.execute(
        "SELECT id, status FROM jobs j WHERE machine_id = %s AND kind = 'process' "
        "AND status = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM unnest(%s::integer[], %s::bigint[]) AS k(pid, st) "
        "WHERE k.pid = j.pid AND k.st = j.start_ticks) ORDER BY id FOR UPDATE",
        (machine_id, list(LIVE), [p for p, _ in listed], [t for _, t in listed]),
    )
    return [(r[0], str(r[1])) for r in await cur.fetchall()]


async def live_by_pid(conn: Conn, machine_id: str, pids: Sequence[int]) -> dict[int, uuid.UUID]:
    """{pid: id} of the machine's running or unknown process jobs with these pids (a pid
    held by two, one of them not seen ending: the later started)."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (pid) pid, id FROM jobs WHERE machine_id = %s AND kind = 'process' "
        "AND status = ANY(%s) AND pid = ANY(%s) ORDER BY pid, start_time DESC, id",
        (machine_id, list(LIVE), list(pids)),
    )
    return {int(r[0]): r[1] for r in await cur.fetchall()}


async def with_status(conn: Conn, machine_id: str, status: str) -> list[uuid.UUID]:
    """The machine's jobs of this status, locked."""
    cur = await conn.execute(
        "SELECT id FROM jobs WHERE machine_id = %s AND kind = 'process' AND status = %s "
        "ORDER BY id FOR UPDATE",
        (machine_id, status),
    )
    return [r[0] for r in await cur.fetchall()]


async def get_job(conn: Conn, jid: uuid.UUID, *, parts: str = "") -> Row | None:
    """One job with its summary columns, command_line and details; parts: also
    "parameters" or "code"."""
    extra = f", {parts}" if parts in ("parameters", "code") else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLS}{extra} FROM jobs WHERE id = %s".encode(), (jid,))
        return await cur.fetchone()


FIELDS = {
    "status": FieldSpec("status", "str"),
    "kind": FieldSpec("kind", "str"),
    "jobType": FieldSpec("job_type", "str", nullable=True),
    "framework": FieldSpec("framework", "str", nullable=True),
    "machine": FieldSpec("machine_id", "str"),
    "name": FieldSpec("job_name", "str"),
    "user": FieldSpec("unix_user", "str", nullable=True),
    "pid": FieldSpec("pid", "int"),
    "modelFormat": FieldSpec("model_format", "str", nullable=True),
    "startTime": FieldSpec("start_time", "timestamp"),
    "endTime": FieldSpec("end_time", "timestamp", nullable=True),
}
# Each with an index ending in id (migration 0014): a page is an index range scan.
ORDERABLE = {
    "startTime": "start_time",
    "name": "job_name",
    "machine": "machine_id",
    "updateTime": "updated_at",
}
TIEBREAK = ["id"]


async def list_jobs(
    conn: Conn,
    where: str,
    params: Sequence[Any],
    order: OrderBy,
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to limit jobs (their summaries) matching where, in order, strictly after the sort
    key after; each row's sort key is its "_key"."""
    return await fetch_page(conn, SUMMARY_COLS, "jobs", where, params, order, after, limit)
