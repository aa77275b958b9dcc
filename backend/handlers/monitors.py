"""Monitors on a machine: POST, list, get, DELETE (seeds/003 section 3).

POST answers 201 with status STARTING at once; START_MONITOR goes to the
machine's manager in the background. DELETE sends STOP_MONITOR in every status.
What follows is backend.monitor_lifecycle's.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import msgspec
from aiohttp import web

from backend import audit, csv_export, monitor_lifecycle, request_db, target_policy
from backend.errors import NotFound
from backend.handlers.listing import Sorting, every_row, list_query
from backend.handlers.views import iso
from backend.models import MonitorCreate, check_supported, decode_body, path_text, path_uuid
from backend.repo import machines, monitors
from backend.typedefs import CALLER

__all__ = [
    "SUMMARY_FIELDS",
    "create_monitor",
    "delete_monitor",
    "get_monitor",
    "list_monitors",
    "monitor_summary",
]

log = logging.getLogger(__name__)
_SORTING = Sorting(monitors.ORDERABLE, monitors.TIEBREAK, default="create_time")


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def monitor_view(m: dict[str, Any], machine_status: str | None = None) -> dict[str, Any]:
    return {
        "id": str(m["id"]),
        "display_name": m["display_name"],
        "machine_id": m["machine_id"],
        "monitor_type": m["monitor_type"],
        "target": _json(m["target"]),
        "config": _json(m["config"]),
        "status": m["status"],
        "error_code": m["error_code"],
        "error_message": m["error_message"],
        "create_time": iso(m["create_time"]),
        "start_time": iso(m["start_time"]),
        "stop_time": iso(m["stop_time"]),
        "agent_pid": m["agent_pid"],
        "machine_status": machine_status,
    }


# a monitor as lists show it: these fields of monitor_view, in order (the CSV columns)
SUMMARY_FIELDS = ("id", "display_name", "monitor_type", "status", "start_time", "machine_status")


def monitor_summary(m: dict[str, Any], machine_status: str | None = None) -> dict[str, Any]:
    view = monitor_view(m, machine_status)
    return {k: view[k] for k in SUMMARY_FIELDS}


async def _machine_or_404(conn: Any, machine_id: str) -> dict[str, Any]:
    row = await machines.get_machine(conn, machine_id)
    if row is None:
        raise NotFound(f"machine '{machine_id[:80]}' not found")
    return row


@audit.audited("START_MONITOR", deferred=True)
async def create_monitor(request: web.Request) -> web.Response:
    """Starts a monitor on the machine, owned by the caller: 201, STARTING; 429 at a quota,
    507 when the database volume is nearly full (backend.monitor_lifecycle)."""
    machine_id = path_text(request, "machine_id")
    body = await decode_body(request, MonitorCreate)
    async with request_db.connection(request) as conn:
        machine = await _machine_or_404(conn, machine_id)
        check_supported(body, machine["monitor_types"])
        allowed = await target_policy.allowed_accounts(conn, request[CALLER], body.target)
    m = await monitor_lifecycle.create(
        request.app,
        machine_id,
        body.monitor_type,
        msgspec.to_builtins(body.target),
        msgspec.to_builtins(body.config),
        body.display_name,
        allowed_users=allowed,
        owner=request[CALLER].user_id,
    )
    return web.json_response(monitor_view(m), status=201)


async def list_monitors(request: web.Request) -> web.StreamResponse:
    """The machine's monitors, a page at a time (order_by: create_time by default, status,
    monitor_type, display_name); or all of them as CSV."""
    machine_id = path_text(request, "machine_id")
    as_csv = csv_export.wanted(request)
    q = list_query(request, monitors.FIELDS, _SORTING)

    async def fetch(conn: Any, after: tuple[object, ...] | None, limit: int) -> list[Any]:
        return await monitors.list_monitors(
            conn, machine_id, q.where, q.params, limit, after, q.order
        )

    async with request_db.connection(request) as conn:
        await _machine_or_404(conn, machine_id)
        if not as_csv:
            rows = await fetch(conn, q.after, q.size + 1)
    if as_csv:
        batches = every_row(request, q, fetch, monitor_summary)
        return await csv_export.respond(request, "monitors", SUMMARY_FIELDS, batches)
    rows, token = q.page(rows, lambda r: r["_key"])
    return web.json_response(
        {"monitors": [monitor_summary(r) for r in rows], "next_page_token": token}
    )


async def _monitor_or_404(conn: Any, machine_id: str, monitor_id: uuid.UUID) -> dict[str, Any]:
    await _machine_or_404(conn, machine_id)
    m = await monitors.get_monitor(conn, machine_id, monitor_id)
    if m is None:
        raise NotFound(f"monitor '{monitor_id}' not found on machine '{machine_id[:80]}'")
    return m


async def get_monitor(request: web.Request) -> web.Response:
    """One monitor, with its lifecycle timestamps and error."""
    async with request_db.connection(request) as conn:
        m = await _monitor_or_404(
            conn, path_text(request, "machine_id"), path_uuid(request, "monitor_id")
        )
    return web.json_response(monitor_view(m))


@audit.audited("STOP_MONITOR")
async def delete_monitor(request: web.Request) -> web.Response:
    """Stops a monitor, whatever its status: 204 once stopped, 202 while the machine has not
    answered (it stays STOPPING), the error body when the agent could not be stopped."""
    async with request_db.connection(request) as conn:
        m = await _monitor_or_404(
            conn, path_text(request, "machine_id"), path_uuid(request, "monitor_id")
        )
    stopped = await monitor_lifecycle.stop(request.app, m)
    return web.Response(status=204 if stopped else 202)
