"""Versioned schema migrations: ``migrations/NNNN_<name>.sql``, applied in order, once each.

Each file runs in its own transaction together with its row in ``schema_migrations``
(version, name, SHA-256 of the file), so a failed migration leaves nothing behind. Running
``migrate`` again applies only what is missing; concurrent callers serialise on an advisory
lock. A file changed after it was applied, or a database that has versions this code does
not know, is an error: the backend refuses to start on a schema it cannot vouch for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

__all__ = ["MIGRATIONS_DIR", "Migration", "MigrationError", "load_migrations", "migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x78707574726D6967  # "xputrmig": pg_advisory_lock key of the migration runner


class MigrationError(RuntimeError):
    """The migration files or the database's migration history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in directory, by version; other files there are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith((".", "_")) or path.is_dir():
            continue
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_<name>.sql")
        version = int(m.group(1))
        if version == 0 or version in found:
            raise MigrationError(f"{path.name}: version {version} is zero or used twice")
        found[version] = Migration(version, m.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(conn: AsyncConnection[Any], directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Applies the missing migrations; returns their versions (empty when up to date).

    conn must not be inside a transaction; it is left outside one, in its autocommit mode.
    """
    migrations = load_migrations(directory)
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
            applied = dict(await cur.fetchall())
        known = {m.version: m for m in migrations}
        unknown = sorted(set(applied) - set(known))
        if unknown:
            raise MigrationError(f"the database has migrations this code does not know: {unknown}")
        for version, checksum in applied.items():
            if known[version].checksum != checksum:
                raise MigrationError(
                    f"migration {version:04d}_{known[version].name} changed after it was applied"
                )
        done = []
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            done.append(m.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        await conn.set_autocommit(autocommit)
