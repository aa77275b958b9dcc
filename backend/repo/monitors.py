"""Monitors: their rows. Which status follows which is backend.monitor_lifecycle's to say."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.filters import FieldSpec
from backend.paging import OrderBy
from backend.repo.pages import fetch_page

__all__ = [
    "ACTIVE",
    "FIELDS",
    "FINAL",
    "ORDERABLE",
    "RUNNING",
    "TIEBREAK",
    "RunningLimit",
    "create_monitor",
    "get_monitor",
    "list_monitors",
    "list_to_reconcile",
    "machine_and_status",
    "set_status",
]

Conn = AsyncConnection[Any]
_COLS = (
    "id, machine_id, monitor_type, target, config, display_name, status, error_code, "
    "error_message, create_time, start_time, stop_time, agent_pid, created_by"
)
# The statuses that count against a user's running monitors (a STOPPING one was asked to go).
RUNNING = ("STARTING", "RUNNING")
_QUOTA_LOCK = 0x78707571  # "xpuq": pg_advisory_xact_lock(_QUOTA_LOCK, hashtext(user))


class RunningLimit(Exception):
    """The user already has `running` monitors STARTING or RUNNING, at or over the limit."""

    def __init__(self, running: int) -> None:
        super().__init__(f"{running} monitors running")
        self.running = running


async def create_monitor(
    conn: Conn,
    machine_id: str,
    monitor_type: str,
    target: dict[str, Any],
    config: dict[str, Any],
    display_name: str,
    *,
    created_by: uuid.UUID | None = None,
    max_running: int = 0,
    job_trace_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A new STARTING monitor owned by created_by (a rank's of the job trace job_trace_id).
    With max_running (> 0) and an owner, raises RunningLimit instead when the owner has that
    many STARTING or RUNNING already: counted and inserted under a lock per owner, so
    requests at once cannot pass it together."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if created_by is not None and max_running > 0:
            await cur.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_QUOTA_LOCK, str(created_by))
            )
            await cur.execute(
                "SELECT count(*) AS n FROM monitors WHERE created_by = %s AND status = ANY(%s)",
                (created_by, list(RUNNING)),
            )
            counted = await cur.fetchone()
            running = int(counted["n"]) if counted else 0
            if running >= max_running:
                raise RunningLimit(running)
        await cur.execute(
            f"INSERT INTO monitors (id, machine_id, monitor_type, target, config, display_name,"
            f" created_by, job_trace_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {_COLS}".encode(),
            (
                uuid.uuid4(),
                machine_id,
                monitor_type,
                json.dumps(target),
                json.dumps(config),
                display_name,
                created_by,
                job_trace_id,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        return row


async def get_monitor(conn: Conn, machine_id: str, monitor_id: uuid.UUID) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM monitors WHERE id = %s AND machine_id = %s".encode(),
            (monitor_id, machine_id),
        )
        return await cur.fetchone()


# What `filter` and `order_by` may name on a machine's monitors.
FIELDS = {
    "status": FieldSpec("status", "str"),
    "monitor_type": FieldSpec("monitor_type", "str"),
    "display_name": FieldSpec("display_name", "str"),
    "create_time": FieldSpec("create_time", "timestamp"),
}
ORDERABLE = {
    "create_time": "create_time",
    "status": "status",
    "monitor_type": "monitor_type",
    "display_name": "display_name",
}
TIEBREAK = ["id"]
_OLDEST_FIRST: OrderBy = [("create_time", "ASC"), ("id", "ASC")]


async def list_monitors(
    conn: Conn,
    machine_id: str,
    where: str,
    params: list[Any],
    limit: int,
    after: tuple[Any, ...] | None,
    order: OrderBy = _OLDEST_FIRST,
) -> list[dict[str, Any]]:
    """Up to limit of the machine's monitors matching where, in order (columns of ORDERABLE
    and TIEBREAK), strictly after the sort key after; each row's sort key is its "_key"."""
    return await fetch_page(
        conn,
        _COLS,
        "monitors",
        f"machine_id = %s AND ({where})",
        [machine_id, *params],
        order,
        after,
        limit,
    )


async def list_to_reconcile(
    conn: Conn, machine_id: str, agent_ids: Collection[uuid.UUID]
) -> list[dict[str, Any]]:
    """The machine's monitors not in a final status, and those of agent_ids in any status."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM monitors WHERE machine_id = %s "
            "AND (status <> ALL(%s) OR id = ANY(%s)) ORDER BY create_time, id".encode(),
            (machine_id, list(FINAL), list(agent_ids)),
        )
        return await cur.fetchall()


# Statuses a monitor cannot leave, and those it has before one of them.
FINAL = ("STOPPED", "ERROR", "FAILED_TO_START")
ACTIVE = ("STARTING", "RUNNING", "STOPPING")


async def set_status(
    conn: Conn,
    monitor_id: uuid.UUID,
    status: str,
    *,
    only_from: Collection[str] = ACTIVE,
    error_code: str | None = None,
    error_message: str | None = None,
    agent_pid: int | None = None,
    events_sent: int | None = None,
    events_dropped: int | None = None,
) -> bool:
    """Moves a monitor to status if it is in one of only_from (never out of a final status).
    True when the row changed. events_sent/events_dropped: what its agent said it sent, with
    its final status."""
    stamp = {
        "RUNNING": "start_time = COALESCE(start_time, now()), ",
        "STOPPED": "stop_time = now(), ",
        "ERROR": "stop_time = now(), ",
        "FAILED_TO_START": "stop_time = now(), ",
    }.get(status, "")
    cur = await conn.execute(
        f"UPDATE monitors SET {stamp}status = %s, "
        "error_code = COALESCE(%s, error_code), error_message = COALESCE(%s, error_message), "
        "agent_pid = COALESCE(%s, agent_pid), events_sent = COALESCE(%s, events_sent), "
        "events_dropped = COALESCE(%s, events_dropped) "
        "WHERE id = %s AND status = ANY(%s)".encode(),
        (
            status,
            error_code,
            error_message,
            agent_pid,
            events_sent,
            events_dropped,
            monitor_id,
            [s for s in only_from if s not in FINAL],
        ),
    )
    return cur.rowcount > 0


async def machine_and_status(conn: Conn, monitor_id: uuid.UUID) -> tuple[str, str] | None:
    """(machine id, status) of a monitor, for the ingest's admission of its batches."""
    cur = await conn.execute("SELECT machine_id, status FROM monitors WHERE id = %s", (monitor_id,))
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
