"""Stopping a job: STOP_JOB to its machine's manager (SIGTERM, SIGKILL after
settings.job_stop_grace_s), the outcome applied as its end (backend.job_events).

Who may: admins any job; operators the jobs of a Unix account an admin granted them (PATCH
/api/v1/users/{id} unix_accounts), checked here against the account the manager reported and
again by the manager against the process itself. The manager stops only processes it knows as
AI jobs, never pid 1 nor the platform's own; its refusal is answered as it says.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from backend import job_events
from backend.control import MachineUnavailable, NoReply
from backend.errors import ApiError, Conflict, PermissionDenied, Unavailable
from backend.repo import job_ranks, jobs, users
from backend.roles import Caller
from backend.typedefs import CONTROL, DB, SETTINGS
from xpucore import protocol
from xpucore.job_wire import END_STATUSES, JobEnd, JobKey
from xpucore.protocol import ErrorCode

__all__ = ["StopFailed", "stop_job"]

log = logging.getLogger(__name__)


class StopFailed(ApiError):
    """The manager could not stop the process (it did not end after SIGKILL)."""

    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str) -> None:
        ApiError.__init__(self, message)


async def _allowed(conn: Any, caller: Caller, row: dict[str, Any]) -> list[str] | None:
    if caller.role == "admin":
        return None
    user = await users.get_user(conn, caller.user_id)
    accounts = sorted(user.unix_accounts) if user is not None else []
    if row["unix_user"] not in accounts:
        raise PermissionDenied(
            f"{caller.email} may not stop job {row['id']}: it runs as "
            f"'{row['unix_user']}', not an account granted to them (PATCH "
            "/api/v1/users/{id} unix_accounts)"
        )
    return accounts


async def stop_job(app: web.Application, caller: Caller, row: dict[str, Any]) -> dict[str, Any]:
    """Stops the job (a jobs row; a distributed job: each of its live ranks, on every machine,
    at once); its row as it is after. Raises the ApiError to answer: 409 when it is not
    running, 403 when the caller or the manager refuses, 503 when its machine is not connected
    or did not answer (for a distributed job: the first rank's error, once all were tried)."""
    if row["kind"] == "distributed":
        return await _stop_ranks(app, caller, row)
    if row["status"] not in jobs.LIVE:
        raise Conflict(f"job {row['id']} is {row['status']}, not running")
    grace = app[SETTINGS].job_stop_grace_s
    async with app[DB].connection() as conn:
        allowed = await _allowed(conn, caller, row)
    cmd = protocol.stop_job(row["pid"], row["start_ticks"], grace, allowed)
    try:
        reply = await app[CONTROL].command(row["machine_id"], cmd, timeout_s=grace + 15.0)
    except NoReply as e:
        raise Unavailable(f"{e}; the job may still end (its status will say)") from None
    except MachineUnavailable as e:
        raise Unavailable(str(e)) from None
    r = protocol.parse_reply(reply)
    if not r.ok:
        message = r.message or "refused"
        if r.error_code == ErrorCode.PERMISSION_DENIED:
            raise PermissionDenied(message)
        if r.error_code == ErrorCode.TARGET_NOT_FOUND:
            raise Conflict(message)
        raise StopFailed(message)
    code, sig, end = reply.get("exit_code"), reply.get("signal"), reply.get("end_time")
    sent = reply.get("signals_sent")
    how = ", ".join(str(s) for s in sent) if isinstance(sent, list) and sent else "no signal"
    status = reply.get("job_status")
    status = status if status in END_STATUSES else "lost"
    ended = JobEnd(
        JobKey(row["pid"], row["start_ticks"]),
        str(status),
        code if isinstance(code, int) and 0 <= code <= 255 else None,
        sig if isinstance(sig, int) and 1 <= sig <= 64 else None,
        False,
        end if isinstance(end, int) and end >= 0 else None,
        f"stopped by {caller.email} ({how})"
        if status == "stopped"
        else f"{status} before {caller.email} stopped it",
    )
    async with app[DB].connection() as conn:
        await job_events.apply_end(conn, row["machine_id"], ended)
        after = await jobs.get_job(conn, row["id"])
    assert after is not None
    return after


async def _stop_ranks(app: web.Application, caller: Caller, row: dict[str, Any]) -> dict[str, Any]:
    async with app[DB].connection() as conn:
        members = [r for r in await job_ranks.ranks(conn, row["id"]) if r["status"] in jobs.LIVE]
        if not members:
            raise Conflict(f"job {row['id']} is {row['status']}: none of its ranks runs")
        rows = [await jobs.get_job(conn, r["job_id"]) for r in members]
    results = await asyncio.gather(
        *(stop_job(app, caller, r) for r in rows if r is not None), return_exceptions=True
    )
    for got in results:
        if isinstance(got, BaseException) and not isinstance(got, Conflict):
            raise got
    async with app[DB].connection() as conn:
        after = await jobs.get_job(conn, row["id"])
    assert after is not None
    return after
