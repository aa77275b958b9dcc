"""py_frames: the Python stacks agents send once each (XPU_BATCH_STACKS), read for traces.

Written with the events (backend.event_writer), read by trace builds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection

__all__ = ["FrameRow", "insert", "stack_frames"]

Frame = tuple[str, str, int | None]  # function, file, line
#: monitor_id, stack_id, depth, pid, function, file, line (None: unknown), flags
FrameRow = tuple[uuid.UUID, int, int, int, str, str, int | None, int]


async def insert(conn: AsyncConnection[Any], rows: Sequence[FrameRow]) -> None:
    """Stores frames; one already stored (same monitor, stack and depth) stays as it is."""
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO py_frames (monitor_id, stack_id, depth, pid, function, file, line,"
                " flags) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )


def stack_frames(conn: psycopg.Connection[Any], ids: Sequence[int]) -> dict[int, list[Frame]]:
    """The frames of these stack ids, outermost first.

    A stack is (monitor, stack id): two monitors on one process (a CUDA monitor with Python
    stacks and a PYTHON monitor) store the same stack once each. Each id's frames are taken
    from one monitor (the first by id), never from both, so no frame is drawn twice."""
    cur = conn.execute(
        "SELECT f.stack_id, f.function, f.file, f.line FROM ("
        " SELECT DISTINCT ON (stack_id) stack_id, monitor_id FROM py_frames"
        " WHERE stack_id = ANY(%s::numeric[]) ORDER BY stack_id, monitor_id) one"
        " JOIN py_frames f USING (stack_id, monitor_id) ORDER BY f.stack_id, f.depth DESC",
        [list(ids)])  # fmt: skip
    out: dict[int, list[Frame]] = {}
    for sid, function, file, line in cur.fetchall():
        out.setdefault(int(sid), []).append((function, file, line))
    return out
