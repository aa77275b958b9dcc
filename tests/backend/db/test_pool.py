"""backend.db.pool: a configured DSN, or the embedded server started and stopped with the pool."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from backend.db.migrate import load_migrations
from backend.db.pool import open_pool
from backend.settings import Settings


async def test_pool_on_a_configured_dsn_is_migrated(fresh_dsn: str) -> None:
    settings = Settings(database_dsn=fresh_dsn)
    async with open_pool(settings, min_size=1, max_size=2) as pool, pool.connection() as conn:
        cur = await conn.execute("SELECT max(version) FROM schema_migrations")
        assert await cur.fetchone() == (load_migrations()[-1].version,)


async def test_without_a_dsn_the_embedded_server_runs_for_the_pool() -> None:
    with tempfile.TemporaryDirectory(prefix="xputrace-pool-") as d:
        os.chmod(d, 0o711)
        settings = Settings(data_dir=Path(d) / "backend")
        async with open_pool(settings, min_size=1, max_size=2) as pool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT current_database(), count(*) FROM users")
                assert await cur.fetchone() == ("xputrace", 0)
            pgdata = settings.data_dir / "postgres" / "data"
            assert (pgdata / "postmaster.pid").exists()
        assert not (pgdata / "postmaster.pid").exists()
