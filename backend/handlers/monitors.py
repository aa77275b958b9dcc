"""Monitors on a machine: POST, list, get, DELETE (seeds/003 section 3).

POST answers 201 with status STARTING at once; START_MONITOR goes to the
machine's manager in the background and the monitor becomes RUNNING or
FAILED_TO_START (with the manager's error code and message). DELETE is
idempotent: a monitor already stopped answers 204 and nothing changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import msgspec
from aiohttp import web

from backend import audit
from backend.control import MachineUnavailable
from backend.errors import BadRequest, NotFound
from backend.filters import FieldSpec, FilterError, compile_filter
from backend.models import MonitorCreate, decode_body
from backend.paging import PagingError, decode_token, encode_token, parse_page_size
from backend.repo import machines, monitors
from backend.typedefs import CONTROL, DB, SETTINGS, TASKS

__all__ = ["create_monitor", "delete_monitor", "get_monitor", "list_monitors",
           "monitor_summary"]

log = logging.getLogger(__name__)
FIELDS = {
    "status": FieldSpec("status", "str"),
    "monitor_type": FieldSpec("monitor_type", "str"),
    "display_name": FieldSpec("display_name", "str"),
}


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


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
        "create_time": _iso(m["create_time"]),
        "start_time": _iso(m["start_time"]),
        "stop_time": _iso(m["stop_time"]),
        "agent_pid": m["agent_pid"],
        "machine_status": machine_status,
    }


def monitor_summary(m: dict[str, Any], machine_status: str | None = None) -> dict[str, Any]:
    return {k: v for k, v in monitor_view(m, machine_status).items()
            if k in ("id", "display_name", "monitor_type", "status", "start_time",
                     "machine_status")}


def _monitor_id(request: web.Request) -> uuid.UUID:
    raw = request.match_info["monitor_id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"monitor '{raw[:80]}' not found") from None


async def _machine_or_404(conn: Any, machine_id: str) -> dict[str, Any]:
    row = await machines.get_machine(conn, machine_id)
    if row is None:
        raise NotFound(f"machine '{machine_id[:80]}' not found")
    return row


async def _start(app: web.Application, m: dict[str, Any]) -> None:
    """Sends START_MONITOR and records what came of it."""
    settings = app[SETTINGS]
    command = {
        "command": "START_MONITOR",
        "monitor_id": str(m["id"]),
        "monitor_type": m["monitor_type"],
        "target": {k: v for k, v in _json(m["target"]).items() if v is not None},
        "config": _json(m["config"]),
        "backend_zmq_data_endpoint": settings.ingest_public_endpoint,
        "machine_id": m["machine_id"],
    }
    try:
        reply = await app[CONTROL].command(m["machine_id"], command)
    except MachineUnavailable as e:
        reply = {"status": "FAILURE", "error_code": "AGENT_START_FAILED", "message": str(e)}
    async with app[DB].connection() as conn:
        if reply.get("status") == "SUCCESS":
            pid = reply.get("agent_pid")
            await monitors.set_status(conn, m["id"], "RUNNING",
                                      agent_pid=pid if isinstance(pid, int) else None)
        else:
            await monitors.set_status(conn, m["id"], "FAILED_TO_START",
                                      error_code=str(reply.get("error_code", "")) or None,
                                      error_message=str(reply.get("message", ""))[:2000])
    await audit.outcome(reply, target=f"machines/{m['machine_id']}/monitors/{m['id']}")


@audit.audited("START_MONITOR", deferred=True)
async def create_monitor(request: web.Request) -> web.Response:
    """Starts a monitor on the machine."""
    machine_id = request.match_info["machine_id"]
    body = await decode_body(request, MonitorCreate)
    async with request.app[DB].connection() as conn:
        await _machine_or_404(conn, machine_id)
        m = await monitors.create_monitor(conn, machine_id, body.monitor_type,
                                          msgspec.to_builtins(body.target),
                                          msgspec.to_builtins(body.config), body.display_name)
    task = asyncio.create_task(_start(request.app, m))
    request.app[TASKS].add(task)
    task.add_done_callback(request.app[TASKS].discard)
    return web.json_response(monitor_view(m), status=201)


async def list_monitors(request: web.Request) -> web.Response:
    """The machine's monitors, oldest first, a page at a time."""
    machine_id, q = request.match_info["machine_id"], request.query
    text = q.get("filter", "")
    secret = request.app[SETTINGS].jwt_secret.encode()
    try:
        where, params = compile_filter(text, FIELDS)
        size = parse_page_size(q.get("page_size"))
        after = (decode_token(q["page_token"], "create_time,id", text, secret)
                 if q.get("page_token") else None)
    except (FilterError, PagingError) as e:
        raise BadRequest(e.param, e.problem) from None
    async with request.app[DB].connection() as conn:
        await _machine_or_404(conn, machine_id)
        rows = await monitors.list_monitors(conn, machine_id, where, params, size + 1, after)
    more, rows = len(rows) > size, rows[:size]
    token = (encode_token((rows[-1]["create_time"], rows[-1]["id"]), "create_time,id", text,
                          secret) if more else "")
    return web.json_response({"monitors": [monitor_summary(r) for r in rows],
                              "next_page_token": token})


async def _monitor_or_404(conn: Any, machine_id: str, monitor_id: uuid.UUID) -> dict[str, Any]:
    await _machine_or_404(conn, machine_id)
    m = await monitors.get_monitor(conn, machine_id, monitor_id)
    if m is None:
        raise NotFound(f"monitor '{monitor_id}' not found on machine '{machine_id[:80]}'")
    return m


async def get_monitor(request: web.Request) -> web.Response:
    """One monitor, with its lifecycle timestamps and error."""
    async with request.app[DB].connection() as conn:
        m = await _monitor_or_404(conn, request.match_info["machine_id"], _monitor_id(request))
    return web.json_response(monitor_view(m))


@audit.audited("STOP_MONITOR")
async def delete_monitor(request: web.Request) -> web.Response:
    """Stops a monitor; 204 when stopped (or already), 202 when the machine cannot be reached."""
    machine_id = request.match_info["machine_id"]
    monitor_id = _monitor_id(request)
    async with request.app[DB].connection() as conn:
        m = await _monitor_or_404(conn, machine_id, monitor_id)
        if m["status"] in monitors.FINAL:
            return web.Response(status=204)
    try:
        reply = await request.app[CONTROL].command(
            machine_id, {"command": "STOP_MONITOR", "monitor_id": str(monitor_id)})
    except MachineUnavailable:
        async with request.app[DB].connection() as conn:
            await monitors.set_status(conn, monitor_id, "STOPPING")
        return web.Response(status=202)
    ok = reply.get("status") == "SUCCESS" or reply.get("error_code") == "MONITOR_NOT_FOUND"
    await audit.outcome(reply, ok=ok)
    async with request.app[DB].connection() as conn:
        if ok:
            await monitors.set_status(conn, monitor_id, "STOPPED")
        else:
            await monitors.set_status(conn, monitor_id, "ERROR",
                                      error_code=str(reply.get("error_code")),
                                      error_message=str(reply.get("message", ""))[:2000])
    return web.Response(status=204)
