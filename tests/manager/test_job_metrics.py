"""JobMetrics without procwatch: the running jobs the watcher holds are sampled each round
(processes that are no job, and ended jobs, are not), every interval, as JOB_METRICS that
pass the backend's check."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from manager.job_metrics import JobMetrics
from manager.jobs.table import ProcessKey, ProcessRecord
from manager.jobs.watch import Watcher
from manager.tasks import cancel_all
from tests.agent.procs import JsonLineProc
from xpucore.job_wire import check_metrics
from xpucore.protocol import Event

MACHINE = "m1"
BUSY = Path(__file__).resolve().parents[1] / "workloads" / "busy_alloc.py"


def _record(pid: int, job: bool) -> ProcessRecord:
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    rec = ProcessRecord(ProcessKey(MACHINE, pid, ticks), 1, None, "python3", "exec")
    rec.job = {"jobId": str(rec.key)} if job else None
    return rec


async def test_rounds_sample_the_running_jobs() -> None:
    work = JsonLineProc([sys.executable, str(BUSY), "16", "2", "1", "0"])
    other = JsonLineProc([sys.executable, str(BUSY), "16", "2", "1", "0"])
    try:
        for p in (work, other):
            p.read_json("ready")
        watcher = Watcher(Path("/nonexistent/xputrace-procwatch"), MACHINE)
        ended = _record(work.proc.pid, True)
        ended.status = "exited"
        for rec in (_record(work.proc.pid, True), _record(other.proc.pid, False)):
            watcher.table.live[rec.key.pid] = rec
        watcher.table.ended[ended.key._replace(start_ticks=1)] = ended
        sent: list[dict[str, Any]] = []
        got = asyncio.Event()

        def emit(msg: dict[str, Any]) -> None:
            sent.append(msg)
            if len(sent) == 3:
                got.set()

        metrics = JobMetrics(watcher, MACHINE, emit, 0.2)
        task = asyncio.create_task(metrics.run())
        try:
            await asyncio.wait_for(got.wait(), 10)
        finally:
            await cancel_all([task])
        for msg in sent:
            assert (msg["event"], msg["machine_id"], msg["interval_s"]) == (
                Event.JOB_METRICS,
                MACHINE,
                0.2,
            )
            (sample,) = check_metrics(msg)
            assert sample.key.pid == work.proc.pid
        times = [check_metrics(m)[0].time_ms for m in sent]
        assert times == sorted(times) and times[-1] - times[0] >= 300  # rounds 0.2 s apart
        assert check_metrics(sent[-1])[0].cpu_percent is not None
        work.kill()
        assert await metrics.round() == []  # ended: nothing to send
    finally:
        work.kill()
        other.kill()
