"""Tracing a distributed job end to end (issue #14 acceptance), as root: 4 ranks over 2
managers (two machines of their own on this host), real rank processes calling the wheel's
libcudart. :trace with CUDA starts 4 monitors, and the job's trace has 4 rank processes,
"rank N (host)", each with exactly the calls its rank made."""

from __future__ import annotations

import os
import socket
from collections import Counter
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


async def test_a_rank_that_appears_while_tracing_is_traced_too(
    cluster: Cluster, cudart12: Path, tmp_path: Path
) -> None:
    """An elastic job: ranks 0 and 1 on two managers, traced; rank 2 starts meanwhile and gets
    its monitor (late), and the trace has its process with its calls."""
    c, p = cluster, cluster.p
    a, b = c.machines
    where, world = [a, b, a], 3
    addr, port = socket.gethostname(), 20_000 + (os.getpid() + 1) % 40_000
    env = [master_env(r, addr, port, world) for r in range(world)]
    pids = [c.start_rank(where[r], r, env[r], cudart12) for r in range(2)]
    ((job, _),) = await c.distributed(pids, 2)
    jid, tid = (
        job["jobId"],
        (await start_trace(p, job["jobId"], {"monitorType": "CUDA"}))["jobTraceId"],
    )
    await monitors_running(p, jid, tid, 2)
    pids.append(c.start_rank(where[2], 2, env[2], cudart12))
    t = await monitors_running(p, jid, tid, 3)
    assert [(r["rank"], r["pid"], r["nodeId"], r["late"]) for r in t["ranks"]] == [
        (0, pids[0], a, False),
        (1, pids[1], b, False),
        (2, pids[2], a, True),
    ]
    for r in range(world):
        assert c.launchers[where[r]].send(pids[r])["done"] is True
    r = await p.client.post(f"/api/v1/jobs/{jid}/traces/{tid}:stop", headers=p.auth)
    assert r.status == 202, await r.text()
    done = await trace_state(p, jid, tid, "DONE")
    assert done["complete"] is True
    _, data = await trace_file(p, done, tmp_path)
    s = validate_perfetto(data)
    hosts = {a: (await p.machine())["hostname"], b: "node-b"}
    procs = rank_processes(s)
    assert sorted(procs) == sorted(f"rank {r} ({hosts[where[r]]})" for r in range(world))
    late = procs[f"rank 2 ({hosts[a]})"]
    assert late.pid == pids[2]
    want = Counter(x.symbol for x in cuda_expect.expected_ctypes_calls())
    assert calls_of(s, late.uuid) == want
