"""The step window through a job trace (issue #14 section 4), as root: POST :trace with
window {function: step, skip: 3, count: 2} on a real Python training loop calling libcudart
(tests/workloads/python_steps.py). The job trace ends by itself when the window closes (its
rank's monitor STOPPED saying so), and the trace holds exactly the calls of the 4th and 5th
step calls: cudaMalloc(1003) x3, cudaMalloc(5003) after it, cudaMalloc(1004) x3."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.agent.procs import JsonLineProc
from tests.e2e.test_job_trace_e2e import (
    job_of,
    monitors_running,
    platform,
    rank_processes,
    start_trace,
    trace_file,
    trace_state,
)
from tests.platform import Platform
from tests.trace_tools.validate import validate_perfetto
from xpucore.protocol import StepWindow

__all__ = ["platform"]  # the fixture this module uses
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")
STEPS = Path(__file__).resolve().parents[1] / "workloads" / "python_steps.py"


async def test_a_job_trace_with_a_step_window_ends_by_itself(
    platform: Platform, cudart12: Path, tmp_path: Path
) -> None:
    p = platform
    work = JsonLineProc([sys.executable, str(STEPS), str(cudart12), "8", "2"])
    try:
        pid = work.read_json("ready")["pid"]
        jid = (await job_of(p, pid))["jobId"]
        window = {"function": "step", "skip": 3, "count": 2}
        t = await start_trace(p, jid, {"monitorType": "CUDA", "window": window})
        tid = t["jobTraceId"]
        assert t["window"] == window
        await monitors_running(p, jid, tid, 1)
        work.send_line("go")
        work.read_json("done")
        done = await trace_state(p, jid, tid, "DONE")  # nobody asked it to stop
    finally:
        work.kill()
    (rank,) = done["ranks"]
    assert rank["monitorStatus"] == "STOPPED"
    m = await p.monitor(rank["monitorId"])
    assert m["error_message"] == StepWindow("step", 3, 2).closed(), m
    assert done["complete"] is True and rank["eventsSent"] == 7
    _, data = await trace_file(p, done, tmp_path)
    s = validate_perfetto(data)
    (proc,) = rank_processes(s).values()
    threads = {u for u, tr in s.tracks.items() if tr.kind == "thread" and tr.parent == proc.uuid}
    calls = sorted((sl for sl in s.slices if sl.track_uuid in threads), key=lambda sl: sl.ts)
    assert [(sl.name, sl.args.get("bytes")) for sl in calls] == [
        *[("cudaMalloc", 1003)] * 3,
        ("cudaMalloc", 5003),
        *[("cudaMalloc", 1004)] * 3,
    ], [(sl.name, sl.args) for sl in calls]
