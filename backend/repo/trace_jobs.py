"""Trace jobs and their lifecycle: PROCESSING -> COMPLETED | FAILED (table trace_jobs).

A PROCESSING job is queued (running false) until a worker claims it (claim_next: running,
attempts + 1, progress reset); the run ends with complete, fail or, when the backend stops it
cleanly, give_back (queued again, attempts - 1: the run did not count). Progress is written
from the job's worker thread, on a synchronous connection (set_total, set_progress);
everything else is asyncio.

The queue is fair between users: claim_next takes the oldest queued job of the user with the
fewest jobs running, and among those, of the user whose jobs last started longest ago (never:
first). One user's twenty jobs then take turns with another user's one, instead of all going
first.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = [
    "JobLimit",
    "claim_next",
    "complete",
    "create_job",
    "fail",
    "fail_exhausted",
    "get_job",
    "get_job_by_trace",
    "give_back",
    "requeue_all",
    "set_progress",
    "set_total",
    "status_of",
]

Conn = AsyncConnection[Any]
_COLS = (
    "id, user_id, trace_id, trace_name, filter, format, gzip, status, progress, "
    "events_total, events_done, error_message, file_size, stats, attempts, create_time, "
    "start_time, end_time, running, layout"
)
_QUOTA_LOCK = 0x78707574  # "xput": pg_advisory_xact_lock(_QUOTA_LOCK, hashtext(user))


class JobLimit(Exception):
    """The user already has `jobs` trace jobs queued or running, at or over the limit."""

    def __init__(self, jobs: int) -> None:
        super().__init__(f"{jobs} trace jobs")
        self.jobs = jobs


async def _one(conn: Conn, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        return await cur.fetchone()


async def create_job(
    conn: Conn,
    user_id: uuid.UUID,
    trace_name: str,
    filter_text: str,
    fmt: str,
    gzip: bool,
    *,
    max_jobs: int = 0,
    layout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new queued job (layout: how processes are named and clocks shifted, as
    backend.trace_build.TraceSpec.layout() writes it). With max_jobs (> 0), raises JobLimit
    instead when the user has that many PROCESSING already: counted and inserted under a lock
    per user."""
    async with conn.transaction():
        if max_jobs > 0:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_QUOTA_LOCK, str(user_id))
            )
            cur = await conn.execute(
                "SELECT count(*) FROM trace_jobs WHERE user_id = %s AND status = 'PROCESSING'",
                (user_id,),
            )
            counted = await cur.fetchone()
            jobs = int(counted[0]) if counted else 0
            if jobs >= max_jobs:
                raise JobLimit(jobs)
        row = await _one(
            conn,
            f"INSERT INTO trace_jobs (id, user_id, trace_id, trace_name, filter, format, gzip, "
            f"layout) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLS}",
            (
                uuid.uuid4(),
                user_id,
                uuid.uuid4(),
                trace_name,
                filter_text,
                fmt,
                gzip,
                None if layout is None else json.dumps(layout),
            ),
        )
    assert row is not None
    return row


async def get_job(conn: Conn, job_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any] | None:
    return await _one(
        conn, f"SELECT {_COLS} FROM trace_jobs WHERE id = %s AND user_id = %s", (job_id, user_id)
    )


async def status_of(conn: Conn, job_id: uuid.UUID) -> tuple[str, str | None] | None:
    """(status, error message) of a job, whoever's it is; None when there is none."""
    cur = await conn.execute(
        "SELECT status, error_message FROM trace_jobs WHERE id = %s", (job_id,)
    )
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), row[1])


async def get_job_by_trace(
    conn: Conn, trace_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, Any] | None:
    return await _one(
        conn,
        f"SELECT {_COLS} FROM trace_jobs WHERE trace_id = %s AND user_id = %s",
        (trace_id, user_id),
    )


_QUALIFIED = ", ".join(f"trace_jobs.{c}" for c in _COLS.split(", "))
# Each user with queued jobs offers its oldest; the one taken is of the user with the fewest
# jobs running, then whose jobs last started longest ago (never: first), then the oldest.
# Only the offered rows are locked, skipping those another worker is claiming.
_CLAIM = f"""
WITH heads AS (
    SELECT DISTINCT ON (user_id) id, user_id, create_time FROM trace_jobs
    WHERE status = 'PROCESSING' AND NOT running ORDER BY user_id, create_time, id
), offered AS (
    SELECT h.id, h.create_time,
           (SELECT count(*) FROM trace_jobs r WHERE r.user_id = h.user_id
                AND r.status = 'PROCESSING' AND r.running) AS running_now,
           (SELECT max(s.start_time) FROM trace_jobs s WHERE s.user_id = h.user_id)
                AS last_start
    FROM heads h
), taken AS (
    SELECT j.id FROM trace_jobs j JOIN offered o ON o.id = j.id
    WHERE j.status = 'PROCESSING' AND NOT j.running
    ORDER BY o.running_now, o.last_start NULLS FIRST, o.create_time, j.id
    LIMIT 1 FOR UPDATE OF j SKIP LOCKED
)
UPDATE trace_jobs SET running = true, attempts = attempts + 1, start_time = clock_timestamp(),
    progress = 0, events_done = 0, events_total = NULL
FROM taken WHERE trace_jobs.id = taken.id
RETURNING {_QUALIFIED}
"""


async def claim_next(conn: Conn) -> dict[str, Any] | None:
    """Takes the next queued job, fairly between users (see the module doc), and counts a new
    run of it; None when nothing is queued."""
    return await _one(conn, _CLAIM, ())


async def requeue_all(conn: Conn) -> int:
    """Queues again every job marked running: at start, the runs of a backend that stopped
    without ending them (one backend runs trace jobs). How many."""
    cur = await conn.execute(
        "UPDATE trace_jobs SET running = false WHERE status = 'PROCESSING' AND running"
    )
    return cur.rowcount


async def give_back(conn: Conn, job_id: uuid.UUID) -> None:
    """The run was stopped by a clean shutdown: queued again, and it does not count."""
    await conn.execute(
        "UPDATE trace_jobs SET attempts = greatest(attempts - 1, 0), running = false "
        "WHERE id = %s AND status = 'PROCESSING'",
        (job_id,),
    )


async def complete(
    conn: Conn,
    job_id: uuid.UUID,
    events: int,
    events_total: int,
    file_size: int,
    stats: dict[str, int],
) -> None:
    await conn.execute(
        "UPDATE trace_jobs SET status = 'COMPLETED', running = false, progress = 1, "
        "events_done = %s, events_total = %s, file_size = %s, stats = %s, end_time = now() "
        "WHERE id = %s AND status = 'PROCESSING'",
        (events, events_total, file_size, json.dumps(stats), job_id),
    )


async def fail(conn: Conn, job_id: uuid.UUID, message: str) -> None:
    await conn.execute(
        "UPDATE trace_jobs SET status = 'FAILED', running = false, error_message = %s, "
        "end_time = now() WHERE id = %s AND status = 'PROCESSING'",
        (message[:2000], job_id),
    )


async def fail_exhausted(conn: Conn, max_attempts: int, message: str) -> list[uuid.UUID]:
    """Fails the PROCESSING jobs that already had max_attempts runs; their ids."""
    cur = await conn.execute(
        "UPDATE trace_jobs SET status = 'FAILED', running = false, error_message = %s, "
        "end_time = now() WHERE status = 'PROCESSING' AND attempts >= %s RETURNING id",
        (message, max_attempts),
    )
    return [r[0] for r in await cur.fetchall()]


def set_total(conn: psycopg.Connection[Any], job_id: uuid.UUID, total: int) -> None:
    conn.execute(
        "UPDATE trace_jobs SET events_total = %s WHERE id = %s AND status = 'PROCESSING'",
        (total, job_id),
    )


def set_progress(
    conn: psycopg.Connection[Any], job_id: uuid.UUID, done: int, progress: float
) -> None:
    conn.execute(
        "UPDATE trace_jobs SET events_done = %s, progress = %s WHERE id = %s AND "
        "status = 'PROCESSING'",
        (done, min(max(progress, 0.0), 1.0), job_id),
    )
