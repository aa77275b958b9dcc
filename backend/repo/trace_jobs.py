"""Trace jobs and their lifecycle: PROCESSING -> COMPLETED | FAILED (table trace_jobs).

A run starts with start_run (attempts + 1, progress reset) and ends with complete, fail or,
when the backend stops it cleanly, give_back (attempts - 1: the run did not count). Progress
is written from the job's worker thread, on a synchronous connection (set_total,
set_progress); everything else is asyncio.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["complete", "create_job", "fail", "fail_exhausted", "get_job", "get_job_by_trace",
           "give_back", "processing_ids", "set_progress", "set_total", "start_run"]

Conn = AsyncConnection[Any]
_COLS = ("id, user_id, trace_id, trace_name, filter, format, gzip, status, progress, "
         "events_total, events_done, error_message, file_size, stats, attempts, create_time, "
         "start_time, end_time")


async def _one(conn: Conn, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        return await cur.fetchone()


async def create_job(conn: Conn, user_id: uuid.UUID, trace_name: str, filter_text: str,
                     fmt: str, gzip: bool) -> dict[str, Any]:
    row = await _one(
        conn,
        f"INSERT INTO trace_jobs (id, user_id, trace_id, trace_name, filter, format, gzip) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLS}",
        (uuid.uuid4(), user_id, uuid.uuid4(), trace_name, filter_text, fmt, gzip),
    )
    assert row is not None
    return row


async def get_job(conn: Conn, job_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any] | None:
    return await _one(conn, f"SELECT {_COLS} FROM trace_jobs WHERE id = %s AND user_id = %s",
                      (job_id, user_id))


async def get_job_by_trace(conn: Conn, trace_id: uuid.UUID,
                           user_id: uuid.UUID) -> dict[str, Any] | None:
    return await _one(conn,
                      f"SELECT {_COLS} FROM trace_jobs WHERE trace_id = %s AND user_id = %s",
                      (trace_id, user_id))


async def start_run(conn: Conn, job_id: uuid.UUID) -> dict[str, Any] | None:
    """Counts a new run of a PROCESSING job and resets its progress; None when it is not
    PROCESSING (any more)."""
    return await _one(
        conn,
        f"UPDATE trace_jobs SET attempts = attempts + 1, start_time = now(), progress = 0, "
        f"events_done = 0, events_total = NULL WHERE id = %s AND status = 'PROCESSING' "
        f"RETURNING {_COLS}",
        (job_id,),
    )


async def give_back(conn: Conn, job_id: uuid.UUID) -> None:
    """The run was stopped by a clean shutdown: it does not count against the job."""
    await conn.execute(
        "UPDATE trace_jobs SET attempts = greatest(attempts - 1, 0) "
        "WHERE id = %s AND status = 'PROCESSING'", (job_id,))


async def complete(conn: Conn, job_id: uuid.UUID, events: int, events_total: int,
                   file_size: int, stats: dict[str, int]) -> None:
    await conn.execute(
        "UPDATE trace_jobs SET status = 'COMPLETED', progress = 1, events_done = %s, "
        "events_total = %s, file_size = %s, stats = %s, end_time = now() "
        "WHERE id = %s AND status = 'PROCESSING'",
        (events, events_total, file_size, json.dumps(stats), job_id))


async def fail(conn: Conn, job_id: uuid.UUID, message: str) -> None:
    await conn.execute(
        "UPDATE trace_jobs SET status = 'FAILED', error_message = %s, end_time = now() "
        "WHERE id = %s AND status = 'PROCESSING'", (message[:2000], job_id))


async def fail_exhausted(conn: Conn, max_attempts: int, message: str) -> list[uuid.UUID]:
    """Fails the PROCESSING jobs that already had max_attempts runs; their ids."""
    cur = await conn.execute(
        "UPDATE trace_jobs SET status = 'FAILED', error_message = %s, end_time = now() "
        "WHERE status = 'PROCESSING' AND attempts >= %s RETURNING id", (message, max_attempts))
    return [r[0] for r in await cur.fetchall()]


async def processing_ids(conn: Conn) -> list[uuid.UUID]:
    """Jobs still PROCESSING, oldest first."""
    cur = await conn.execute(
        "SELECT id FROM trace_jobs WHERE status = 'PROCESSING' ORDER BY create_time, id")
    return [r[0] for r in await cur.fetchall()]


def set_total(conn: psycopg.Connection[Any], job_id: uuid.UUID, total: int) -> None:
    conn.execute("UPDATE trace_jobs SET events_total = %s WHERE id = %s AND status = "
                 "'PROCESSING'", (total, job_id))


def set_progress(conn: psycopg.Connection[Any], job_id: uuid.UUID, done: int,
                 progress: float) -> None:
    conn.execute("UPDATE trace_jobs SET events_done = %s, progress = %s WHERE id = %s AND "
                 "status = 'PROCESSING'", (done, min(max(progress, 0.0), 1.0), job_id))
