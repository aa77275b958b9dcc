"""Process metrics samples of AI jobs in PostgreSQL, when no InfluxDB is configured
(migration 0018; what they mean and how they are read: backend.process_metrics)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from backend.process_metrics import AGGREGATES, Range, point
from xpucore.job_wire import SUSPENDED_STATES, MetricSample

__all__ = ["add", "cpu_per_job", "prune", "series"]

Conn = AsyncConnection[Any]
_SQL_AGG = {"mean": "avg", "max": "max", "count": "count"}


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def add(conn: Conn, samples: Sequence[tuple[uuid.UUID, MetricSample]]) -> None:
    """Stores (job id, sample) pairs; a sample stored already is left as it is."""
    if not samples:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO job_metrics (job_id, time, state, cpu_percent, rss_bytes, threads, "
            "read_bytes, write_bytes, open_files, accel_memory_bytes) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (
                    jid,
                    _time(s.time_ms),
                    s.state,
                    s.cpu_percent,
                    s.rss_bytes,
                    s.threads,
                    s.read_bytes,
                    s.write_bytes,
                    s.open_files,
                    s.accel_memory_bytes,
                )
                for jid, s in samples
            ],
        )


def _column(field: str) -> str:
    if field == "suspended":
        return f"(state IN ({', '.join(repr(s) for s in sorted(SUSPENDED_STATES))}))::int"
    return field


async def series(conn: Conn, job_id: uuid.UUID, r: Range) -> list[dict[str, Any]]:
    """The job's intervals in r, each field aggregated as backend.process_metrics says."""
    names = list(AGGREGATES)
    select = ", ".join(
        f"{_SQL_AGG[agg]}({_column(field)})" for field, agg in (AGGREGATES[n] for n in names)
    )
    cur = await conn.execute(
        "SELECT (extract(epoch FROM time) * 1000)::bigint / %s AS iv, "
        f"{select} FROM job_metrics WHERE job_id = %s AND time >= %s AND time < %s "
        "GROUP BY iv ORDER BY iv".encode(),
        (r.step_ms, job_id, _time(r.start_ms), _time(r.end_ms)),
    )
    return [
        point(row[0] * r.step_ms, dict(zip(names, row[1:], strict=True)))
        for row in await cur.fetchall()
    ]


async def cpu_per_job(
    conn: Conn,
    start: datetime,
    end: datetime,
    machine_id: str | None,
    pid: int | None,
    job_ids: list[uuid.UUID] | None,
) -> list[tuple[str, float, float]]:
    """Each job's mean and latest cpu_percent in [start, end) (backend.cpu_summary);
    job_ids None: any job."""
    if job_ids is not None and not job_ids:
        return []
    where = ["m.time >= %s", "m.time < %s", "m.cpu_percent IS NOT NULL"]
    args: list[Any] = [start, end]
    for cond, value in (("j.machine_id = %s", machine_id), ("j.pid = %s", pid)):
        if value is not None:
            where.append(cond)
            args.append(value)
    if job_ids is not None:
        where.append("m.job_id = ANY(%s)")
        args.append(job_ids)
    cur = await conn.execute(
        "WITH m AS (SELECT m.job_id, m.time, m.cpu_percent FROM job_metrics m "
        f"JOIN jobs j ON j.id = m.job_id WHERE {' AND '.join(where)}) "
        "SELECT a.job_id, a.mean, l.cpu_percent FROM "
        "(SELECT job_id, avg(cpu_percent) AS mean FROM m GROUP BY job_id) a JOIN "
        "(SELECT DISTINCT ON (job_id) job_id, cpu_percent FROM m ORDER BY job_id, time DESC) l "
        "ON l.job_id = a.job_id".encode(),
        args,
    )
    return [(str(r[0]), float(r[1]), float(r[2])) for r in await cur.fetchall()]


async def prune(conn: Conn, before: datetime) -> int:
    """Deletes the samples older than before; how many."""
    cur = await conn.execute("DELETE FROM job_metrics WHERE time < %s", (before,))
    return cur.rowcount
