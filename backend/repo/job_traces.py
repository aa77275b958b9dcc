"""Traces of a job and the ranks each met (migration 0017). Which state follows which is
backend.job_traces's to say."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.filters import FieldSpec
from backend.paging import OrderBy
from backend.repo.pages import fetch_page

__all__ = [
    "FIELDS",
    "FINAL",
    "ORDERABLE",
    "TIEBREAK",
    "add_rank",
    "create",
    "get",
    "list_page",
    "move",
    "of_monitor",
    "of_trace_job",
    "ranks_of",
    "running",
    "set_rank_outcome",
    "unsettled",
]

Conn = AsyncConnection[Any]
Row = dict[str, Any]
FINAL = ("DONE", "FAILED")
_COLS = (
    'id, job_id, monitor_type, config, "window", name, state, state_reason, created_by, '
    "clocks, trace_job_id, create_time, stop_time, end_time, events, complete"
)


async def _one(conn: Conn, sql: str, params: Sequence[Any]) -> Row | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        return await cur.fetchone()


async def create(
    conn: Conn,
    job_id: uuid.UUID,
    monitor_type: str,
    config: dict[str, Any],
    window: dict[str, Any] | None,
    name: str,
    created_by: uuid.UUID | None,
) -> Row:
    """A new RUNNING job trace of the job."""
    row = await _one(
        conn,
        f'INSERT INTO job_traces (id, job_id, monitor_type, config, "window", name, created_by) '
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLS}",
        (
            uuid.uuid4(),
            job_id,
            monitor_type,
            json.dumps(config),
            None if window is None else json.dumps(window),
            name,
            created_by,
        ),
    )
    assert row is not None
    return row


async def get(conn: Conn, jt_id: uuid.UUID, job_id: uuid.UUID | None = None) -> Row | None:
    """The job trace (of that job, when given)."""
    if job_id is None:
        return await _one(conn, f"SELECT {_COLS} FROM job_traces WHERE id = %s", (jt_id,))
    return await _one(
        conn, f"SELECT {_COLS} FROM job_traces WHERE id = %s AND job_id = %s", (jt_id, job_id)
    )


async def move(
    conn: Conn,
    jt_id: uuid.UUID,
    state: str,
    reason: str,
    only_from: Sequence[str],
    *,
    clocks: dict[str, Any] | None = None,
    trace_job_id: uuid.UUID | None = None,
    events: dict[str, Any] | None = None,
    complete: bool | None = None,
) -> bool:
    """Moves the job trace to state if it is in one of only_from; whether it moved. Leaving
    RUNNING sets stop_time; DONE and FAILED set end_time. events, complete: what its monitors
    stored against what their agents sent (migration 0020)."""
    cur = await conn.execute(
        "UPDATE job_traces SET state = %s, state_reason = %s, "
        "stop_time = CASE WHEN state = 'RUNNING' THEN now() ELSE stop_time END, "
        "end_time = CASE WHEN %s THEN now() ELSE end_time END, "
        "clocks = coalesce(%s, clocks), trace_job_id = coalesce(%s, trace_job_id), "
        "events = coalesce(%s, events), complete = coalesce(%s, complete) "
        "WHERE id = %s AND state = ANY(%s)",
        (
            state,
            reason[:2000],
            state in FINAL,
            None if clocks is None else json.dumps(clocks),
            trace_job_id,
            None if events is None else json.dumps(events),
            complete,
            jt_id,
            list(only_from),
        ),
    )
    return cur.rowcount == 1


async def add_rank(conn: Conn, jt_id: uuid.UUID, rank: Row, *, late: bool = False) -> bool:
    """Records a rank (a backend.repo.job_ranks row) met by the job trace; False when it
    was already (its monitor is someone else's to start)."""
    cur = await conn.execute(
        "INSERT INTO job_trace_ranks (job_trace_id, process_id, rank, machine_id, hostname, "
        "pid, late) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            jt_id,
            rank["job_id"],
            rank["rank"],
            rank["machine_id"],
            rank["hostname"] or "",
            rank["pid"],
            late,
        ),
    )
    return cur.rowcount == 1


async def set_rank_outcome(
    conn: Conn,
    jt_id: uuid.UUID,
    process_id: uuid.UUID,
    monitor_id: uuid.UUID | None,
    error: str | None,
) -> None:
    await conn.execute(
        "UPDATE job_trace_ranks SET monitor_id = %s, error = %s "
        "WHERE job_trace_id = %s AND process_id = %s",
        (monitor_id, None if error is None else error[:2000], jt_id, process_id),
    )


async def ranks_of(conn: Conn, jt_id: uuid.UUID) -> list[Row]:
    """The ranks the job trace met, by rank then when, each with its monitor's status."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT r.process_id, r.rank, r.machine_id, r.hostname, r.pid, r.monitor_id, "
            "r.error, r.late, r.create_time, m.status AS monitor_status, m.error_code, "
            "m.error_message FROM job_trace_ranks r LEFT JOIN monitors m ON m.id = r.monitor_id "
            "WHERE r.job_trace_id = %s ORDER BY r.rank, r.create_time, r.process_id",
            (jt_id,),
        )
        return await cur.fetchall()


async def running(conn: Conn) -> list[Row]:
    """Every RUNNING job trace: (id, job_id)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT id, job_id FROM job_traces WHERE state = 'RUNNING'")
        return await cur.fetchall()


async def unsettled(conn: Conn) -> list[Row]:
    """Every job trace STOPPING or GENERATING: (id, state, trace_job_id)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, state, trace_job_id FROM job_traces "
            "WHERE state IN ('STOPPING', 'GENERATING')"
        )
        return await cur.fetchall()


async def of_monitor(conn: Conn, monitor_id: uuid.UUID) -> uuid.UUID | None:
    cur = await conn.execute("SELECT job_trace_id FROM monitors WHERE id = %s", (monitor_id,))
    row = await cur.fetchone()
    return None if row is None else row[0]


async def of_trace_job(conn: Conn, trace_job_id: uuid.UUID) -> uuid.UUID | None:
    cur = await conn.execute("SELECT id FROM job_traces WHERE trace_job_id = %s", (trace_job_id,))
    row = await cur.fetchone()
    return None if row is None else row[0]


FIELDS = {
    "state": FieldSpec("state", "str"),
    "monitorType": FieldSpec("monitor_type", "str"),
    "name": FieldSpec("name", "str"),
    "createTime": FieldSpec("create_time", "timestamp"),
}
ORDERABLE = {"createTime": "create_time"}
TIEBREAK = ["id"]


async def list_page(
    conn: Conn,
    job_id: uuid.UUID,
    where: str,
    params: Sequence[Any],
    order: OrderBy,
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to limit of the job's traces matching where, in order, after the key after."""
    return await fetch_page(
        conn, _COLS, "job_traces", f"job_id = %s AND ({where})", [job_id, *params], order,
        after, limit,
    )  # fmt: skip
