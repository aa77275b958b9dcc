"""GET /api/v1/machines and /api/v1/machines/{machine_id} (seeds/003 section 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend import request_db
from backend.errors import BadRequest, NotFound
from backend.filters import FilterError, compile_filter
from backend.handlers.monitors import monitor_summary
from backend.models import path_text
from backend.paging import (
    PagingError,
    decode_token,
    encode_token,
    order_signature,
    parse_order_by,
    parse_page_size,
)
from backend.repo import machines, monitors
from backend.typedefs import SETTINGS

__all__ = ["get_machine", "list_machines", "machine_status"]


def machine_status(row: dict[str, Any], timeout_s: float) -> str:
    seen = row.get("last_seen")
    fresh = seen is not None and (datetime.now(UTC) - seen).total_seconds() <= timeout_s
    return "ACTIVE" if fresh and row["agent_manager_status"] == "RUNNING" else "INACTIVE"


def _machine(row: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    acc = row["accelerators"]
    return {
        "id": row["id"],
        "hostname": row["hostname"],
        "os_info": row["os_info"],
        "accelerators": json.loads(acc) if isinstance(acc, str) else acc,
        "agent_manager_status": row["agent_manager_status"],
        "manager_version": row["manager_version"],
        "last_seen": row["last_seen"].isoformat() if row["last_seen"] else None,
        "status": machine_status(row, timeout_s),
        # what its manager announced it can run (null: not announced)
        "monitor_types": row["monitor_types"],
    }


async def list_machines(request: web.Request) -> web.Response:
    """Known machines, a page at a time (order_by: last_seen, hostname, id)."""
    q, settings = request.query, request.app[SETTINGS]
    text = q.get("filter", "")
    secret = settings.page_token_secret
    try:
        where, params = compile_filter(text, machines.fields(settings.heartbeat_timeout_s))
        size = parse_page_size(q.get("page_size"))
        order = parse_order_by(q.get("order_by"), machines.ORDERABLE, machines.TIEBREAK,
                               default="id")
        sig = order_signature(order)
        after = decode_token(q["page_token"], sig, text, secret) if q.get("page_token") else None
    except (FilterError, PagingError) as e:
        raise BadRequest(e.param, e.problem) from None
    async with request_db.connection(request) as conn:
        rows = await machines.list_machines(conn, where, params, order, after, size + 1)
    more, rows = len(rows) > size, rows[:size]
    return web.json_response({
        "machines": [_machine(r, settings.heartbeat_timeout_s) for r in rows],
        "next_page_token": encode_token(rows[-1]["_key"], sig, text, secret) if more else "",
    })


async def get_machine(request: web.Request) -> web.Response:
    """One machine with summaries of its monitors."""
    machine_id = path_text(request, "machine_id")
    settings = request.app[SETTINGS]
    async with request_db.connection(request) as conn:
        row = await machines.get_machine(conn, machine_id)
        if row is None:
            raise NotFound(f"machine '{machine_id[:80]}' not found")
        mons = await monitors.list_monitors(conn, machine_id, "TRUE", [], 1000, None)
    body = _machine(row, settings.heartbeat_timeout_s)
    body["monitors"] = [monitor_summary(m, body["status"]) for m in mons]
    return web.json_response(body)
