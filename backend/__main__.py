"""python -m backend: the backend, with an embedded PostgreSQL unless a DSN is configured.

Settings come from XPUTRACE_* variables and these flags; see backend/settings.py.
"""

from __future__ import annotations

import argparse
import logging
import secrets
from pathlib import Path

from backend.app import create_app, server_keys
from backend.db.embedded import EmbeddedPostgres
from backend.influx import InfluxSetupError
from backend.serve import serve
from backend.settings import Settings
from backend.tls import ssl_context


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("data_dir", args.data_dir))
        if v is not None
    }
    settings = Settings.from_env(**overrides)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("backend")
    try:
        tls = ssl_context(settings)
    except (ValueError, OSError) as e:
        log.error("%s", e)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.jwt_secret:
        # a secret that survives restarts, so issued tokens stay valid
        secret_file = settings.data_dir / "jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(48))
            secret_file.chmod(0o600)
        settings = Settings.from_env(**overrides, jwt_secret=secret_file.read_text().strip())
    embedded = None
    if not settings.database_dsn:
        settings.data_dir.chmod(0o711)  # the server's user traverses it to postgres/
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        settings = Settings.from_env(
            **overrides,
            jwt_secret=settings.jwt_secret,
            database_dsn=embedded.start(),
            database_data_dir=embedded.pgdata,
        )
        log.info("embedded PostgreSQL running in %s", embedded.root)
    public, _ = server_keys(settings)
    log.info(
        "backend CURVE public key: %s (managers need it; enroll their keys in %s)",
        public.decode(),
        settings.enrolled_dir,
    )
    try:
        serve(create_app(settings), settings.host, settings.port, ssl_context=tls)
    except InfluxSetupError as e:  # a refusal to start, said plainly
        log.error("%s", e)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
