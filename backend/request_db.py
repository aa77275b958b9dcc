"""The database connections REST handlers query on: a pool of their own, bounded per
statement and per user, so one user's expensive requests cannot hold up everyone else's
(issue #20 section 3).

- Every statement runs under ``statement_timeout`` (settings.request_statement_timeout_s);
  one canceled for it answers 504 DEADLINE_EXCEEDED, saying what to narrow.
- One user holds at most ``db_connections_per_user`` of the ``request_pool_size``
  connections at once; one more request waits up to ``db_slot_wait_s`` for one of that
  user's to come back, then answers 429 RESOURCE_EXHAUSTED with Retry-After.
- No connection free within ``db_pool_wait_s``: 503 UNAVAILABLE with Retry-After.

Ingest, trace jobs, the reconciler, control events, the audit log, login and the token check
use the application's other pool (typedefs.DB); migrations and trace builds open connections
of their own. None of them is cut by the timeout or waits behind a user's requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from aiohttp import web
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backend.errors import DeadlineExceeded, Unavailable
from backend.ratelimit import ConcurrencyLimit, retry_after
from backend.settings import Settings
from backend.typedefs import CALLER, REQUEST_DB

__all__ = ["RequestDb", "connection"]

Conn = AsyncConnection[Any]


class RequestDb:
    def __init__(self, dsn: str, settings: Settings) -> None:
        self.timeout_s = settings.request_statement_timeout_s
        self.pool_wait_s = settings.db_pool_wait_s
        self.slots = ConcurrencyLimit(
            settings.db_connections_per_user, settings.db_slot_wait_s, "database queries"
        )
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=settings.request_pool_size,
            open=False,
            configure=self._configure,
            timeout=settings.db_pool_wait_s,
            kwargs={"autocommit": True},
        )

    async def _configure(self, conn: Conn) -> None:
        await conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            (f"{max(1, round(self.timeout_s * 1000))}ms",),
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, user: str, hint: str) -> AsyncIterator[Conn]:
        """A connection for one of user's requests (see the module doc for the errors);
        hint says what to narrow when a statement runs out of time."""
        async with self.slots.hold(user):
            try:
                async with self.pool.connection() as conn:
                    yield conn
            except PoolTimeout:
                seconds = retry_after(self.pool_wait_s)
                raise Unavailable(
                    f"the database is busy: no connection was free within "
                    f"{self.pool_wait_s:g} s; retry in {seconds} s",
                    seconds,
                ) from None
            except psycopg.errors.QueryCanceled:
                raise DeadlineExceeded(
                    f"the query ran past the {self.timeout_s:g} s "
                    f"statement timeout and was canceled; {hint}"
                ) from None


def _hint(request: web.Request) -> str:
    q = request.query
    parts = []
    if q.get("filter"):
        parts.append(
            "narrow filter: a shorter timestamp range, a monitor_id, machine_id or "
            "pid, fewer OR'ed matches and no leading '*' wildcards"
        )
    if q.get("page_size"):
        parts.append("ask for a smaller page_size")
    return "; ".join(parts) or "retry later, or ask for less at once"


def connection(request: web.Request) -> AbstractAsyncContextManager[Conn]:
    """A connection for this authenticated request, counted against its user."""
    return request.app[REQUEST_DB].connection(str(request[CALLER].user_id), _hint(request))
