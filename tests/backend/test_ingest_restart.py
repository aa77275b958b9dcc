"""A backend restart while an agent is sending loses nothing and stores nothing twice:
the agent holds each batch until the ingest acknowledges it, and resends."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zmq
from psycopg_pool import AsyncConnectionPool

from backend.control import curve_context
from backend.ingest import Ingest
from manager import keys as manager_keys
from tests.agent.procs import Agent, JsonLineProc
from tests.pg_fixtures import free_tcp_endpoint

pytestmark = pytest.mark.bpf


def run_workload(build: Path, threads: int, burst: int) -> int:
    """cuda_calls --burst, start to finish; the number of calls it made."""
    work = JsonLineProc(
        [
            str(build / "tests/workloads/cuda_calls"),
            "--threads",
            str(threads),
            "--iters",
            "1",
            "--burst",
            str(burst),
        ]
    )
    try:
        work.read_json("ready")
        work.send_line("go")
        made = sum(work.read_json("done")["calls"].values())
        work.send_line("exit")
        assert work.finish() == 0
        return made
    finally:
        work.kill()


async def test_ingest_restart_loses_nothing(
    build_dir: Path, cudart12: Path, migrated_dsn: str, tmp_path: Path
) -> None:
    enrolled = tmp_path / "enrolled"
    enrolled.mkdir()
    pub, secret = manager_keys.generate(tmp_path / "agent")
    shutil.copy(pub, enrolled / "agent.key")
    server_public, server_secret = zmq.curve_keypair()
    agent_public, agent_secret = zmq.auth.load_certificate(str(secret))
    keyfile = tmp_path / "agent.keys"
    keyfile.write_text(
        f"server_public_key={server_public.decode()}\n"
        f"public_key={agent_public.decode()}\n"
        f"secret_key={agent_secret.decode()}\n"
    )
    endpoint = free_tcp_endpoint()
    ctx, auth = curve_context(enrolled)
    pool = AsyncConnectionPool(
        migrated_dsn, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
    )
    await pool.open()

    def ingest() -> Ingest:
        return Ingest(ctx, endpoint, server_secret, server_public, pool)

    agent: Any = None
    try:
        first = ingest()
        await first.start()
        # blocking process I/O runs in threads: the ingest shares this event loop
        agent = await asyncio.to_thread(
            Agent,
            build_dir,
            None,
            "--target-library",
            str(cudart12),
            "--target-comm",
            "cuda_calls",
            "--backend-zmq-endpoint",
            endpoint,
            "--curve-keyfile",
            str(keyfile),
            "--batch-events",
            "64",
            "--flush-ms",
            "10",
            "--resend-ms",
            "100",
            monitor_id="7d9b8a3c-1111-4222-8333-444455556666",
        )
        made = await asyncio.to_thread(run_workload, build_dir, 2, 3000)
        await first.close()  # the backend goes away, whatever was in flight with it
        made += await asyncio.to_thread(run_workload, build_dir, 2, 2000)  # nobody listens
        second = ingest()
        await second.start()
        cap = await asyncio.to_thread(agent.stop, list)  # until every batch is acknowledged
        await second.flushed()
        await second.close()
    finally:
        if agent is not None:
            agent.kill()
        await pool.close()
        auth.stop()
        ctx.term()
    assert cap.returncode == 0, cap.stderr
    assert cap.stats["send_drops"] == 0 and cap.stats["kernel_drops"] == 0
    assert cap.stats["events"] == made == 2 * 5000
    with psycopg.connect(migrated_dsn) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT (ts, tid)) FROM events").fetchone()
    assert stored == (made, made)  # every call once: nothing lost, nothing twice
    assert first.stats.events + second.stats.events == made
