"""AI jobs end to end (issue #14), as root: the real manager runs xputrace-procwatch; a process
that maps the real libcudart, started after the manager, appears in GET /api/v1/jobs, its exit
shows with its code, :stop ends a real job (SIGTERM, and SIGKILL when SIGTERM is ignored),
and a process that is not an AI job is never stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend import job_events
from backend.typedefs import CONTROL, DB
from tests.agent.procs import JsonLineProc
from tests.platform import Platform, eventually, open_platform
from xpucore import protocol

ROOT = Path(__file__).resolve().parents[2]
CUDA_CTYPES = ROOT / "tests" / "workloads" / "cuda_ctypes.py"
APPEAR_S = 3.0  # the issue asks 1 s; the deadline leaves room for a loaded test machine
# Maps libcudart, says ready, then waits; with "ignore", SIGTERM does nothing.
HOLD = (
    "import ctypes, json, os, signal, sys, time\n"
    "ctypes.CDLL(sys.argv[1])\n"
    "if sys.argv[2:] == ['ignore']:\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print(json.dumps({'ready': True, 'pid': os.getpid()}), flush=True)\n"
    "time.sleep(600)\n"
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")


@pytest.fixture
async def platform(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path
) -> AsyncIterator[Platform]:
    async with open_platform(
        aiohttp_client, migrated_dsn, tmp_path, build_dir / "xputrace-agent", job_stop_grace_s=1.0
    ) as p:
        yield p


async def _job(
    p: Platform, pid: int, timeout: float = APPEAR_S, status: str | None = None
) -> dict[str, Any]:
    async def listed() -> Any:
        jobs = (await p.get("/api/v1/jobs", filter=f"pid = {pid}"))["jobs"]
        return next((j for j in jobs if status is None or j["status"] == status), None)

    return await eventually(
        listed,
        f"job {pid} {status or 'listed'}",  # type: ignore[no-any-return]
        timeout,
    )


def _start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


async def test_a_cuda_job_appears_and_its_exit_shows(platform: Platform, cudart12: Path) -> None:
    p = platform
    work = JsonLineProc([sys.executable, str(CUDA_CTYPES), str(cudart12), "1"])
    try:
        pid = work.read_json("ready")["pid"]
        started = time.monotonic()
        job = await _job(p, pid)
        print(f"job listed {time.monotonic() - started:.2f} s after its ready line")
        assert job["status"] == "running" and job["nodeId"] == p.machine_id
        detail = await p.get(f"/api/v1/jobs/{job['jobId']}")
        assert "libcudart" in detail["runtimes"] and detail["accelerator"] == "cuda"
        assert detail["startTicks"] == _start_ticks(pid)
        assert str(CUDA_CTYPES) in detail["commandLine"]
        work.send_line("go")
        work.read_json("done")
        work.send_line("exit")
        assert work.proc.wait(30) == 0
        ended = time.monotonic()
        job = await _job(p, pid, status="exited")
        print(f"exit shown {time.monotonic() - ended:.2f} s after it")
        assert (job["exitCode"], job["signal"]) == (0, None)
        history = await p.get(f"/api/v1/jobs/{job['jobId']}/status-history")
        assert [(h["oldStatus"], h["newStatus"]) for h in history["items"]] == [
            (None, "running"),
            ("running", "exited"),
        ]
    finally:
        work.kill()


@pytest.mark.parametrize(
    ("mode", "signals", "sig"), [("term", "SIGTERM", 15), ("ignore", "SIGTERM, SIGKILL", 9)]
)
async def test_stop_ends_a_real_job(
    platform: Platform, cudart12: Path, mode: str, signals: str, sig: int
) -> None:
    p = platform
    work = JsonLineProc([sys.executable, "-c", HOLD, str(cudart12), mode])
    try:
        pid = work.read_json("ready")["pid"]
        job = await _job(p, pid)
        r = await p.client.post(f"/api/v1/jobs/{job['jobId']}:stop", headers=p.auth)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert (body["status"], body["signal"]) == ("stopped", sig)
        # the reply's reason, or the manager's report of the end when that came first
        assert body["statusReason"] in (
            f"stopped by ops@example.com ({signals})",
            f"stopped on request ({signals})",
        ), body
        assert work.proc.wait(10) == -sig
    finally:
        work.kill()


async def test_a_process_that_is_no_ai_job_is_never_stopped(platform: Platform) -> None:
    p = platform
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        ticks = _start_ticks(sleeper.pid)
        # the manager itself refuses: it is not a job it knows
        reply = await p.client.app[CONTROL].command(
            p.machine_id, protocol.stop_job(sleeper.pid, ticks, 1.0, None)
        )
        assert (reply["status"], reply["error_code"]) == ("FAILURE", "TARGET_NOT_FOUND")
        assert "not an AI job" in reply["message"]
        # a backend that believed it one (a forged report) is refused all the same
        forged = {
            "nodeId": p.machine_id,
            "pid": sleeper.pid,
            "startTicks": ticks,
            "startTime": int(time.time() * 1000),
            "status": "running",
            "jobName": "sleep",
            "coreDumped": False,
            "user": "root",
        }
        async with p.client.app[DB].connection() as conn:
            await job_events.apply_seen(conn, p.machine_id, forged)
        job = await _job(p, sleeper.pid)
        r = await p.client.post(f"/api/v1/jobs/{job['jobId']}:stop", headers=p.auth)
        assert r.status == 409 and "not an AI job" in (await r.json())["error"]["message"]
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_a_restarted_manager_settles_what_happened_meanwhile(
    platform: Platform, cudart12: Path
) -> None:
    """The manager is killed; one job goes on, the other ends unseen. The new manager's
    snapshot keeps the first running and the second becomes lost, once each."""
    p = platform
    works = [JsonLineProc([sys.executable, "-c", HOLD, str(cudart12)]) for _ in range(2)]
    try:
        alive, gone = (w.read_json("ready")["pid"] for w in works)
        jobs = [await _job(p, alive), await _job(p, gone)]
        p.kill_manager()
        works[1].kill()
        p.start_manager()
        lost = await _job(p, gone, timeout=30.0, status="lost")
        assert lost["endTime"] is None and "ended unseen" in lost["statusReason"]
        still = await _job(p, alive, timeout=30.0, status="running")
        assert still["jobId"] == jobs[0]["jobId"]
        history = await p.get(f"/api/v1/jobs/{jobs[1]['jobId']}/status-history")
        assert [h["newStatus"] for h in history["items"]][-1] == "lost"
        assert [h["newStatus"] for h in history["items"]].count("lost") == 1
    finally:
        for w in works:
            w.kill()
