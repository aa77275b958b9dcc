"""Distributed jobs (migration 0015): the jobs row a launcher identity's ranks share, found or
made when a rank is seen, and kept in step with its ranks (backend.job_groups says how).

Lock order, so that reports from many machines never deadlock: a launcher identity's advisory
lock (only to find or make its job), then process rows, then distributed rows in id order.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from psycopg import AsyncConnection

from backend.job_groups import LIVE, REJOIN_S, GroupState, Launcher, Member, group_state

__all__ = ["join", "refresh"]

Conn = AsyncConnection[Any]
_NAMESPACE = uuid.UUID("0b7c6a51-64f8-4b1e-9a37-2f3d81a0c6e2")
# What a distributed job shows of its rank 0 (else its first rank).
_COPIED = (
    "job_name, job_type, framework, framework_version, model_format, process_name, "
    "command_line, cwd, unix_user, details, parameters, code"
)


async def join(conn: Conn, launcher: Launcher, machine_id: str, start: Any) -> uuid.UUID:
    """The distributed job a rank of launcher belongs to, made when there is none to join:
    the latest of its identity, when that names one launch, or it has a live rank, or the
    backend learnt of its end less than REJOIN_S ago (the machines' clocks do not decide)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 14))", (launcher.key,))
    cur = await conn.execute(
        "SELECT id, (%s OR status = ANY(%s) OR updated_at > now() - make_interval(secs => %s)), "
        "count(*) OVER () FROM jobs WHERE kind = 'distributed' AND group_key = %s "
        "ORDER BY created_at DESC, id LIMIT 1",
        (launcher.once, list(LIVE), REJOIN_S, launcher.key),
    )
    row = await cur.fetchone()
    if row is not None and row[1]:
        return row[0]  # type: ignore[no-any-return]
    generation = 0 if row is None else int(row[2])
    gid = uuid.uuid5(_NAMESPACE, f"{launcher.key}#{generation}")
    await conn.execute(
        "INSERT INTO jobs (id, kind, machine_id, group_key, launcher, world_size, start_time, "
        "status, status_reason, ranks_seen, node_ids) "
        "VALUES (%s, 'distributed', %s, %s, %s, %s, %s, 'running', 'its first rank appeared', "
        "0, ARRAY[%s]) ON CONFLICT (id) DO NOTHING",
        (
            gid,
            machine_id,
            launcher.key,
            json.dumps({"kind": launcher.kind, "id": launcher.id}),
            launcher.world_size,
            start,
            machine_id,
        ),
    )
    return gid


async def refresh(conn: Conn, gid: uuid.UUID) -> tuple[str | None, GroupState] | None:
    """Brings the distributed job in step with its ranks (row locked): status, ranks seen,
    machines, world size, times, and the description of its rank 0. (old status, new state),
    or None when it has no ranks."""
    cur = await conn.execute("SELECT status FROM jobs WHERE id = %s FOR UPDATE", (gid,))
    locked = await cur.fetchone()
    if locked is None:
        return None
    cur = await conn.execute(
        "SELECT j.id, j.rank, coalesce(nullif(m.hostname, ''), j.machine_id), j.status, "
        "j.exit_code, j.signal, j.machine_id, j.world_size "
        "FROM jobs j LEFT JOIN machines m ON m.id = j.machine_id WHERE j.group_id = %s "
        "ORDER BY j.rank NULLS LAST, j.start_time, j.id",
        (gid,),
    )
    rows = await cur.fetchall()
    if not rows:
        return None
    state = group_state([Member(r[1], r[2], r[3], r[4], r[5]) for r in rows])
    head = next((r for r in rows if r[1] == 0), rows[0])
    worlds = [r[7] for r in rows if r[7] is not None]
    await conn.execute(
        f"UPDATE jobs g SET ({_COPIED}) = (SELECT {_COPIED} FROM jobs WHERE id = %s), "
        "machine_id = %s, status = %s, status_reason = %s, exit_code = %s, signal = %s, "
        "ranks_seen = %s, node_ids = %s, world_size = coalesce(%s, g.world_size), "
        "start_time = (SELECT min(start_time) FROM jobs WHERE group_id = g.id), "
        "end_time = CASE WHEN %s THEN (SELECT max(end_time) FROM jobs WHERE group_id = g.id) "
        "END, updated_at = now() WHERE id = %s".encode(),
        (
            head[0],
            head[6],
            state.status,
            state.reason,
            state.exit_code,
            state.signal,
            len({r[1] for r in rows if r[1] is not None}),
            sorted({r[6] for r in rows}),
            max(worlds) if worlds else None,
            state.ended,
            gid,
        ),
    )
    return str(locked[0]), state
