"""event_batches: one row per agent batch stored, the key of the writer's idempotence.

A batch is registered under (monitor_id, agent_pid, seq) in the transaction that stores its
rows (backend.event_writer); one already there is not registered again. Its id numbers its
events (backend.event_rows.ID_SHIFT)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from xpucore import abi

__all__ = ["register"]


async def register(
    conn: AsyncConnection[Any],
    items: Sequence[tuple[abi.Batch, uuid.UUID]],
) -> list[tuple[int, uuid.UUID, int, int]]:
    """Registers the (batch, its monitor id) not yet stored; (id, monitor_id, agent_pid, seq)
    of each registered now. Rows are inserted in the order given: writers that give them in
    key order wait on each other's unique-index entries in one order, never in a cycle."""
    cur = await conn.execute(
        "INSERT INTO event_batches (monitor_id, agent_pid, seq, machine_id, event_count,"
        " kernel_drops, inflight_drops, send_drops, mono_to_real_ns, final)"
        " SELECT * FROM unnest(%s::uuid[], %s::int4[], %s::int8[], %s::text[],"
        " %s::int4[], %s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::bool[])"
        " ON CONFLICT (monitor_id, agent_pid, seq) DO NOTHING"
        " RETURNING id, monitor_id, agent_pid, seq",
        (
            [mid for _, mid in items],
            [b.agent_pid for b, _ in items],
            [b.seq for b, _ in items],
            [b.machine_id for b, _ in items],
            [b.event_count for b, _ in items],
            [b.kernel_drops for b, _ in items],
            [b.inflight_drops for b, _ in items],
            [b.send_drops for b, _ in items],
            [b.mono_to_real_ns for b, _ in items],
            [b.final for b, _ in items],
        ),
    )
    return [(bid, mid, pid, seq) for bid, mid, pid, seq in await cur.fetchall()]
