"""GET /api/v1/machines and /api/v1/machines/{machine_id} (seeds/003 section 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend import csv_export, request_db
from backend.errors import NotFound
from backend.handlers.listing import Sorting, every_row, list_query
from backend.handlers.monitors import monitor_summary
from backend.handlers.views import iso
from backend.models import path_text
from backend.repo import machine_clocks, machines, monitors
from backend.repo.machine_clocks import MachineClock
from backend.typedefs import SETTINGS

__all__ = ["FIELDS", "get_machine", "list_machines", "machine_status"]

_SORTING = Sorting(machines.ORDERABLE, machines.TIEBREAK, default="id")


def machine_status(row: dict[str, Any], timeout_s: float) -> str:
    seen = row.get("last_seen")
    fresh = seen is not None and (datetime.now(UTC) - seen).total_seconds() <= timeout_s
    return "ACTIVE" if fresh and row["agent_manager_status"] == "RUNNING" else "INACTIVE"


def _clock(c: MachineClock | None) -> dict[str, Any] | None:
    """The machine's clock against the backend's (null: unmeasured): add offset_ns to a time
    stamped there to get the backend's, within error_bound_ns (grown with the age of the
    measurement, taken at measured_at)."""
    if c is None or c.error_ns is None:
        return None
    return {
        "offset_ns": c.offset_ns,
        "error_bound_ns": c.error_ns,
        "measured_at": iso(c.measured_at),
    }


# a machine's fields, in order (the CSV columns)
FIELDS = (
    "id",
    "hostname",
    "os_info",
    "accelerators",
    "agent_manager_status",
    "manager_version",
    "last_seen",
    "status",
    "monitor_types",
    "clock",
)


def _machine(row: dict[str, Any], timeout_s: float, clock: MachineClock | None) -> dict[str, Any]:
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
        "clock": _clock(clock),
    }


async def list_machines(request: web.Request) -> web.StreamResponse:
    """Known machines, a page at a time (order_by: last_seen, hostname, id); or all of them
    as CSV."""
    settings = request.app[SETTINGS]
    as_csv = csv_export.wanted(request)
    q = list_query(request, machines.fields(settings.heartbeat_timeout_s), _SORTING)
    if as_csv:

        async def fetch(conn: Any, after: tuple[object, ...] | None, limit: int) -> list[Any]:
            rows = await machines.list_machines(conn, q.where, q.params, q.order, after, limit)
            clocks = await machine_clocks.clocks(conn, [r["id"] for r in rows])
            return [(r, clocks.get(r["id"])) for r in rows]

        batches = every_row(
            request,
            q,
            fetch,
            lambda rc: _machine(rc[0], settings.heartbeat_timeout_s, rc[1]),
            lambda rc: rc[0]["_key"],
        )
        return await csv_export.respond(request, "machines", FIELDS, batches)
    async with request_db.connection(request) as conn:
        rows = await machines.list_machines(conn, q.where, q.params, q.order, q.after, q.size + 1)
        rows, token = q.page(rows, lambda r: r["_key"])
        clocks = await machine_clocks.clocks(conn, [r["id"] for r in rows])
    return web.json_response(
        {
            "machines": [
                _machine(r, settings.heartbeat_timeout_s, clocks.get(r["id"])) for r in rows
            ],
            "next_page_token": token,
        }
    )


async def get_machine(request: web.Request) -> web.Response:
    """One machine with summaries of its monitors."""
    machine_id = path_text(request, "machine_id")
    settings = request.app[SETTINGS]
    async with request_db.connection(request) as conn:
        row = await machines.get_machine(conn, machine_id)
        if row is None:
            raise NotFound(f"machine '{machine_id[:80]}' not found")
        mons = await monitors.list_monitors(conn, machine_id, "TRUE", [], 1000, None)
        clock = (await machine_clocks.clocks(conn, [machine_id])).get(machine_id)
    body = _machine(row, settings.heartbeat_timeout_s, clock)
    body["monitors"] = [monitor_summary(m, body["status"]) for m in mons]
    return web.json_response(body)
