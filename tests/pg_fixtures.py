"""A real PostgreSQL for tests: one embedded server per session, a database per test.

Registered for every test by tests/conftest.py (pytest_plugins)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend.db.embedded import EmbeddedPostgres
from backend.db.migrate import migrate
from backend.settings import Settings
from tests.ports import free_port


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: as root the server runs as an unprivileged user, which
    # must be able to reach its files, and pytest's base folder is private to root.
    with tempfile.TemporaryDirectory(prefix="xputrace-pg-") as root:
        os.chmod(root, 0o755)
        server = EmbeddedPostgres(Path(root))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def new_database(server: EmbeddedPostgres) -> Iterator[str]:
    """DSN of a new, empty database on server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.dsn_for(name)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_dsn(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """DSN of a new, empty database, dropped after the test."""
    with new_database(pg_server) as dsn:
        yield dsn


@pytest.fixture
async def migrated_dsn(fresh_dsn: str) -> AsyncIterator[str]:
    """A new database with every migration applied."""
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        await migrate(conn)
    yield fresh_dsn


def free_tcp_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def backend_settings(dsn: str, tmp_path: Path, **kw: Any) -> Settings:
    """Settings for a backend under test: its own ports, key folders and data dir."""
    ingest = free_tcp_endpoint()
    values: dict[str, Any] = {
        "database_dsn": dsn,
        "jwt_secret": "t" * 40,
        "ingest_endpoint": ingest,
        "ingest_public_endpoint": ingest,
        "control_endpoint": free_tcp_endpoint(),
        "keys_dir": tmp_path / "keys",
        "enrolled_dir": tmp_path / "enrolled",
        "data_dir": tmp_path / "data",
        # the tests' synthetic events are dated in the past (tests/backend/trace_data.NOW):
        # retention would drop them at start; tests of retention set it
        "retention_days": 0,
    }
    values.update(kw)
    return Settings(**values)
