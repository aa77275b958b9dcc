"""A job trace whose events are not all stored in time says so (issue #14 section 4), as
root: while a test transaction holds event_batches in SHARE mode, ingest cannot store a batch
(its writer waits on the lock, as on a stalled database), so the CUDA monitor's agent sends
its events but none is stored. The job trace waits job_trace_events_wait_s for them, then
generates its trace anyway: complete false, and its stateReason names the rank and how many
of how many events are missing. Once the lock is gone the events are stored and the trace
is DONE."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from backend.typedefs import DB, INGEST
from tests.agent.procs import JsonLineProc
from tests.e2e.test_job_trace_e2e import (
    CUDA_CTYPES,
    ITERS,
    expected,
    job_of,
    monitors_running,
    start_trace,
    stored_starts,
    trace_state,
)
from tests.platform import Platform, eventually, open_platform

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")


@pytest.fixture
async def platform(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path
) -> AsyncIterator[Platform]:
    async with open_platform(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        build_dir / "xputrace-agent",
        job_trace_events_wait_s=1.0,
    ) as p:
        yield p


def generated(p: Platform, jid: str, tid: str) -> Callable[[], Awaitable[Any]]:
    async def check() -> Any:
        t = await p.get(f"/api/v1/jobs/{jid}/traces/{tid}")
        assert t["state"] != "FAILED", t
        return t if t["state"] in ("GENERATING", "DONE") else None

    return check


async def test_events_not_stored_in_time_are_reported(platform: Platform, cudart12: Path) -> None:
    p = platform
    work = JsonLineProc([sys.executable, str(CUDA_CTYPES), str(cudart12), str(ITERS)])
    try:
        pid = work.read_json("ready")["pid"]
        jid = (await job_of(p, pid))["jobId"]
        tid = (await start_trace(p, jid, {"monitorType": "CUDA"}))["jobTraceId"]
        await monitors_running(p, jid, tid, 1)
        host = (await p.machine())["hostname"]
        async with p.client.app[DB].connection() as lock, lock.transaction():
            await lock.execute("LOCK TABLE event_batches IN SHARE MODE")
            work.send_line("go")
            work.read_json("done")
            r = await p.client.post(f"/api/v1/jobs/{jid}/traces/{tid}:stop", headers=p.auth)
            assert r.status == 202, await r.text()
            # generated without the events: GENERATING, or already DONE (no event to read)
            t = await eventually(generated(p, jid, tid), "job trace generated")
            (rank,) = t["ranks"]
            sent = rank["eventsSent"]
            assert sent >= sum(expected().values())
            assert (t["complete"], rank["eventsStored"]) == (False, 0)
            assert t["stateReason"].endswith(
                f"; events missing: rank 0 ({host}): {sent} of {sent} events not stored"
            )
        done = await trace_state(p, jid, tid, "DONE")  # what it read once the lock was gone
    finally:
        work.kill()
    assert done["complete"] is False  # as it was when the trace was generated
    assert done["stateReason"] == (
        f"the trace is generated; events missing: rank 0 ({host}): {sent} of {sent} events "
        "not stored"
    )
    await p.client.app[INGEST].flushed()
    assert len(await stored_starts(p, rank["monitorId"])) == sent  # stored late, once each
