"""The backend's PostgreSQL: the configured DSN or the embedded server, migrated, pooled.

For ``create_app``, as one cleanup context::

    async def pg_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_pool(app[SETTINGS]) as pool:
            app[PG_POOL] = pool
            yield
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from backend.db.embedded import EmbeddedPostgres
from backend.db.migrate import migrate
from backend.settings import Settings

__all__ = ["database_dsn", "open_pool"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def database_dsn(settings: Settings) -> AsyncIterator[str]:
    """settings.database_dsn; without one, the embedded server's, running for the context.

    The embedded server keeps its files in ``<data_dir>/postgres`` and is stopped (fast
    shutdown) when the context ends.
    """
    if settings.database_dsn:
        yield settings.database_dsn
        return
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    dsn = await asyncio.to_thread(server.start)
    try:
        yield dsn
    finally:
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def open_pool(
    settings: Settings, *, min_size: int = 2, max_size: int = 10, timeout_s: float = 30.0
) -> AsyncIterator[AsyncConnectionPool[AsyncConnection]]:
    """A pool on the migrated database, for as long as the context lasts.

    Connections come out of ``pool.connection()`` outside a transaction; the pool commits
    when the block ends normally and rolls back when it raises.
    """
    async with database_dsn(settings) as dsn:
        async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
            applied = await migrate(conn)
        if applied:
            log.info("applied database migrations %s", applied)
        pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, timeout=timeout_s, open=False,
            name="xputrace",
        )  # fmt: skip
        await pool.open(wait=True, timeout=timeout_s)
        try:
            yield pool
        finally:
            await pool.close()
