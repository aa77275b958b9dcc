"""`make run`'s script, as a user meets it: up, then stopped by Ctrl-C or SIGTERM, cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="make run starts a manager: root")


@pytest.fixture
def var_dir() -> Iterator[Path]:
    """Its state folder (as /var/lib/xputrace would be), kept across the restarts of a test."""
    with tempfile.TemporaryDirectory(prefix="xputrace-var-") as d:
        yield Path(d)


def start(var: Path, build_dir: Path, log: Path) -> subprocess.Popen[str]:
    """The script, once the API answers and the manager has registered (its log says so)."""
    port, control, ingest = free_port(), free_port(), free_port()
    env = {**os.environ, "XPUTRACE_VAR_DIR": str(var), "XPUTRACE_PORT": str(port),
           "BUILD": str(build_dir), "PY": sys.executable,
           "XPUTRACE_CONTROL_ENDPOINT": f"tcp://127.0.0.1:{control}",
           "XPUTRACE_INGEST_ENDPOINT": f"tcp://127.0.0.1:{ingest}",
           "XPUTRACE_INGEST_PUBLIC_ENDPOINT": f"tcp://127.0.0.1:{ingest}"}  # fmt: skip
    # its own process group, as a shell gives a foreground job: a terminal's Ctrl-C reaches it
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run-platform")],
            env=env,
            text=True,
            stdout=f,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    url = f"http://127.0.0.1:{port}/api/v1/machines"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if "registered with the backend" in log.read_text():
            with pytest.raises(urllib.error.HTTPError, match="401"):  # up, asks for a token
                urllib.request.urlopen(url, timeout=5)
            return proc
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # it stops what it started
    proc.wait(timeout=60)
    raise TimeoutError(f"make run never came up: {log.read_text()}")


def stop(proc: subprocess.Popen[str], how: str, log: Path) -> str:
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "Error" not in out, out
    assert "xputrace stopped (status 0)" in out, out
    return out


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_make_run_stops_cleanly_and_keeps_its_data(
    var_dir: Path, build_dir: Path, how: str
) -> None:
    log = var_dir / "make-run.log"
    proc = start(var_dir, build_dir, log)
    out = stop(proc, how, log)
    assert "initialised embedded PostgreSQL data dir" in out
    pgdata = var_dir / "backend" / "postgres" / "data"
    assert not (pgdata / "postmaster.pid").exists()  # the server was shut down, not left
    assert "manager.daemon: shutting down" in out

    proc = start(var_dir, build_dir, log)  # again: the same data, no second initdb
    out = stop(proc, how, log)
    assert "initialised" not in out and "embedded PostgreSQL started" in out
    assert not (pgdata / "postmaster.pid").exists()
