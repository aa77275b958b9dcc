"""Tracing a distributed job end to end (issue #14 acceptance), as root: 4 ranks over 2
managers (two machines of their own on this host), real rank processes calling the wheel's
libcudart. :trace with CUDA starts 4 monitors, and the job's trace has 4 rank processes,
"rank N (host)", each with exactly the calls its rank made."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.e2e.test_distributed_jobs import WORLD, Cluster, cluster, launchers, master_env
from tests.e2e.test_job_trace_e2e import (
    calls_of,
    monitors_running,
    rank_processes,
    start_trace,
    trace_file,
    trace_state,
)
from tests.trace_tools.validate import validate_perfetto
from tests.workloads import cuda_expect

__all__ = ["cluster", "launchers"]  # the fixtures this module uses
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")


async def test_four_ranks_on_two_managers_one_trace(
    cluster: Cluster, cudart12: Path, tmp_path: Path
) -> None:
    c, p = cluster, cluster.p
    a, b = c.machines
    where = [a, a, b, b]
    addr, port = socket.gethostname(), 20_000 + os.getpid() % 40_000
    pids = [c.start_rank(where[r], r, master_env(r, addr, port), cudart12) for r in range(WORLD)]
    ((job, _),) = await c.distributed(pids, WORLD)
    jid = job["jobId"]
    t = await start_trace(p, jid, {"monitorType": "CUDA"})
    assert [(r["rank"], r["pid"], r["nodeId"]) for r in t["ranks"]] == [
        (r, pids[r], where[r]) for r in range(WORLD)
    ]
    await monitors_running(p, jid, t["jobTraceId"], WORLD)
    for r in range(WORLD):
        done = c.launchers[where[r]].send(pids[r])
        assert done["done"] is True
    r = await p.client.post(f"/api/v1/jobs/{jid}/traces/{t['jobTraceId']}:stop", headers=p.auth)
    assert r.status == 202, await r.text()
    done_trace = await trace_state(p, jid, t["jobTraceId"], "DONE")
    assert {x["nodeId"] for x in done_trace["clockAlignment"]} == {a, b}
    _, data = await trace_file(p, done_trace, tmp_path)
    s = validate_perfetto(data)
    hosts = {a: (await p.machine())["hostname"], b: "node-b"}
    procs = rank_processes(s)
    assert sorted(procs) == sorted(f"rank {r} ({hosts[where[r]]})" for r in range(WORLD))
    want = {c.symbol: 0 for c in cuda_expect.expected_ctypes_calls()}
    for c_ in cuda_expect.expected_ctypes_calls():
        want[c_.symbol] += 1
    for r in range(WORLD):
        proc = procs[f"rank {r} ({hosts[where[r]]})"]
        assert proc.pid == pids[r]
        assert dict(calls_of(s, proc.uuid)) == want
