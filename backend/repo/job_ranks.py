"""The ranks of a job. Until distributed jobs land, a process job is its single rank: rank
from its RANK environment variable (parameters.envVars), else 0."""

from __future__ import annotations

import json
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["ranks"]


def _rank(parameters: Any) -> int:
    p = json.loads(parameters) if isinstance(parameters, str) else parameters or {}
    env = p.get("envVars") or {} if isinstance(p, dict) else {}
    value = env.get("RANK") if isinstance(env, dict) else None
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


async def ranks(conn: AsyncConnection[Any], job_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's ranks, by rank then start time (a process job: itself, one rank)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT j.id AS job_id, j.machine_id, coalesce(m.hostname, '') AS hostname, "
            "j.pid, j.start_ticks, j.parameters, j.status, j.start_time, j.end_time "
            "FROM jobs j LEFT JOIN machines m ON m.id = j.machine_id WHERE j.id = %s",
            (job_id,),
        )
        rows = await cur.fetchall()
    out = []
    for r in rows:
        parameters = r.pop("parameters")
        out.append({**r, "rank": _rank(parameters), "local_rank": None, "device": None})
    return sorted(out, key=lambda r: (r["rank"], r["start_time"]))
