"""The audit log: one row per control action, opened when it is asked for, settled once."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.filters import FieldSpec

__all__ = ["FIELDS", "list_entries", "open_entry", "settle_entry"]

Conn = AsyncConnection[Any]
_COLS = (
    "id, time, actor_id, actor_email, actor_role, address, action, target, result, "
    "http_status, error_code, message, settle_time"
)
# What GET /api/v1/auditLogs' filter may name, and the columns behind the names
FIELDS = {
    "time": FieldSpec("time", "timestamp"),
    "actor_id": FieldSpec("actor_id::text", "str", nullable=True),
    "actor_email": FieldSpec("actor_email", "str"),
    "actor_role": FieldSpec("actor_role", "str"),
    "address": FieldSpec("address", "str"),
    "action": FieldSpec("action", "str"),
    "target": FieldSpec("target", "str"),
    "result": FieldSpec("result", "str"),
    "http_status": FieldSpec("http_status", "int", nullable=True),
    "error_code": FieldSpec("error_code", "str", nullable=True),
}


def _text(value: str, limit: int) -> str:
    """value cut to limit characters, NULs (which text columns refuse) shown as U+FFFD: a
    request path or message may carry what a client sent."""
    return value[:limit].replace("\x00", "\ufffd")


async def open_entry(
    conn: Conn,
    actor_id: uuid.UUID,
    actor_email: str,
    actor_role: str,
    address: str,
    action: str,
    target: str,
) -> int:
    """A new PENDING row; its id."""
    cur = await conn.execute(
        "INSERT INTO audit_logs (actor_id, actor_email, actor_role, address, action, target) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (actor_id, actor_email, actor_role, _text(address, 100), action, _text(target, 500)),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def settle_entry(
    conn: Conn,
    entry_id: int,
    *,
    result: str | None = None,
    http_status: int | None = None,
    error_code: str | None = None,
    message: str | None = None,
    target: str | None = None,
) -> None:
    """Records what came of an action. The result of a PENDING row is set once; a later
    result is ignored, so whichever of the reply and the HTTP answer decides first wins.
    http_status, target, error_code and message fill in what is still missing."""
    await conn.execute(
        "UPDATE audit_logs SET "
        "result = CASE WHEN result = 'PENDING' AND %(result)s::text IS NOT NULL "
        "  THEN %(result)s ELSE result END, "
        "settle_time = CASE WHEN result = 'PENDING' AND %(result)s::text IS NOT NULL "
        "  THEN now() ELSE settle_time END, "
        "http_status = COALESCE(http_status, %(http)s), "
        "error_code = COALESCE(error_code, %(code)s), "
        "message = CASE WHEN message = '' THEN COALESCE(%(message)s, '') ELSE message END, "
        "target = COALESCE(%(target)s, target) "
        "WHERE id = %(id)s",
        {
            "result": result,
            "http": http_status,
            "code": error_code,
            "message": None if message is None else _text(message, 2000),
            "target": None if target is None else _text(target, 500),
            "id": entry_id,
        },
    )


async def list_entries(
    conn: Conn, where: str, params: list[Any], limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Rows matching a compiled filter, newest first, older than the row id ``after``."""
    clauses, args = [f"({where})"], list(params)
    if after is not None:
        clauses.append("id < %s")
        args.append(after)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM audit_logs WHERE {' AND '.join(clauses)} "
            "ORDER BY id DESC LIMIT %s".encode(),
            [*args, limit],
        )
        return await cur.fetchall()
