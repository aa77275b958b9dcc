"""The audit log of control actions: who asked for what, when, and what came of it.

A handler is marked with ``@audited("START_MONITOR")``. Its row is written before the handler
runs (result PENDING; an action whose row cannot be written is not taken) and settled by the
first of:

- ``await outcome(reply)`` from the service path, with the manager's reply: SUCCESS, or
  FAILURE with its error code (the request's context reaches background tasks the handler
  starts, so the START_MONITOR round trip settles the row of the POST that asked for it);
- the handler's answer: an error is FAILURE with its status (NOT_FOUND, INVALID_ARGUMENT, ...);
  a 2xx is SUCCESS, except 202 and ``deferred`` actions, which wait for their outcome.

Requests refused for their role never reach the handler: ``denied`` writes their row
(FAILURE, PERMISSION_DENIED). Admins read the log at GET /api/v1/auditLogs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from backend.errors import ApiError
from backend.repo import audit_logs
from backend.typedefs import CALLER, DB
from xpucore import protocol

__all__ = ["audited", "denied", "detail", "outcome"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _Entry:
    id: int
    db: AsyncConnectionPool


_current: ContextVar[_Entry | None] = ContextVar("xputrace_audit_entry", default=None)
_actions: dict[Handler, str] = {}


def _target(request: web.Request) -> str:
    return request.path.removeprefix("/api/v1/")


async def _open(request: web.Request, action: str) -> _Entry:
    caller, db = request[CALLER], request.app[DB]
    async with db.connection() as conn:
        entry_id = await audit_logs.open_entry(
            conn,
            caller.user_id,
            caller.email,
            caller.role,
            caller.address,
            action,
            _target(request),
        )
    return _Entry(entry_id, db)


async def _settle(
    entry: _Entry,
    *,
    result: str | None = None,
    http_status: int | None = None,
    error_code: str | None = None,
    message: str | None = None,
    target: str | None = None,
) -> None:
    async with entry.db.connection() as conn:
        await audit_logs.settle_entry(
            conn,
            entry.id,
            result=result,
            http_status=http_status,
            error_code=error_code,
            message=message,
            target=target,
        )


def audited(action: str, *, deferred: bool = False) -> Callable[[Handler], Handler]:
    """Writes a row of the audit log for every call of the handler (see the module doc)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def audited_handler(request: web.Request) -> web.StreamResponse:
            entry = await _open(request, action)
            token = _current.set(entry)
            try:
                response = await handler(request)
            except ApiError as e:
                await _settle(
                    entry,
                    result="FAILURE",
                    http_status=e.http_status,
                    error_code=e.status,
                    message=e.message,
                )
                raise
            except web.HTTPException as e:
                await _settle(entry, result="FAILURE", http_status=e.status, message=e.reason)
                raise
            except Exception:
                await _settle(entry, result="FAILURE", http_status=500, error_code="INTERNAL")
                raise
            finally:
                _current.reset(token)
            waits = deferred or response.status == 202
            await _settle(entry, result=None if waits else "SUCCESS", http_status=response.status)
            return response

        _actions[audited_handler] = action
        return audited_handler

    return wrap


async def denied(request: web.Request, handler: Handler, message: str) -> None:
    """Records a request refused for its role, when the handler is audited."""
    action = _actions.get(handler)
    if action is not None:
        await _settle(
            await _open(request, action),
            result="FAILURE",
            http_status=403,
            error_code="PERMISSION_DENIED",
            message=message,
        )


async def outcome(
    reply: Mapping[str, object], *, ok: bool | None = None, target: str | None = None
) -> None:
    """Settles the current action with the manager's reply (ok: whether it counts as done,
    by default whether its status is SUCCESS); target names what the action created."""
    entry = _current.get()
    if entry is None:
        log.debug("outcome %s outside an audited request", reply.get("status"))
        return
    r = protocol.parse_reply(reply)
    ok = r.ok if ok is None else ok
    code = None if ok else r.error_code
    await _settle(
        entry,
        result="SUCCESS" if ok else "FAILURE",
        error_code=code,
        message=None if ok else str(reply.get("message", "")),
        target=target,
    )


async def detail(message: str) -> None:
    """Adds what the current action did (e.g. which role was given) to its row."""
    entry = _current.get()
    if entry is not None:
        await _settle(entry, message=message)
