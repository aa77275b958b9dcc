"""What the backend does with what managers report: registration, heartbeats, monitor status."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from backend.repo import machines, monitors
from backend.typedefs import DB

__all__ = ["handle_event"]

log = logging.getLogger(__name__)
_STATUS = {"RUNNING": "RUNNING", "STOPPED": "STOPPED", "ERROR": "ERROR"}


async def handle_event(app: web.Application, machine_id: str, key: str,
                       msg: dict[str, Any]) -> None:
    event = msg.get("event")
    async with app[DB].connection() as conn:
        if event == "HELLO":
            if not await machines.record_hello(conn, machine_id, key, msg):
                log.warning("HELLO for machine %s under an unknown key: ignored", machine_id)
        elif event == "HEARTBEAT":
            await machines.record_heartbeat(conn, machine_id)
        elif event == "GOODBYE":
            await machines.record_goodbye(conn, machine_id)
        elif event == "MONITOR_STATUS":
            status = _STATUS.get(str(msg.get("monitor_status")))
            try:
                monitor_id = uuid.UUID(str(msg.get("monitor_id")))
            except ValueError:
                return
            if status is None:
                return
            found = await monitors.get_monitor(conn, machine_id, monitor_id)
            if found is None:
                return
            message = msg.get("error_message") or msg.get("message")
            await monitors.set_status(conn, monitor_id, status,
                                      error_message=str(message)[:2000] if message and
                                      status == "ERROR" else None)
