"""create_app(settings): the backend's aiohttp application.

Each external resource (the PostgreSQL pool; later the ingest socket, the
control channel, trace workers) is its own cleanup_ctx generator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from backend.errors import error_middleware
from backend.handlers.auth import require_user
from backend.routes import setup_routes
from backend.settings import Settings
from backend.typedefs import DB, SETTINGS

__all__ = ["create_app"]


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.database_dsn:
        raise RuntimeError("database_dsn is not set (the embedded server is started by main)")
    pool = AsyncConnectionPool(settings.database_dsn, min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True})
    await pool.open(wait=True, timeout=30)
    app[DB] = pool
    yield
    await pool.close()


def create_app(settings: Settings) -> web.Application:
    if len(settings.jwt_secret) < 32:
        raise ValueError("jwt_secret must be at least 32 characters")
    app = web.Application(middlewares=[error_middleware, require_user],
                          client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(database_ctx)
    setup_routes(app)
    return app
