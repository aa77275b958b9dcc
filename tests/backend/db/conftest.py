"""Database fixtures on the session's embedded server (``pg_server``, tests/backend/conftest.py).

``pg_dsn``: one fresh, migrated database for the whole session, for tests that keep to their
own rows (a monitor id of their own); ``fresh_dsn``/``migrated_dsn`` give a database per test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from backend.db.embedded import EmbeddedPostgres
from backend.db.migrate import migrate


async def _migrate(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn)


@pytest.fixture(scope="session")
def pg_dsn(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """DSN of a fresh database with every migration applied, shared by the session."""
    name = f"s_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.dsn_for(name)
    asyncio.run(_migrate(dsn))
    try:
        yield dsn
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
