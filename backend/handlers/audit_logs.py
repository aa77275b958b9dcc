"""GET /api/v1/auditLogs: the audit log of control actions, newest first (admin)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backend import request_db
from backend.handlers.listing import list_query
from backend.handlers.views import iso
from backend.repo import audit_logs

__all__ = ["list_audit_logs"]

_ORDER = "id desc"


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "time": iso(row["time"]),
        "actor_id": str(row["actor_id"]) if row["actor_id"] else None,
        "actor_email": row["actor_email"],
        "actor_role": row["actor_role"],
        "address": row["address"],
        "action": row["action"],
        "target": row["target"],
        "result": row["result"],
        "http_status": row["http_status"],
        "error_code": row["error_code"],
        "message": row["message"],
        "settle_time": iso(row["settle_time"]),
    }


async def list_audit_logs(request: web.Request) -> web.Response:
    """Control actions: who asked for what, when, and the result; newest first (admin)."""
    q = list_query(request, audit_logs.FIELDS, _ORDER)
    last = q.after[0] if q.after else None
    assert last is None or isinstance(last, int)  # tokens are signed: we wrote it
    async with request_db.connection(request) as conn:
        rows = await audit_logs.list_entries(conn, q.where, q.params, q.size + 1, last)
    rows, token = q.page(rows, lambda r: (r["id"],))
    return web.json_response({"audit_logs": [_entry(r) for r in rows], "next_page_token": token})
