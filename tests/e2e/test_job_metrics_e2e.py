"""Process metrics and suspension end to end (issue #14), as root: the real manager samples a
real AI job (it maps the real libcudart) that spins a core and holds 150 MiB; its metrics reach
the API with CPU % above 0 and RSS close to what it holds; kill -STOP makes it suspended within
the sampling interval, kill -CONT running again, both in its status history."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.procs import JsonLineProc
from tests.platform import Platform, eventually, open_platform

ROOT = Path(__file__).resolve().parents[2]
BUSY = ROOT / "tests" / "workloads" / "busy_alloc.py"
INTERVAL_S = 0.5
MIB = 150
#: a move must show within the interval; the rest is slack for a loaded test machine
WITHIN_S = INTERVAL_S + 2.5

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
        manager_args=("--job-metrics-interval", str(INTERVAL_S)),
    ) as p:
        yield p


async def _status(p: Platform, jid: str, status: str, timeout: float) -> dict[str, Any]:
    async def check() -> Any:
        job = await p.get(f"/api/v1/jobs/{jid}")
        return job if job["status"] == status else None

    return await eventually(check, f"job {status}", timeout)  # type: ignore[no-any-return]


async def test_metrics_and_suspension_of_a_real_job(platform: Platform, cudart12: Path) -> None:
    p = platform
    work = JsonLineProc([sys.executable, str(BUSY), str(MIB), "3", "4", "0", str(cudart12)])
    try:
        pid = work.read_json("ready")["pid"]

        async def listed() -> Any:
            jobs = (await p.get("/api/v1/jobs", filter=f"pid = {pid}"))["jobs"]
            return jobs[0] if jobs else None

        jid = (await eventually(listed, f"job {pid} listed", 5.0))["jobId"]

        async def measured() -> Any:
            m = (await p.get(f"/api/v1/jobs/{jid}"))["latestMetrics"]
            return m if m is not None and m["cpuPercent"] is not None else None

        latest = await eventually(measured, "a sample with CPU %", 10.0)
        print("latest metrics:", latest)
        assert latest["cpuPercent"] > 0 and latest["state"] in ("R", "S")
        assert MIB << 20 <= latest["rssBytes"] <= (MIB + 64) << 20
        assert latest["threadCount"] == 3 and latest["openFiles"] >= 3 + 4
        assert latest["accelMemoryBytes"] is None
        body = await p.get(f"/api/v1/jobs/{jid}/process-metrics", interval="10s")
        assert body["source"] == "postgresql" and body["metrics"]
        assert sum(m["samples"] for m in body["metrics"]) >= 2
        assert max(m["rssBytes"] for m in body["metrics"]) >= MIB << 20
        assert any((m["cpuPercent"] or 0) > 0 for m in body["metrics"])

        os.kill(pid, signal.SIGSTOP)
        sent = time.monotonic()
        await _status(p, jid, "suspended", WITHIN_S)
        print(f"suspended shown {time.monotonic() - sent:.2f} s after SIGSTOP")
        os.kill(pid, signal.SIGCONT)
        sent = time.monotonic()
        await _status(p, jid, "running", WITHIN_S)
        print(f"running shown {time.monotonic() - sent:.2f} s after SIGCONT")
        history = (await p.get(f"/api/v1/jobs/{jid}/status-history"))["items"]
        assert [(h["oldStatus"], h["newStatus"]) for h in history] == [
            (None, "running"),
            ("running", "suspended"),
            ("suspended", "running"),
        ]
        assert history[1]["reason"] == f"stopped by a signal (state T in /proc/{pid}/stat)"
        work.send_line("exit")
        assert work.proc.wait(30) == 0
        await _status(p, jid, "exited", 5.0)
    finally:
        work.kill()
