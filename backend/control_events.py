"""What the backend does with what managers report: registration, heartbeats (with the
machine's clock: xpucore.clock_sync), monitor status, jobs (backend.job_events), device
samples (backend.device_events).

Runs in the control socket's receive loop, so nothing here waits for a command's reply:
a reconciliation is asked for (backend.reconciler), never awaited.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from aiohttp import web

from backend import device_events, job_events, monitor_lifecycle
from backend.repo import machine_clocks, machines, monitors
from backend.typedefs import DB, RECONCILER
from xpucore import clock_sync, protocol
from xpucore.job_wire import WireError
from xpucore.protocol import Event

__all__ = ["handle_event"]

log = logging.getLogger(__name__)


async def handle_event(
    app: web.Application, machine_id: str, key: str, msg: dict[str, Any]
) -> None:
    event = protocol.event_of(msg)
    if event == Event.MONITOR_STATUS:
        await monitor_lifecycle.on_monitor_status(app, machine_id, msg)
        return
    if event == Event.DEVICE_METRICS:
        await device_events.on_device_metrics(app, machine_id, key, msg)
        return
    if event in job_events.JOB_EVENTS:
        await job_events.on_job_event(app, machine_id, key, event, msg)
        return
    async with app[DB].connection() as conn:
        if event == Event.HELLO:
            if not await machines.record_hello(conn, machine_id, key, msg):
                log.warning("HELLO for machine %s under an unknown key: ignored", machine_id)
                return
            await machine_clocks.forget(conn, machine_id)  # measured anew on this connection
            reconcile = True
        elif event == Event.HEARTBEAT:
            was = await machines.record_heartbeat(conn, machine_id)
            if was is None:
                return
            await _record_clock(conn, machine_id, msg)
            if was != "RUNNING":
                await job_events.heard_again(conn, machine_id)
            reconcile = was != "RUNNING" or await _disagree(conn, machine_id, msg)
        elif event == Event.GOODBYE:
            await machines.record_goodbye(conn, machine_id)
            await job_events.mark_unknown(conn, machine_id, "its manager stopped")
            return
        else:
            return
    reconciler = app.get(RECONCILER)
    if reconcile and reconciler is not None:
        reconciler.request(machine_id)


async def _record_clock(conn: Any, machine_id: str, msg: dict[str, Any]) -> None:
    """Stores a heartbeat's clock; an older manager sends none (the machine stays unmeasured)."""
    if msg.get("clock") is None:
        return
    try:
        report = clock_sync.check_report(msg["clock"], time.time_ns())
    except WireError as e:
        log.warning("HEARTBEAT from machine %s: clock refused: %s", machine_id, e)
        return
    await machine_clocks.record(conn, machine_id, report)


async def _disagree(conn: Any, machine_id: str, msg: dict[str, Any]) -> bool:
    """Whether the agents a heartbeat lists are not exactly the machine's RUNNING monitors."""
    listed = msg.get("active_monitors")
    if not isinstance(listed, list):
        return False
    agents: set[uuid.UUID] = set()
    for a in listed:
        try:
            agents.add(uuid.UUID(str(a.get("monitor_id"))))
        except (AttributeError, ValueError):
            return True
    rows = await monitors.list_to_reconcile(conn, machine_id, agents)
    return agents != {r["id"] for r in rows if r["status"] == "RUNNING"}
