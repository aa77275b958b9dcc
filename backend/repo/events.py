"""Reading events back: filter, keyset page, projection. (Writing is backend.db.events_copy.)"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection

from backend.filters import FieldSpec, as_epoch_ns
from backend.paging import OrderBy, keyset_predicate

__all__ = ["EVENT_FIELDS", "ORDERABLE", "TIEBREAK", "query_events"]

# What `filter` may name, and the columns behind the names (seeds/003 section 4).
EVENT_FIELDS: dict[str, FieldSpec] = {
    "timestamp": FieldSpec("ts", "timestamp", convert=as_epoch_ns),
    "machine_id": FieldSpec("machine_id", "str"),
    "monitor_id": FieldSpec("monitor_id", "str", ops=frozenset({"=", "!="}), convert=uuid.UUID),
    "pid": FieldSpec("pid", "int"),
    "tid": FieldSpec("tid", "int"),
    "cpu": FieldSpec("cpu", "int"),
    "comm": FieldSpec("comm", "str"),
    "event_type": FieldSpec("event_type", "str"),
    "duration_ns": FieldSpec("duration_ns", "int"),
    "duration": FieldSpec("duration_ns", "duration"),
    "ret": FieldSpec("ret", "int"),
    "flags": FieldSpec("flags", "int"),
    "event_data.*": FieldSpec("event_data::jsonb", "json"),
}
ORDERABLE = {"timestamp": "ts", "pid": "pid", "tid": "tid", "duration_ns": "duration_ns",
             "event_type": "event_type", "comm": "comm"}
TIEBREAK = ["ts", "id"]

_COLUMNS = ("ts, id, machine_id, monitor_id, pid, tid, cpu, comm, event_type, duration_ns, "
            "ret, flags, event_data")
_NAMES = [c.strip() for c in _COLUMNS.split(",")]


async def query_events(conn: AsyncConnection[Any], where: str, params: list[Any],
                       order: OrderBy, after: tuple[Any, ...] | None,
                       limit: int) -> list[dict[str, Any]]:
    """Up to limit rows matching where, in order, strictly after the row keyed by after."""
    clauses, args = [f"({where})"], list(params)
    if after is not None:
        pred, pred_args = keyset_predicate(order, after)
        clauses.append(pred)
        args += pred_args
    order_sql = ", ".join(f"{col} {direction}" for col, direction in order)
    sql = (f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
           f"ORDER BY {order_sql} LIMIT %s")
    cur = await conn.execute(sql.encode(), [*args, limit])
    return [dict(zip(_NAMES, row, strict=True)) for row in await cur.fetchall()]
