"""A monitor's status, one place for every move (seeds/003 part 1 section 3, part 2).

    STARTING ──START SUCCESS──▶ RUNNING ──DELETE──▶ STOPPING ──STOP SUCCESS──▶ STOPPED
       │  └─START FAILURE, or never reached the manager──▶ FAILED_TO_START     │
       └─DELETE──▶ STOPPING                       AGENT_STOP_FAILED ──▶ ERROR ◀─┘
    RUNNING ──its agent exited (MONITOR_STATUS, or found by reconciliation)──▶ STOPPED | ERROR

A monitor belongs to the user who created it. create() refuses it (nothing is written, no
START is sent) with 507 when the database volume is nearly full (backend.storage), and with
429 when its owner is at a quota: settings.max_running_monitors_per_user monitors STARTING or
RUNNING, or settings.max_events_per_user events stored by their monitors.

STOPPED, ERROR and FAILED_TO_START are final. Every move is conditional on the status the
row has (backend.repo.monitors.set_status), so replies, events and reconciliation may come
in any order and the outcome is the same.

- A START or STOP answered after its wait (settings.start_wait_s, stop_wait_s) is applied
  when the reply comes (apply_late_reply): meanwhile the monitor stays STARTING or STOPPING.
- DELETE sends STOP in every status (STOP is idempotent on the manager): 204 once stopped,
  202 while the manager has not answered, the error body when the agent could not be stopped.
- reconcile() compares the machine's monitors with its manager's GET_STATUS and converges
  both ways: an agent no monitor wants (its monitor is final, unknown, or STOPPING) is sent
  STOP; a monitor whose agent is gone ends as the manager says, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend import audit, storage
from backend.control import MachineUnavailable, NoReply
from backend.errors import AgentStopFailed, QuotaExceeded
from backend.repo import event_counts, monitors
from backend.typedefs import CONTROL, DB, SETTINGS, TASKS
from xpucore import protocol
from xpucore.protocol import Command, ErrorCode, MonitorStatus

__all__ = ["apply_late_reply", "create", "on_monitor_status", "reconcile", "stop"]

log = logging.getLogger(__name__)
Row = dict[str, Any]
MAX_MESSAGE = 2000


def _text(v: Any) -> str | None:
    return str(v)[:MAX_MESSAGE] if v else None


def _spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def _move(
    app: web.Application,
    monitor_id: uuid.UUID,
    status: str,
    only_from: tuple[str, ...] = monitors.ACTIVE,
    **kw: Any,
) -> bool:
    async with app[DB].connection() as conn:
        moved = await monitors.set_status(conn, monitor_id, status, only_from=only_from, **kw)
    if moved:
        log.info(
            "monitor %s: %s%s",
            monitor_id,
            status,
            f" ({kw['error_message']})" if kw.get("error_message") else "",
        )
        if status in monitors.FINAL:
            from backend import job_traces  # it starts and stops monitors through this module

            _spawn(app, job_traces.monitor_ended(app, monitor_id))
    return moved


async def _row(app: web.Application, machine_id: str, monitor_id: uuid.UUID) -> Row | None:
    async with app[DB].connection() as conn:
        return await monitors.get_monitor(conn, machine_id, monitor_id)


# -- START


async def create(
    app: web.Application,
    machine_id: str,
    monitor_type: str,
    target: dict[str, Any],
    config: dict[str, Any],
    display_name: str,
    *,
    owner: uuid.UUID | None = None,
    allowed_users: list[str] | None = None,
    job_trace_id: uuid.UUID | None = None,
) -> Row:
    """A new STARTING monitor of owner; START_MONITOR goes to the manager in the background,
    with the Unix accounts whose processes it may target (None: any but the platform's).
    Raises InsufficientStorage or QuotaExceeded instead (see the module doc)."""
    settings = app[SETTINGS]
    async with app[DB].connection() as conn:
        await storage.check_room(settings, conn)
        quota = settings.max_events_per_user
        if owner is not None and quota > 0:
            stored = await event_counts.user_events(conn, owner)
            if stored >= quota:
                raise QuotaExceeded(
                    f"XPUTRACE_MAX_EVENTS_PER_USER: your monitors stored {stored} events, the "
                    f"quota is {quota}; no new monitor starts until retention drops old ones "
                    f"(XPUTRACE_RETENTION_DAYS={settings.retention_days}) or the quota is "
                    f"raised"
                )
        try:
            m = await monitors.create_monitor(
                conn,
                machine_id,
                monitor_type,
                target,
                config,
                display_name,
                created_by=owner,
                max_running=settings.max_running_monitors_per_user,
                job_trace_id=job_trace_id,
            )
        except monitors.RunningLimit as e:
            raise QuotaExceeded(
                f"XPUTRACE_MAX_RUNNING_MONITORS_PER_USER: you have {e.running} monitors "
                f"STARTING or RUNNING, the quota is {settings.max_running_monitors_per_user}; "
                f"stop one (DELETE) first"
            ) from None
    _spawn(app, _start(app, m, allowed_users))
    return m


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


async def _start(app: web.Application, m: Row, allowed_users: list[str] | None) -> None:
    settings = app[SETTINGS]
    command = protocol.start_monitor(
        str(m["id"]),
        m["monitor_type"],
        _json(m["target"]),
        _json(m["config"]),
        settings.ingest_public_endpoint,
        m["machine_id"],
        allowed_users,
    )
    try:
        reply = await app[CONTROL].command(m["machine_id"], command, settings.start_wait_s)
    except NoReply as e:  # the manager may still start it: its reply is applied when it comes
        log.warning("monitor %s: %s; it stays STARTING until the manager answers", m["id"], e)
        return
    except MachineUnavailable as e:  # it never reached the manager
        reply = protocol.failure(None, str(m["id"]), ErrorCode.AGENT_START_FAILED, str(e))
    await _apply_start(app, m["machine_id"], m["id"], reply)
    await audit.outcome(reply, target=f"machines/{m['machine_id']}/monitors/{m['id']}")


async def _apply_start(
    app: web.Application, machine_id: str, monitor_id: uuid.UUID, reply: dict[str, Any]
) -> None:
    r = protocol.parse_reply(reply)
    if not r.ok:
        await _move(
            app,
            monitor_id,
            "FAILED_TO_START",
            ("STARTING", "STOPPING"),
            error_code=_text(r.error_code),
            error_message=_text(r.message),
        )
        return
    if await _move(app, monitor_id, "RUNNING", ("STARTING",), agent_pid=r.agent_pid):
        return
    row = await _row(app, machine_id, monitor_id)  # DELETEd meanwhile, or settled otherwise
    if row is None or row["status"] != "RUNNING":
        _stop_unwanted(
            app, machine_id, monitor_id, "its monitor is " + (row["status"] if row else "unknown")
        )


# -- STOP


async def stop(app: web.Application, m: Row) -> bool:
    """DELETE: sends STOP whatever the monitor's status. True once stopped (or never
    running), False while the manager has not answered (the monitor is STOPPING until it
    does); raises AgentStopFailed when the manager could not stop the agent."""
    settings = app[SETTINGS]
    final = m["status"] in monitors.FINAL
    if not final:
        await _move(app, m["id"], "STOPPING", ("STARTING", "RUNNING"))
    try:
        reply = await app[CONTROL].command(
            m["machine_id"], protocol.stop_monitor(str(m["id"])), settings.stop_wait_s
        )
    except NoReply:
        return False
    except MachineUnavailable:  # not connected: reconciled when its manager comes back
        return final
    failure = await _apply_stop(app, m["id"], reply)
    await audit.outcome(reply, ok=failure is None)
    if failure is not None:
        raise AgentStopFailed(failure)
    return True


async def _apply_stop(
    app: web.Application, monitor_id: uuid.UUID, reply: dict[str, Any]
) -> str | None:
    """Applies STOP's reply; returns what went wrong, if it did."""
    r = protocol.parse_reply(reply)
    if r.ok or r.error_code == ErrorCode.MONITOR_NOT_FOUND:
        await _move(app, monitor_id, "STOPPED", ("STOPPING",), events_sent=r.events_sent,
                    events_dropped=r.events_dropped)  # fmt: skip
        return None
    message = f"{r.error_code}: {r.message or 'the agent could not be stopped'}"
    await _move(
        app, monitor_id, "ERROR", error_code=_text(r.error_code), error_message=_text(r.message)
    )
    return message


def _stop_unwanted(app: web.Application, machine_id: str, monitor_id: uuid.UUID, why: str) -> None:
    """Sends STOP for an agent no monitor wants, unless one is on its way."""
    if Command.STOP_MONITOR in app[CONTROL].in_flight(machine_id).get(str(monitor_id), ()):
        return
    log.warning("machine %s: stopping the agent of monitor %s: %s", machine_id, monitor_id, why)

    async def go() -> None:
        try:
            reply = await app[CONTROL].command(
                machine_id, protocol.stop_monitor(str(monitor_id)), app[SETTINGS].stop_wait_s
            )
        except MachineUnavailable as e:
            log.warning("monitor %s: STOP not answered: %s", monitor_id, e)
            return
        failure = await _apply_stop(app, monitor_id, reply)
        if failure is not None:
            log.error("monitor %s: %s", monitor_id, failure)

    _spawn(app, go())


# -- what the manager says later


async def apply_late_reply(
    app: web.Application, machine_id: str, command: dict[str, Any], reply: dict[str, Any]
) -> None:
    """A reply that came after its request stopped waiting (ControlServer.on_late_reply)."""
    try:
        monitor_id = uuid.UUID(str(command.get("monitor_id")))
    except ValueError:
        return
    sent = protocol.command_of(command)
    log.info(
        "machine %s: late reply to %s %s: %s", machine_id, sent, monitor_id, reply.get("status")
    )
    if sent == Command.START_MONITOR:
        await _apply_start(app, machine_id, monitor_id, reply)
    elif sent == Command.STOP_MONITOR:
        failure = await _apply_stop(app, monitor_id, reply)
        if failure is not None:
            log.error("monitor %s: %s", monitor_id, failure)


async def on_monitor_status(app: web.Application, machine_id: str, msg: dict[str, Any]) -> None:
    """MONITOR_STATUS: an agent exited without being asked to."""
    status = msg.get("monitor_status")
    if status not in (MonitorStatus.STOPPED, MonitorStatus.ERROR):
        return
    try:
        monitor_id = uuid.UUID(str(msg.get("monitor_id")))
    except ValueError:
        return
    if await _row(app, machine_id, monitor_id) is None:
        return
    sent, dropped = protocol.sent_counts(msg)
    await _move(
        app,
        monitor_id,
        str(status),
        error_message=_text(msg.get("error_message") or msg.get("message")),
        events_sent=sent,
        events_dropped=dropped,
    )


# -- reconciliation


async def reconcile(app: web.Application, machine_id: str) -> bool:
    """Compares the machine's monitors with its manager's GET_STATUS and converges both
    ways. False when the manager could not be asked."""
    control, settings = app[CONTROL], app[SETTINGS]
    try:
        reply = await control.command(machine_id, protocol.get_status(), settings.status_wait_s)
    except MachineUnavailable as e:
        log.info("machine %s not reconciled: %s", machine_id, e)
        return False
    r = protocol.parse_reply(reply)
    if not r.ok or r.active_monitors is None:
        return False
    agents: dict[uuid.UUID, dict[str, Any]] = {}
    for a in r.active_monitors:
        try:
            agents[uuid.UUID(str(a.get("monitor_id")))] = a
        except (AttributeError, ValueError):
            continue
    async with app[DB].connection() as conn:
        rows = {r["id"]: r for r in await monitors.list_to_reconcile(conn, machine_id, agents)}
    in_flight = control.in_flight(machine_id)
    for monitor_id, agent in agents.items():
        row = rows.get(monitor_id)
        busy = in_flight.get(str(monitor_id), set())
        if row is None or row["status"] in monitors.FINAL or row["status"] == "STOPPING":
            _stop_unwanted(
                app,
                machine_id,
                monitor_id,
                "its monitor is " + (row["status"] if row else "unknown on this backend"),
            )
        elif row["status"] == "STARTING" and Command.START_MONITOR not in busy:
            pid = agent.get("agent_pid")
            await _move(
                app,
                monitor_id,
                "RUNNING",
                ("STARTING",),
                agent_pid=pid if isinstance(pid, int) else None,
            )
    for monitor_id, row in rows.items():
        if monitor_id in agents or row["status"] in monitors.FINAL:
            continue
        busy = in_flight.get(str(monitor_id), set())
        if Command.START_MONITOR in busy or (
            row["status"] == "STOPPING" and Command.STOP_MONITOR in busy
        ):
            continue  # its reply will say
        await _agent_gone(app, machine_id, row)
    return True


async def _agent_gone(app: web.Application, machine_id: str, row: Row) -> None:
    """A monitor the manager runs no agent for: asks the manager what became of it."""
    settings = app[SETTINGS]
    try:
        reply = await app[CONTROL].command(
            machine_id, protocol.get_status(str(row["id"])), settings.status_wait_s
        )
    except MachineUnavailable:
        return
    r = protocol.parse_reply(reply)
    status, was = r.monitor_status, row["status"]
    if r.ok:
        if status == MonitorStatus.RUNNING:  # it came up meanwhile: the next round sees it
            return
        if status not in (MonitorStatus.STOPPED, MonitorStatus.ERROR):
            return  # still starting
        if was == "STOPPING" and status == MonitorStatus.STOPPED:
            await _move(app, row["id"], "STOPPED", ("STOPPING",))
        elif was == "STARTING" and status == MonitorStatus.ERROR:
            await _move(
                app,
                row["id"],
                "FAILED_TO_START",
                ("STARTING",),
                error_code=ErrorCode.AGENT_START_FAILED,
                error_message=_text(r.error_message),
            )
        else:  # its MONITOR_STATUS was lost, or the START reply was
            await _move(
                app,
                row["id"],
                str(status),
                error_message=_text(r.error_message)
                or "the agent exited (found by reconciliation)",
            )
        return
    if r.error_code != ErrorCode.MONITOR_NOT_FOUND:
        return
    age = (datetime.now(UTC) - row["create_time"]).total_seconds()
    if was == "STOPPING":
        await _move(app, row["id"], "STOPPED", ("STOPPING",))
    elif was == "STARTING" and age > settings.start_wait_s:
        await _move(
            app,
            row["id"],
            "FAILED_TO_START",
            ("STARTING",),
            error_code=ErrorCode.AGENT_START_FAILED,
            error_message="the manager has no record of this monitor: START never "
            "reached it, or it restarted since",
        )
    elif was == "RUNNING":
        await _move(
            app,
            row["id"],
            "ERROR",
            ("RUNNING",),
            error_code=ErrorCode.MONITOR_NOT_FOUND,
            error_message="the agent is gone: the manager has no record of this "
            "monitor (it restarted since)",
        )
