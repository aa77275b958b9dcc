"""A job's ranks: the processes of a distributed job (migration 0015), or a process job as its
own single rank, with the machine each runs on."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["MAX_RANKS", "ranks"]

Conn = AsyncConnection[Any]
MAX_RANKS = 100_000
_COLS = (
    "j.id AS job_id, j.machine_id, coalesce(nullif(m.hostname, ''), j.machine_id) AS hostname, "
    "j.pid, j.start_ticks, j.rank, j.local_rank, j.device, j.status, j.start_time, j.end_time"
)


async def ranks(conn: Conn, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every rank process of the job, by rank then start (a rank restarted by an elastic
    launcher is there once per process); a process job is its own rank (its RANK, else 0).
    Empty when there is no such job."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM jobs j LEFT JOIN machines m ON m.id = j.machine_id "
            "WHERE j.group_id = %s ORDER BY j.rank NULLS LAST, j.start_time, j.id LIMIT %s",
            (job_id, MAX_RANKS),
        )
        rows = await cur.fetchall()
        if rows:
            return rows
        await cur.execute(
            f"SELECT {_COLS} FROM jobs j LEFT JOIN machines m ON m.id = j.machine_id "
            "WHERE j.id = %s AND j.kind = 'process'",
            (job_id,),
        )
        rows = await cur.fetchall()
    for r in rows:
        r["rank"] = 0 if r["rank"] is None else r["rank"]
    return rows
