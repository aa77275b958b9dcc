"""Machines, as their managers report them over the control channel."""

from __future__ import annotations

import json
import re
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.filters import FieldSpec
from backend.paging import OrderBy
from backend.repo.pages import fetch_page

__all__ = [
    "ORDERABLE",
    "TIEBREAK",
    "announced_types",
    "fields",
    "get_machine",
    "list_machines",
    "list_running",
    "machine_of_key",
    "mark_silent",
    "record_goodbye",
    "record_heartbeat",
    "record_hello",
]

Conn = AsyncConnection[Any]
_COLS = (
    "id, hostname, os_info, accelerators, agent_manager_status, manager_version, "
    "last_seen, created_at, monitor_types"
)
_KEY = re.compile(r"^[a-z_]{1,32}$")


def announced_types(value: Any) -> dict[str, dict[str, list[str]] | None] | None:
    """HELLO's monitor_types as stored: {type: {"target": [keys], "config": [keys]}}; a list
    (an older manager: types only) maps each type to None; anything else is None."""
    if isinstance(value, list):
        return {str(t)[:32]: None for t in value[:64]}
    if not isinstance(value, dict):
        return None
    out: dict[str, dict[str, list[str]] | None] = {}
    for name, options in list(value.items())[:64]:
        if not isinstance(options, dict):
            out[str(name)[:32]] = None
            continue
        out[str(name)[:32]] = {
            part: sorted(k for k in options.get(part, ()) if isinstance(k, str) and _KEY.match(k))
            if isinstance(options.get(part), list)
            else []
            for part in ("target", "config")
        }
    return out


async def record_hello(conn: Conn, machine_id: str, public_key: str, msg: dict[str, Any]) -> bool:
    """Upserts the machine; False when the id is already bound to another manager key."""
    cur = await conn.execute(
        "INSERT INTO machines (id, hostname, os_info, accelerators, agent_manager_status, "
        "manager_version, last_seen, public_key, monitor_types) "
        "VALUES (%s, %s, %s, %s, 'RUNNING', %s, now(), %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, "
        "os_info = EXCLUDED.os_info, accelerators = EXCLUDED.accelerators, "
        "agent_manager_status = 'RUNNING', manager_version = EXCLUDED.manager_version, "
        "last_seen = now(), monitor_types = EXCLUDED.monitor_types "
        "WHERE machines.public_key IS NULL "
        "OR machines.public_key = EXCLUDED.public_key RETURNING id",
        (
            machine_id,
            str(msg.get("hostname", ""))[:255],
            str(msg.get("os_info", ""))[:1000],
            json.dumps(msg.get("accelerators", [])),
            str(msg.get("version", ""))[:64],
            public_key,
            _jsonb(announced_types(msg.get("monitor_types"))),
        ),
    )
    return await cur.fetchone() is not None


def _jsonb(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def record_heartbeat(conn: Conn, machine_id: str) -> str | None:
    """Marks the machine seen and RUNNING; returns the status it had (None: unknown id)."""
    cur = await conn.execute(
        "UPDATE machines m SET last_seen = now(), agent_manager_status = 'RUNNING' "
        "FROM machines old WHERE m.id = %s AND old.id = m.id "
        "RETURNING old.agent_manager_status",
        (machine_id,),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def mark_silent(conn: Conn, silent_s: float) -> list[str]:
    """RUNNING machines not heard from for silent_s become UNKNOWN; returns their ids."""
    cur = await conn.execute(
        "UPDATE machines SET agent_manager_status = 'UNKNOWN' "
        "WHERE agent_manager_status = 'RUNNING' "
        "AND (last_seen IS NULL OR last_seen < now() - make_interval(secs => %s)) RETURNING id",
        (silent_s,),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def list_running(conn: Conn) -> list[str]:
    """Ids of the machines whose manager is RUNNING."""
    cur = await conn.execute(
        "SELECT id FROM machines WHERE agent_manager_status = 'RUNNING' ORDER BY id"
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def record_goodbye(conn: Conn, machine_id: str) -> None:
    await conn.execute(
        "UPDATE machines SET agent_manager_status = 'STOPPED' WHERE id = %s", (machine_id,)
    )


def _status(timeout_s: float) -> str:
    """ACTIVE: the manager is RUNNING and was heard from within timeout_s; else INACTIVE
    (what backend.handlers.machines.machine_status says of a row)."""
    return (
        "(CASE WHEN agent_manager_status = 'RUNNING' AND last_seen >= now() - "
        f"make_interval(secs => {float(timeout_s)!r}) THEN 'ACTIVE' ELSE 'INACTIVE' END)"
    )


def fields(heartbeat_timeout_s: float) -> dict[str, FieldSpec]:
    """What `filter` may name on machines."""
    return {
        "id": FieldSpec("id", "str"),
        "hostname": FieldSpec("hostname", "str"),
        "agent_manager_status": FieldSpec("agent_manager_status", "str"),
        "status": FieldSpec(_status(heartbeat_timeout_s), "str", ops=frozenset({"=", "!="})),
        "last_seen": FieldSpec("last_seen", "timestamp", nullable=True),
    }


# What `order_by` may name. A machine never heard from sorts as seen at the epoch: keyset
# pages need sort keys that are never NULL.
ORDERABLE = {
    "last_seen": "COALESCE(last_seen, 'epoch'::timestamptz)",
    "hostname": "hostname",
    "id": "id",
}
TIEBREAK = ["id"]


async def list_machines(
    conn: Conn,
    where: str,
    params: list[Any],
    order: OrderBy,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to limit machines matching where, in order, strictly after the sort key after;
    each row's sort key is its "_key"."""
    return await fetch_page(conn, _COLS, "machines", where, params, order, after, limit)


async def get_machine(conn: Conn, machine_id: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLS} FROM machines WHERE id = %s".encode(), (machine_id,))
        return await cur.fetchone()


async def machine_of_key(conn: Conn, public_key: str) -> str | None:
    """The machine bound to this manager key (by its first hello), if any."""
    cur = await conn.execute("SELECT id FROM machines WHERE public_key = %s", (public_key,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])
