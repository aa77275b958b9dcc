"""Route guards: the role a route needs, checked before its handler runs.

backend.routes wraps every authenticated handler with ``requires(role, handler)``; a caller
whose role is below it gets 403 PERMISSION_DENIED (and, for an audited action, a row in the
audit log). ``required_role`` tells the OpenAPI document which role each route needs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from backend import audit
from backend.errors import PermissionDenied
from backend.roles import Role, allows
from backend.typedefs import CALLER

__all__ = ["required_role", "requires"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_required: dict[object, Role] = {}


def requires(role: Role, handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        if not allows(caller.role, role):
            message = (
                f"{request.method} {request.path[:200]} needs the {role} role; "
                f"{caller.email} is a {caller.role}"
            )
            await audit.denied(request, handler, message)
            raise PermissionDenied(message)
        return await handler(request)

    _required[guarded] = role
    return guarded


def required_role(handler: Callable[..., object]) -> Role | None:
    return _required.get(handler)
