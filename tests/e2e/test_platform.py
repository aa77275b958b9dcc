"""The platform end to end, as root: backend (real PostgreSQL, CURVE control and ingest), a real
manager process, the real agent, a workload calling the real libcudart. REST in, events out."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backend.typedefs import INGEST
from tests.agent.procs import JsonLineProc
from tests.e2e.conftest import Platform, eventually
from tests.workloads import cuda_expect

pytestmark = pytest.mark.bpf


async def test_monitor_a_cuda_process_over_rest(platform: Platform, build_dir: Path) -> None:
    p = platform
    machine = await p.get(f"/api/v1/machines/{p.machine_id}")
    assert machine["status"] == "ACTIVE" and machine["agent_manager_status"] == "RUNNING"
    threads, iters = 2, 3
    work = JsonLineProc(
        [
            str(build_dir / "tests/workloads/cuda_calls"),
            "--threads",
            str(threads),
            "--iters",
            str(iters),
        ]
    )
    try:
        ready = work.read_json("ready")
        r = await p.client.post(
            f"/api/v1/machines/{p.machine_id}/monitors",
            headers=p.auth,
            json={"monitor_type": "CUDA", "target": {"pid": ready["pid"]}, "display_name": "e2e"},
        )
        assert r.status == 201, await r.text()
        mon = await r.json()
        assert mon["status"] == "STARTING"

        async def running() -> Any:
            m = await p.monitor(mon["id"])
            assert m["status"] in ("STARTING", "RUNNING"), m
            return m if m["status"] == "RUNNING" else None

        m = await eventually(running, "monitor RUNNING")
        agent_pid = m["agent_pid"]
        assert agent_pid and Path(f"/proc/{agent_pid}").exists()
        t0 = time.time_ns()
        work.send_line("go")
        work.read_json("done")
        t1 = time.time_ns()
        r = await p.client.delete(
            f"/api/v1/machines/{p.machine_id}/monitors/{mon['id']}", headers=p.auth
        )
        assert r.status == 204
        assert (
            not Path(f"/proc/{agent_pid}").exists()
            or "Z" in Path(f"/proc/{agent_pid}/stat").read_text().split(")")[1][:3]
        )
        stopped = await p.monitor(mon["id"])
        assert stopped["status"] == "STOPPED" and stopped["stop_time"]
        # a second DELETE changes nothing
        r = await p.client.delete(
            f"/api/v1/machines/{p.machine_id}/monitors/{mon['id']}", headers=p.auth
        )
        assert r.status == 204
        assert await p.monitor(mon["id"]) == stopped
        work.send_line("exit")
    finally:
        work.kill()

    calls = cuda_expect.expected_calls(threads, iters)
    await p.client.app[INGEST].flushed()

    async def all_stored() -> Any:
        got = await p.all_events(f"monitor_id = '{mon['id']}'")
        return got if len(got) >= len(calls) else None

    events = await eventually(all_stored, "events stored")
    assert len(events) == len(calls)
    assert Counter(e["event_type"] for e in events) == Counter(c.symbol for c in calls)
    assert {e["pid"] for e in events} == {ready["pid"]}
    assert {e["tid"] for e in events} == set(ready["tids"])
    assert all(e["ret"] == 35 and e["duration_ns"] > 0 for e in events)

    pid = ready["pid"]
    by_type = Counter(c.symbol for c in calls)
    cases = {
        f"pid = {pid}": len(calls),
        f"pid == {pid} AND event_type = 'cudaMemcpy'": by_type["cudaMemcpy"],
        "event_type = 'cudaMalloc' OR event_type = 'cudaFree'": by_type["cudaMalloc"]
        + by_type["cudaFree"],
        f"pid = {pid} AND NOT event_type = 'cudaMemcpy'": len(calls) - by_type["cudaMemcpy"],
        f"tid = {ready['tids'][0]}": len(calls) // 3,  # thread 0 makes 1 of 3 shares
        f"pid = {pid + 1}": 0,
    }
    for flt, n in cases.items():
        assert len(await p.all_events(flt)) == n, flt
    start = events[len(events) // 2]["timestamp"]
    later = await p.all_events(f"pid = {pid} AND timestamp >= '{start}'")
    assert 0 < len(later) < len(calls)
    assert all(e["timestamp"] >= start for e in later)
    window = await p.all_events(f"timestamp >= '{_rfc(t0)}' AND timestamp <= '{_rfc(t1)}'")
    assert len(window) == len(calls)
    # paging through everything, 7 at a time, yields each event exactly once
    paged = await p.all_events(f"pid = {pid}", page_size=7)
    keys = [(e["timestamp"], e["tid"], e["event_type"]) for e in paged]
    assert len(paged) == len(calls) and Counter(map(str, paged)) == Counter(map(str, events))
    assert keys == sorted(keys, key=lambda k: k[0])


def _rfc(ns: int) -> str:
    from backend.handlers.events import rfc3339_ns

    return rfc3339_ns(ns)


async def test_monitor_on_missing_pid_fails_to_start(platform: Platform) -> None:
    p = platform
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    r = await p.client.post(
        f"/api/v1/machines/{p.machine_id}/monitors",
        headers=p.auth,
        json={"monitor_type": "CUDA", "target": {"pid": pid}},
    )
    assert r.status == 201
    mon = await r.json()

    async def settled() -> Any:
        m = await p.monitor(mon["id"])
        return m if m["status"] != "STARTING" else None

    m = await eventually(settled, "monitor settled")
    assert m["status"] == "FAILED_TO_START"
    assert m["error_code"] == "TARGET_NOT_FOUND"
    assert str(pid) in m["error_message"]


async def test_killed_agent_turns_monitor_to_error(platform: Platform, build_dir: Path) -> None:
    p = platform
    work = JsonLineProc(
        [str(build_dir / "tests/workloads/cuda_calls"), "--threads", "1", "--iters", "1"]
    )
    try:
        ready = work.read_json("ready")
        r = await p.client.post(
            f"/api/v1/machines/{p.machine_id}/monitors",
            headers=p.auth,
            json={"monitor_type": "CUDA", "target": {"pid": ready["pid"]}},
        )
        mon = await r.json()

        async def running() -> Any:
            m = await p.monitor(mon["id"])
            return m if m["status"] == "RUNNING" else None

        m = await eventually(running, "monitor RUNNING")
        os.kill(m["agent_pid"], signal.SIGKILL)

        async def errored() -> Any:
            m = await p.monitor(mon["id"])
            return m if m["status"] == "ERROR" else None

        m = await eventually(errored, "monitor ERROR")
        assert "SIGKILL" in m["error_message"]
        assert m["stop_time"]
        # stopping it now changes nothing
        r = await p.client.delete(
            f"/api/v1/machines/{p.machine_id}/monitors/{mon['id']}", headers=p.auth
        )
        assert r.status == 204
        assert (await p.monitor(mon["id"]))["status"] == "ERROR"
    finally:
        work.kill()
