"""The backend process killed with SIGKILL while an agent sends, then started again: every
call the workload made is stored exactly once. The agent holds each batch until the ingest
acknowledges it (after its COPY committed) and resends what was not acknowledged; the
ingest skips batches it already stored."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest
import zmq

from manager import keys as manager_keys
from tests.agent.procs import Agent
from tests.backend.backend_proc import BackendProcess, settings_env
from tests.backend.test_ingest_restart import run_workload
from tests.pg_fixtures import backend_settings, free_tcp_endpoint

pytestmark = pytest.mark.bpf

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


MONITOR = "7d9b8a3c-1111-4222-8333-444455556666"


class Calls:
    """Calls made by workload runs in a thread, and a way to wait for more of them."""

    def __init__(self) -> None:
        self.made = 0
        self.changed = threading.Condition()

    def add(self, n: int) -> None:
        with self.changed:
            self.made += n
            self.changed.notify_all()

    def wait_for(self, n: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.made >= n, DEADLINE_S)


def stored(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT (ts, tid)) FROM events").fetchone()
    assert row is not None
    return row[0], row[1]


def wait_stored(dsn: str, more_than: int) -> int:
    deadline = time.monotonic() + DEADLINE_S
    while (n := stored(dsn)[0]) <= more_than:
        assert time.monotonic() < deadline, f"no events stored beyond {more_than}"
        time.sleep(0.02)  # rows appear in another process's database: poll
    return n


def test_backend_sigkill_mid_stream_loses_nothing(
    build_dir: Path, cudart12: Path, migrated_dsn: str, tmp_path: Path
) -> None:
    port = int(free_tcp_endpoint().rsplit(":", 1)[1])
    settings = backend_settings(migrated_dsn, tmp_path, port=port)
    backend = BackendProcess(settings_env(settings))
    # the agent's key is enrolled as a manager's would be; the backend's is made at its start
    settings.enrolled_dir.mkdir(parents=True)
    pub, secret = manager_keys.generate(tmp_path / "agent")
    shutil.copy(pub, settings.enrolled_dir / "agent.key")
    agent_public, agent_secret = zmq.auth.load_certificate(str(secret))
    calls = Calls()
    running, flowing = threading.Event(), threading.Event()
    running.set()
    flowing.set()

    def workload() -> None:
        while running.is_set():
            if flowing.wait(0.1):
                calls.add(run_workload(build_dir, 2, 1000))

    agent = None
    thread = threading.Thread(target=workload)
    try:
        backend.start()
        # the ingest believes a key only for its machine's live monitors: bind this key to
        # the machine the agent names, as that machine's first hello would, and make its
        # monitor RUNNING
        with psycopg.connect(migrated_dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO machines (id, public_key) VALUES ('testmachine', %s)",
                (agent_public.decode(),),
            )
            conn.execute(
                "INSERT INTO monitors (id, machine_id, monitor_type, status) "
                "VALUES (%s, 'testmachine', 'CUDA', 'RUNNING')",
                (MONITOR,),
            )
        server_public, _ = zmq.auth.load_certificate(str(settings.keys_dir / "backend.key"))
        keyfile = tmp_path / "agent.keys"
        keyfile.write_text(
            f"server_public_key={server_public.decode()}\n"
            f"public_key={agent_public.decode()}\n"
            f"secret_key={agent_secret.decode()}\n"
        )
        agent = Agent(
            build_dir,
            None,
            "--target-library",
            str(cudart12),
            "--target-comm",
            "cuda_calls",
            "--backend-zmq-endpoint",
            settings.ingest_endpoint,
            "--curve-keyfile",
            str(keyfile),
            "--batch-events",
            "256",
            "--send-hwm",
            "1024",
            "--flush-ms",
            "10",
            "--resend-ms",
            "100",
            monitor_id=MONITOR,
        )
        thread.start()
        before_kill = wait_stored(migrated_dsn, 0)
        backend.kill()  # mid-stream: no flush, no goodbye; an open COPY is rolled back
        calls.wait_for(calls.made + 4000)  # and calls go on with nobody listening
        flowing.clear()  # (no more than the agent can hold while the backend starts)
        backend.start()
        flowing.set()
        wait_stored(migrated_dsn, stored(migrated_dsn)[0])  # ingest is taking batches again
        running.clear()
        thread.join(DEADLINE_S)
        cap = agent.stop(list)  # returns once every batch is acknowledged
    finally:
        running.clear()
        if thread.is_alive():
            thread.join(DEADLINE_S)
        if agent is not None:
            agent.kill()
        backend.stop()
    assert cap.returncode == 0, cap.stderr
    assert cap.stats["send_drops"] == 0 and cap.stats["kernel_drops"] == 0, cap.stats
    assert cap.stats["resent_batches"] > 0, cap.stats  # some batches were in flight at the kill
    assert 0 < before_kill < calls.made
    assert cap.stats["events"] == calls.made
    assert stored(migrated_dsn) == (calls.made, calls.made)  # every call once
