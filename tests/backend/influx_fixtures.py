"""A real InfluxDB for tests: Debian's influxd (1.6.7), run as a child process.

Each server gets a generated config (meta, data and WAL in a temp dir, free ports for HTTP
and the RPC bind address, reporting off) and is ready once /ping answers. With ``auth=True``
it requires users: an admin (ADMIN) is created first, and ``query`` runs as it. Tests that
need InfluxDB skip, saying so, where influxd is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

INFLUXD = shutil.which("influxd")
ADMIN = ("admin", "admin-password")


class InfluxServer:
    def __init__(self, root: Path, auth: bool = False) -> None:
        assert INFLUXD is not None
        self.root = root
        self.auth = auth
        self.port, self.rpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "influxdb.conf"
        self.config.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  auth-enabled = {str(auth).lower()}
[continuous_queries]
  enabled = false
""")
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin = False

    def start(self, timeout_s: float = 30.0) -> None:
        with (self.root / "influxd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(INFLUXD), "-config", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"influxd exited ({self.proc.returncode}): "
                    + (self.root / "influxd.log").read_text()[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 204:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)  # polling /ping with a deadline
        else:
            raise RuntimeError("influxd did not answer /ping in time")
        if self.auth and not self._admin:
            # the first user, an admin, may be created without credentials
            self.query(
                f"CREATE USER {ADMIN[0]} WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES",
                method="POST",
                as_user=None,
            )
            self._admin = True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def query(
        self,
        q: str,
        db: str | None = None,
        method: str = "GET",
        as_user: tuple[str, str] | None = ADMIN,
    ) -> list[dict[str, Any]]:
        """Series of one statement (epoch ns); raises on an error. With auth, as as_user."""
        import json

        params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
        data = urllib.parse.urlencode(params)
        if method == "POST":
            req = urllib.request.Request(f"{self.url}/query", data=data.encode(), method="POST")
        else:
            req = urllib.request.Request(f"{self.url}/query?{data}")
        if self.auth and as_user is not None:
            token = base64.b64encode(":".join(as_user).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        res = body["results"][0]
        if "error" in res:
            raise RuntimeError(f"{q}: {res['error']}")
        return list(res.get("series", []))

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.query(f'CREATE DATABASE "{name}"', method="POST")
        return name


def need_influxd() -> None:
    if INFLUXD is None:
        pytest.skip("influxd is not installed (apt-get install influxdb; .ci/run does)")


def start_server(auth: bool = False) -> tuple[InfluxServer, tempfile.TemporaryDirectory[str]]:
    need_influxd()
    tmp = tempfile.TemporaryDirectory(prefix="xputrace-influx-")
    server = InfluxServer(Path(tmp.name), auth)
    try:
        server.start()
    except BaseException:
        server.stop()
        tmp.cleanup()
        raise
    return server, tmp


@contextlib.contextmanager
def running_server(auth: bool = False) -> Iterator[InfluxServer]:
    """An influxd of its own for the with block, stopped and removed after."""
    server, tmp = start_server(auth)
    try:
        yield server
    finally:
        server.stop()
        tmp.cleanup()


@pytest.fixture(scope="session")
def influx_server() -> Iterator[InfluxServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[str]:
    """A new database on the session's InfluxDB, dropped after the test."""
    name = influx_server.new_database()
    yield name
    influx_server.query(f'DROP DATABASE "{name}"', method="POST")


@pytest.fixture
def own_influx() -> Iterator[InfluxServer]:
    """An InfluxDB of the test's own (to stop and start)."""
    with running_server() as server:
        yield server
