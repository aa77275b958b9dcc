"""Tracing a job end to end (issue #14 section 4), as root: the real manager discovers a
process calling the real libcudart (a CUDA job of one rank); POST :trace starts a CUDA monitor
on its rank, :stop stops it, and the generated trace has one process, "rank 0 (<host>)",
with every call the process made; when the rank exits first, the trace stops by itself. A
viewer is refused, an unknown job is 404, a bad monitorType a 400 naming it."""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.job_traces import clock_label
from backend.repo.machine_clocks import MachineClock
from backend.typedefs import DB
from tests.agent.procs import JsonLineProc
from tests.backend.accounts import add_user
from tests.platform import Platform, eventually, open_platform
from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import PerfettoSummary, validate_perfetto
from tests.workloads import cuda_expect

ROOT = Path(__file__).resolve().parents[2]
CUDA_CTYPES = ROOT / "tests" / "workloads" / "cuda_ctypes.py"
ITERS = 4

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")


@pytest.fixture
async def platform(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path
) -> AsyncIterator[Platform]:
    async with open_platform(
        aiohttp_client, migrated_dsn, tmp_path, build_dir / "xputrace-agent"
    ) as p:
        yield p


async def job_of(p: Platform, pid: int) -> dict[str, Any]:
    async def listed() -> Any:
        jobs = (await p.get("/api/v1/jobs", filter=f"pid = {pid}"))["jobs"]
        return next(iter(jobs), None)

    return await eventually(listed, f"job {pid} listed")  # type: ignore[no-any-return]


async def start_trace(p: Platform, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await p.client.post(f"/api/v1/jobs/{job_id}:trace", headers=p.auth, json=body)
    assert r.status == 202, await r.text()
    t: dict[str, Any] = await r.json()
    assert r.headers["Location"] == f"/api/v1/jobs/{job_id}/traces/{t['jobTraceId']}"
    return t


async def trace_state(p: Platform, job_id: str, tid: str, state: str) -> dict[str, Any]:
    async def check() -> Any:
        t = await p.get(f"/api/v1/jobs/{job_id}/traces/{tid}")
        assert t["state"] != "FAILED" or state == "FAILED", t
        return t if t["state"] == state else None

    return await eventually(check, f"job trace {state}")  # type: ignore[no-any-return]


async def monitors_running(p: Platform, job_id: str, tid: str, n: int) -> dict[str, Any]:
    async def check() -> Any:
        t = await p.get(f"/api/v1/jobs/{job_id}/traces/{tid}")
        statuses = [r["monitorStatus"] for r in t["ranks"]]
        assert "FAILED_TO_START" not in statuses, t
        return t if statuses == ["RUNNING"] * n else None

    return await eventually(check, f"{n} monitors RUNNING")  # type: ignore[no-any-return]


async def trace_file(p: Platform, t: dict[str, Any], tmp_path: Path) -> tuple[Path, bytes]:
    job = await p.get(f"/api/v1/traces/jobs/{t['traceJobId']}")
    assert job["status"] == "COMPLETED", job
    r = await p.client.get(job["download_url"], headers=p.auth)
    assert r.status == 200
    data = await r.read()
    path = tmp_path / "job.pftrace"
    path.write_bytes(data)
    return path, data


def rank_processes(s: PerfettoSummary) -> dict[str, Any]:
    return {t.name: t for t in s.tracks.values() if t.kind == "process"}


def calls_of(s: PerfettoSummary, process_uuid: int) -> Counter[str]:
    """The slices on the threads of one process: its calls, by function."""
    threads = {u for u, t in s.tracks.items() if t.kind == "thread" and t.parent == process_uuid}
    return Counter(sl.name for sl in s.slices if sl.track_uuid in threads)


def starts_of(s: PerfettoSummary, process_uuid: int) -> list[int]:
    threads = {u for u, t in s.tracks.items() if t.kind == "thread" and t.parent == process_uuid}
    return sorted(sl.ts for sl in s.slices if sl.track_uuid in threads)


async def stored_starts(p: Platform, monitor_id: str) -> list[int]:
    """The start of each event the monitor stored, as its machine stamped it."""
    async with p.client.app[DB].connection() as conn:
        cur = await conn.execute(
            "SELECT ts FROM events WHERE monitor_id = %s ORDER BY ts", (uuid.UUID(monitor_id),)
        )
        return [int(r[0]) for r in await cur.fetchall()]


def expected() -> Counter[str]:
    return Counter(c.symbol for c in cuda_expect.expected_ctypes_calls(ITERS))


async def test_a_job_trace_has_every_call_of_its_rank(
    platform: Platform, cudart12: Path, tmp_path: Path, trace_processor: Path
) -> None:
    p = platform
    work = JsonLineProc([sys.executable, str(CUDA_CTYPES), str(cudart12), str(ITERS)])
    try:
        pid = work.read_json("ready")["pid"]
        job = await job_of(p, pid)
        jid = job["jobId"]
        viewer = await add_user(p.client, p.auth, "view@example.com", "viewer")
        r = await p.client.post(f"/api/v1/jobs/{jid}:trace", headers=viewer,
                                json={"monitorType": "CUDA"})  # fmt: skip
        assert r.status == 403, await r.text()
        r = await p.client.post(f"/api/v1/jobs/{uuid.uuid4()}:trace", headers=p.auth,
                                json={"monitorType": "CUDA"})  # fmt: skip
        assert r.status == 404, await r.text()
        r = await p.client.post(f"/api/v1/jobs/{jid}:trace", headers=p.auth,
                                json={"monitorType": "OLLAMA"})  # fmt: skip
        assert r.status == 400
        assert (await r.json())["error"]["message"].startswith("monitorType: ")
        assert (await p.get(f"/api/v1/jobs/{jid}/traces"))["traces"] == []

        t = await start_trace(p, jid, {"monitorType": "CUDA", "name": "one rank"})
        tid = t["jobTraceId"]
        assert (t["state"], t["monitorType"], t["name"]) == ("RUNNING", "CUDA", "one rank")
        assert [(r["rank"], r["jobId"], r["pid"], r["nodeId"]) for r in t["ranks"]] == [
            (0, jid, pid, p.machine_id)
        ]
        await monitors_running(p, jid, tid, 1)
        work.send_line("go")
        assert work.read_json("done")["calls"] == dict(expected())

        r = await p.client.post(f"/api/v1/jobs/{jid}/traces/{tid}:stop", headers=viewer)
        assert r.status == 403
        r = await p.client.post(f"/api/v1/jobs/{jid}/traces/{tid}:stop", headers=p.auth)
        assert r.status == 202, await r.text()
        assert (await r.json())["state"] in ("STOPPING", "GENERATING", "DONE")
        done = await trace_state(p, jid, tid, "DONE")
        r = await p.client.post(f"/api/v1/jobs/{jid}/traces/{tid}:stop", headers=p.auth)
        assert r.status == 409
        assert done["ranks"][0]["monitorStatus"] == "STOPPED"
        assert done["stateReason"] == "the trace is generated"
        # every event the agent sent was stored before the trace was generated
        assert done["complete"] is True
        rank = done["ranks"][0]
        stored = await stored_starts(p, rank["monitorId"])
        assert rank["eventsSent"] == rank["eventsStored"] == len(stored) >= sum(expected().values())
        (clock,) = done["clockAlignment"]
        assert clock["nodeId"] == p.machine_id
        label = clock_label(p.machine_id, MachineClock(clock["offsetNs"], clock["errorNs"]))
        listed = (await p.get(f"/api/v1/jobs/{jid}/traces"))["traces"]
        assert [x["jobTraceId"] for x in listed] == [tid]

        path, data = await trace_file(p, done, tmp_path)
        s = validate_perfetto(data)
        host = (await p.machine())["hostname"]
        procs = rank_processes(s)
        assert list(procs) == [f"rank 0 ({host})"]
        proc = procs[f"rank 0 ({host})"]
        assert proc.pid == pid
        assert proc.labels == (label,)
        assert calls_of(s, proc.uuid) == expected()
        # each call where its machine's clock offset puts it on the backend's clock
        assert starts_of(s, proc.uuid) == [
            ts + clock["offsetNs"] for ts in await stored_starts(p, done["ranks"][0]["monitorId"])
        ]
        names = tp.query(path, "select name from process where pid = " + str(pid),
                         folder=trace_processor)[0]  # fmt: skip
        assert names == [[f"rank 0 ({host})"]]
    finally:
        work.kill()


async def test_a_job_trace_ends_by_itself_when_its_ranks_exit(
    platform: Platform, cudart12: Path, tmp_path: Path
) -> None:
    p = platform
    work = JsonLineProc([sys.executable, str(CUDA_CTYPES), str(cudart12), str(ITERS)])
    try:
        pid = work.read_json("ready")["pid"]
        jid = (await job_of(p, pid))["jobId"]
        tid = (await start_trace(p, jid, {"monitorType": "CUDA"}))["jobTraceId"]
        await monitors_running(p, jid, tid, 1)
        work.send_line("go")
        work.read_json("done")
        work.send_line("exit")
        assert work.proc.wait(30) == 0
        done = await trace_state(p, jid, tid, "DONE")
    finally:
        work.kill()
    assert done["stopTime"] is not None
    assert done["complete"] is True  # the count came with the agent's own MONITOR_STATUS
    (rank,) = done["ranks"]
    assert (
        rank["eventsSent"] == rank["eventsStored"] == len(await stored_starts(p, rank["monitorId"]))
    )
    _, data = await trace_file(p, done, tmp_path)
    s = validate_perfetto(data)
    (proc,) = rank_processes(s).values()
    assert calls_of(s, proc.uuid) == expected()
