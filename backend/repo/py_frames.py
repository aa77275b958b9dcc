"""py_frames: the Python stacks agents send once each (XPU_BATCH_STACKS), read for traces.

Written by backend.db.events_copy with the events; this module holds the reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

__all__ = ["stack_frames"]

Frame = tuple[str, str, int | None]  # function, file, line


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
