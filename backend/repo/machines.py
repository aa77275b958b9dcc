"""Machines, as their managers report them over the control channel."""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["get_machine", "list_machines", "list_running", "mark_silent", "record_goodbye",
           "record_heartbeat", "record_hello"]

Conn = AsyncConnection[Any]
_COLS = ("id, hostname, os_info, accelerators, agent_manager_status, manager_version, "
         "last_seen, created_at")


async def record_hello(conn: Conn, machine_id: str, public_key: str, msg: dict[str, Any]) -> bool:
    """Upserts the machine; False when the id is already bound to another manager key."""
    cur = await conn.execute(
        "INSERT INTO machines (id, hostname, os_info, accelerators, agent_manager_status, "
        "manager_version, last_seen, public_key) VALUES (%s, %s, %s, %s, 'RUNNING', %s, now(), %s) "
        "ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, "
        "os_info = EXCLUDED.os_info, accelerators = EXCLUDED.accelerators, "
        "agent_manager_status = 'RUNNING', manager_version = EXCLUDED.manager_version, "
        "last_seen = now() WHERE machines.public_key IS NULL "
        "OR machines.public_key = EXCLUDED.public_key RETURNING id",
        (machine_id, str(msg.get("hostname", ""))[:255], str(msg.get("os_info", ""))[:1000],
         json.dumps(msg.get("accelerators", [])), str(msg.get("version", ""))[:64],
         public_key),
    )
    return await cur.fetchone() is not None


async def record_heartbeat(conn: Conn, machine_id: str) -> str | None:
    """Marks the machine seen and RUNNING; returns the status it had (None: unknown id)."""
    cur = await conn.execute(
        "UPDATE machines m SET last_seen = now(), agent_manager_status = 'RUNNING' "
        "FROM machines old WHERE m.id = %s AND old.id = m.id "
        "RETURNING old.agent_manager_status", (machine_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def mark_silent(conn: Conn, silent_s: float) -> list[str]:
    """RUNNING machines not heard from for silent_s become UNKNOWN; returns their ids."""
    cur = await conn.execute(
        "UPDATE machines SET agent_manager_status = 'UNKNOWN' "
        "WHERE agent_manager_status = 'RUNNING' "
        "AND (last_seen IS NULL OR last_seen < now() - make_interval(secs => %s)) RETURNING id",
        (silent_s,))
    return [str(r[0]) for r in await cur.fetchall()]


async def list_running(conn: Conn) -> list[str]:
    """Ids of the machines whose manager is RUNNING."""
    cur = await conn.execute(
        "SELECT id FROM machines WHERE agent_manager_status = 'RUNNING' ORDER BY id")
    return [str(r[0]) for r in await cur.fetchall()]


async def record_goodbye(conn: Conn, machine_id: str) -> None:
    await conn.execute("UPDATE machines SET agent_manager_status = 'STOPPED' WHERE id = %s",
                       (machine_id,))


async def list_machines(conn: Conn, where: str, params: list[Any], limit: int,
                        after: tuple[Any, ...] | None) -> list[dict[str, Any]]:
    clauses, args = [f"({where})"], list(params)
    if after is not None:
        clauses.append("id > %s")
        args.append(after[0])
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM machines WHERE {' AND '.join(clauses)} "
            "ORDER BY id LIMIT %s".encode(), [*args, limit])
        return await cur.fetchall()


async def get_machine(conn: Conn, machine_id: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLS} FROM machines WHERE id = %s".encode(),
                          (machine_id,))
        return await cur.fetchone()
