"""Domain errors and the middleware that answers them with the seed's error body.

Body: {"error": {"code": <http status>, "message": "...", "status": "NOT_FOUND"}}
(seeds/003, part 1). Anything unexpected is logged with its traceback and
answered with a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from psycopg_pool import PoolTimeout

__all__ = [
    "AgentStopFailed",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "DeadlineExceeded",
    "InsufficientStorage",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "error_body",
    "error_middleware",
]

log = logging.getLogger(__name__)


class ApiError(Exception):
    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}


class BadRequest(ApiError):
    """A request that cannot be served as sent; the message names the field."""

    http_status = 400
    status = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class Unauthorized(ApiError):
    http_status = 401
    status = "UNAUTHENTICATED"


class PermissionDenied(ApiError):
    """Authenticated, but the caller's role does not allow it (or registration is closed)."""

    http_status = 403
    status = "PERMISSION_DENIED"


class TooManyRequests(ApiError):
    """A rate limit; Retry-After says in how many seconds to try again."""

    http_status = 429
    status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}


class QuotaExceeded(ApiError):
    """A per-user quota (settings.max_*_per_user) is reached; the message names it."""

    http_status = 429
    status = "RESOURCE_EXHAUSTED"


class InsufficientStorage(ApiError):
    """The database volume is nearly full (settings.database_full_percent): nothing that
    would store more is started."""

    http_status = 507
    status = "RESOURCE_EXHAUSTED"


class Unavailable(ApiError):
    """A service the answer needs is down or busy; with retry_after_s, a Retry-After."""

    http_status = 503
    status = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        if retry_after_s is not None:
            self.headers = {"Retry-After": str(retry_after_s)}


class DeadlineExceeded(ApiError):
    """A query ran past its time (statement_timeout) and was canceled."""

    http_status = 504
    status = "DEADLINE_EXCEEDED"


class NotFound(ApiError):
    http_status = 404
    status = "NOT_FOUND"


class Conflict(ApiError):
    http_status = 409
    status = "FAILED_PRECONDITION"


class AlreadyExists(ApiError):
    """The resource a request would create is there already (a taken e-mail)."""

    http_status = 409
    status = "ALREADY_EXISTS"


# gRPC's names (google.rpc.Code) for the HTTP errors aiohttp raises itself. 405: the path
# exists, the method is not implemented on it.
_HTTP_STATUS = {
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Retry-After of a 503 for a database pool that had no connection free in time
POOL_RETRY_AFTER_S = 2


class AgentStopFailed(ApiError):
    """The machine's manager could not stop the agent (AGENT_STOP_FAILED): it may still run."""

    http_status = 500
    status = "INTERNAL"


def error_body(http_status: int, status: str, message: str) -> dict[str, object]:
    return {"error": {"code": http_status, "message": message, "status": status}}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return web.json_response(
            error_body(e.http_status, e.status, e.message),
            status=e.http_status,
            headers=e.headers or None,
        )
    except PoolTimeout:  # every connection busy for as long as the pool lets a request wait
        log.warning("no database connection free for %s %s", request.method, request.path)
        return web.json_response(
            error_body(
                503,
                "UNAVAILABLE",
                "the database is busy: no connection was free in "
                f"time; retry in {POOL_RETRY_AFTER_S} s",
            ),
            status=503,
            headers={"Retry-After": str(POOL_RETRY_AFTER_S)},
        )
    except web.HTTPException as e:
        if e.status < 400:
            raise
        status = _HTTP_STATUS.get(e.status, "INVALID_ARGUMENT" if e.status < 500 else "INTERNAL")
        # keep what RFC 9110 requires of the answer, e.g. Allow on a 405
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response(
            error_body(e.status, status, e.reason), status=e.status, headers=headers
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return web.json_response(error_body(500, "INTERNAL", "internal error"), status=500)
