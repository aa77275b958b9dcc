"""The real xputrace-agent under the manager, driven over the CURVE control channel, against
the real libcudart: START → RUNNING → calls captured → STOP; the agent's own TARGET_NOT_FOUND;
kill -9 → MONITOR_STATUS ERROR. Needs root and BPF."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from manager.identity import Identity
from manager.settings import Settings
from tests.agent.procs import JsonLineProc
from tests.manager.backend_double import Backend
from tests.manager.conftest import MACHINE_ID, run, running
from tests.workloads import cuda_expect
from xpucore import abi

pytestmark = pytest.mark.bpf

MID = "123e4567-e89b-42d3-a456-426614174000"
MID2 = "223e4567-e89b-42d3-a456-426614174000"
IDENT = MACHINE_ID.encode()


def real_agent_settings(
    settings: Callable[..., Settings], build_dir: Path, tmp_path: Path
) -> Settings:
    """The manager's settings for the real agent, writing captures under tmp_path."""
    return settings(
        agent_path=build_dir / "xputrace-agent",
        agent_ready_timeout_s=30.0,
        agent_stop_timeout_s=20.0,
        capture_dir=tmp_path / "captures",
    )


@contextlib.asynccontextmanager
async def manager_of(
    s: Settings, identity: Identity, enrolled: Path, server_keypair: tuple[bytes, bytes]
) -> AsyncIterator[Backend]:
    """A backend double, and a manager registered with it (HELLO received)."""
    async with (
        Backend(enrolled, server_keypair[1]) as backend,
        running(dataclasses.replace(s, backend=backend.endpoint), identity),
    ):
        await backend.event("HELLO")
        yield backend


async def traced(
    backend: Backend, work: JsonLineProc, capture_dir: Path, start: dict[str, Any]
) -> tuple[dict[str, Any], list[abi.Batch]]:
    """Starts monitor MID with start (START_MONITOR's fields), runs the workload to done, stops
    the monitor; returns the workload's done line and what the agent wrote."""
    r = await backend.request(IDENT, {"command": "START_MONITOR", "monitor_id": MID, **start}, 60)
    assert r["status"] == "SUCCESS", r
    await asyncio.to_thread(work.send_line, "go")
    done = await asyncio.to_thread(work.read_json, "done")
    r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": MID}, 60)
    assert r["status"] == "SUCCESS", r
    with open(capture_dir / f"{MID}.bin", "rb") as f:
        return done, list(abi.iter_batches(f))


def test_start_running_stop_with_real_agent(
    build_dir: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
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
    no_cuda = subprocess.Popen(["sleep", "60"])
    s = real_agent_settings(settings, build_dir, tmp_path)

    async def go() -> None:
        ready = work.read_json("ready")
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            # the agent itself finds no CUDA library in `sleep`: exit 3 → TARGET_NOT_FOUND
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID2,
                    "monitor_type": "CUDA",
                    "target": {"pid": no_cuda.pid},
                },
                60,
            )
            assert (r["status"], r["error_code"]) == ("FAILURE", "TARGET_NOT_FOUND"), r
            assert "exited with code 3" in r["message"]

            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID,
                    "monitor_type": "CUDA",
                    "target": {"pid": ready["pid"], "comm": "cuda_calls"},
                    "config": {"sampling_rate": 1.0},
                    "machine_id": MACHINE_ID,
                },
                60,
            )
            assert r["status"] == "SUCCESS", r
            agent_pid = r["agent_pid"]
            st = await backend.request(IDENT, {"command": "GET_STATUS", "monitor_id": MID})
            assert (st["monitor_status"], st["agent_pid"]) == ("RUNNING", agent_pid)
            cmdline = Path(f"/proc/{agent_pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[0] == str(s.agent_path).encode()

            await asyncio.to_thread(work.send_line, "go")
            done = await asyncio.to_thread(work.read_json, "done")
            r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": MID}, 60)
            assert (r["status"], r["message"]) == ("SUCCESS", "Monitor stopped successfully.")
            st = await backend.request(IDENT, {"command": "GET_STATUS", "monitor_id": MID})
            assert st["monitor_status"] == "STOPPED"

            calls = cuda_expect.expected_calls(threads, iters)
            assert sum(done["calls"].values()) == len(calls)
            with open(s.capture_dir / f"{MID}.bin", "rb") as f:
                events = sum(len(b.events) for b in abi.iter_batches(f))
            assert events == len(calls)

            # a second run, killed with SIGKILL: the backend hears ERROR with a reason
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID,
                    "monitor_type": "CUDA",
                    "target": {"pid": ready["pid"]},
                },
                60,
            )
            assert r["status"] == "SUCCESS", r
            os.kill(r["agent_pid"], signal.SIGKILL)
            ev = await backend.event("MONITOR_STATUS", 30)
            assert (ev["monitor_id"], ev["monitor_status"]) == (MID, "ERROR")
            assert ev["error_message"].startswith("agent killed by signal SIGKILL")

    try:
        run(go(), 180)
    finally:
        work.send_line("exit")
        work.finish()
        work.kill()
        no_cuda.kill()
        no_cuda.wait()


def test_syscall_monitor_through_the_manager(
    build_dir: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    """A SYSCALL monitor with a syscall filter: the machine's SYSCALL tracer gets --syscalls
    from the checked target, and records exactly the workload's writes."""
    threads, iters = 2, 3
    work = JsonLineProc(
        [
            str(build_dir / "tests/workloads/syscall_calls"),
            "--threads",
            str(threads),
            "--iters",
            str(iters),
        ]
    )
    s = real_agent_settings(settings, build_dir, tmp_path)

    async def go() -> None:
        fds = work.read_json("fds")["fds"]
        ready = work.read_json("ready")
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID,
                    "monitor_type": "SYSCALL",
                    "target": {"pid": ready["pid"], "syscalls": ["write"]},
                },
                60,
            )
            assert r["status"] == "SUCCESS", r
            cmdline = Path(f"/proc/{r['agent_pid']}/cmdline").read_bytes().split(b"\0")
            assert b"--hub" in cmdline  # the monitor's flags went over its pipe
            await asyncio.to_thread(work.send_line, "go")
            await asyncio.to_thread(work.read_json, "done")
            r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": MID}, 60)
            assert r["status"] == "SUCCESS", r
        with open(s.capture_dir / f"{MID}.bin", "rb") as f:
            batches = list(abi.iter_batches(f))
        ev = np.concatenate([b.events for b in batches])
        assert {abi.function_name(int(f), "SYSCALL") for f in ev["func"]} == {"write"}
        mine = ev[np.isin(ev["tid"], ready["tids"])]
        assert len(mine) == iters * (1 + 2) and (mine["arg0"] == fds["null"]).all()

    try:
        run(go(), 120)
    finally:
        work.send_line("exit")
        work.finish()
        work.kill()


def test_acl_monitor_through_the_manager(
    build_dir: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    """An ACL monitor of one process: the agent hooks each CANN symbol where it is defined
    and records every call the Ascend stand-in workload makes; a library outside the ACL
    allow-list is refused before any agent starts."""
    threads, iters = 2, 1
    work = JsonLineProc(
        [
            str(build_dir / "tests/workloads/ascend/acl_calls"),
            "--threads",
            str(threads),
            "--iters",
            str(iters),
        ]
    )
    s = real_agent_settings(settings, build_dir, tmp_path)

    async def go() -> None:
        ready = work.read_json("ready")
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID2,
                    "monitor_type": "ACL",
                    "target": {"library_path": "/usr/lib/x86_64-linux-gnu/libc.so.6"},
                },
                60,
            )
            assert (r["status"], r["error_code"]) == ("FAILURE", "INVALID_CONFIG"), r
            done, batches = await traced(
                backend,
                work,
                s.capture_dir,
                {"monitor_type": "ACL", "target": {"pid": ready["pid"]}},
            )
        got = Counter(rec["func"] for b in batches for rec in abi.event_records(b))
        assert got == Counter({k: v for k, v in done["calls"].items()
                               if not k.endswith("GetWorkspaceSize")})  # fmt: skip

    try:
        run(go(), 120)
    finally:
        work.send_line("exit")
        work.finish()
        work.kill()


def test_python_stacks_through_the_manager(
    build_dir: Path,
    cudart12: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    """config.python_stacks: the manager reads the target's CPython (manager.python.target)
    and gives the agent its offsets; each call's stack comes back resolved. A process that
    is not CPython is refused with the reason, before any agent runs."""
    script = Path(__file__).resolve().parents[1] / "workloads/python_cuda_calls.py"
    work = JsonLineProc(["/usr/bin/python3.11", str(script), str(cudart12), "2"])
    sleeper = subprocess.Popen(["sleep", "60"])
    s = real_agent_settings(settings, build_dir, tmp_path)

    async def go() -> None:
        ready = work.read_json("ready")
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID2,
                    "monitor_type": "CUDA",
                    "target": {"pid": sleeper.pid},
                    "config": {"python_stacks": True},
                },
                60,
            )
            assert (r["status"], r["error_code"]) == ("FAILURE", "INVALID_CONFIG"), r
            assert r["message"].startswith("config.python_stacks: process ")
            assert "maps no python or libpython file" in r["message"]
            _, batches = await traced(
                backend,
                work,
                s.capture_dir,
                {
                    "monitor_type": "CUDA",
                    "target": {"pid": ready["pid"]},
                    "config": {"python_stacks": True},
                },
            )
        events = np.concatenate([b.events for b in batches if not b.stacks])
        frames = np.concatenate([b.events for b in batches if b.stacks])
        assert len(events) == 2 * 2 + 2  # 2 rounds of memcpy and sync, and 2 mallocs
        assert set(events["py_stack"].tolist()) == set(frames["stack_id"].tolist())
        assert {bytes(f).decode() for f in frames["function"]} >= {
            "copy",
            "step",
            "train",
            "allocate",
        }

    try:
        run(go(), 120)
    finally:
        work.send_line("exit")
        work.finish()
        work.kill()
        sleeper.kill()
        sleeper.wait()


def test_python_function_calls_through_the_manager(
    build_dir: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    """config.functions on a PYTHON monitor: the manager finds the interpreter's call hooks
    (manager.python.hooks) and the agent records every call of the functions named; names
    on another monitor type are refused."""
    script = Path(__file__).resolve().parents[1] / "workloads/python_calls.py"
    work = JsonLineProc(["/usr/bin/python3.11", str(script), "2"])
    s = real_agent_settings(settings, build_dir, tmp_path)

    async def go() -> None:
        ready = work.read_json("ready")
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID2,
                    "monitor_type": "CUDA",
                    "target": {"pid": ready["pid"]},
                    "config": {"functions": ["step"]},
                },
                60,
            )
            assert (r["status"], r["error_code"]) == ("FAILURE", "INVALID_CONFIG"), r
            assert r["message"].startswith("config.functions: not supported by CUDA"), r
            # target.comm on PYTHON checks the pid's name (it was passed to the agent,
            # which refuses --target-comm for PYTHON: FAILED_TO_START)
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID2,
                    "monitor_type": "PYTHON",
                    "target": {"pid": ready["pid"], "comm": "ruby"},
                },
                60,
            )
            assert (r["status"], r["error_code"]) == ("FAILURE", "TARGET_NOT_FOUND"), r
            assert r["message"] == f"target.comm: PID {ready['pid']} does not run 'ruby'", r
            _, batches = await traced(
                backend,
                work,
                s.capture_dir,
                {
                    "monitor_type": "PYTHON",
                    "target": {"pid": ready["pid"], "comm": "python3.11"},
                    "config": {"functions": ["step", "boom"], "sample_hz": 1},
                },
            )
        calls = [r for b in batches if not b.stacks for r in abi.event_records(b)
                 if r["func"] == "call"]  # fmt: skip
        assert Counter((r["tid"], r["incomplete"]) for r in calls) == Counter(
            {
                (ready["tid"], False): 2,
                (ready["tid"], True): 2,  # step; boom raises
                (ready["worker"], False): 2,
                (ready["worker"], True): 2,
            }
        )

    try:
        run(go(), 120)
    finally:
        work.send_line("exit")
        work.finish()
        work.kill()


def test_step_window_through_the_manager(
    build_dir: Path,
    cudart12: Path,
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    """config.window on a CUDA monitor: the manager finds the call hooks, the agent keeps
    exactly steps 3 and 4 (the 4th and 5th calls of step) and ends by itself, and the
    monitor is STOPPED (not ERROR) saying its window closed."""
    script = Path(__file__).resolve().parents[1] / "workloads/python_steps.py"
    work = JsonLineProc(["/usr/bin/python3.11", str(script), str(cudart12), "8", "2"])
    s = real_agent_settings(settings, build_dir, tmp_path)

    async def go() -> None:
        ready = work.read_json("ready")
        async with manager_of(s, identity, enrolled, server_keypair) as backend:
            r = await backend.request(
                IDENT,
                {
                    "command": "START_MONITOR",
                    "monitor_id": MID,
                    "monitor_type": "CUDA",
                    "target": {"pid": ready["pid"]},
                    "config": {"window": {"function": "step", "skip": 3, "count": 2}},
                },
                60,
            )
            assert r["status"] == "SUCCESS", r
            await asyncio.to_thread(work.send_line, "go")
            ev = await backend.event("MONITOR_STATUS", 30)
            assert (ev["monitor_id"], ev["monitor_status"], ev["exit_code"]) == (MID, "STOPPED", 6)
            assert ev["message"] == "its window closed: 2 calls of step after 3", ev
            assert ev.get("error_message") is None, ev
        with open(s.capture_dir / f"{MID}.bin", "rb") as f:
            events = np.concatenate([b.events for b in abi.iter_batches(f) if not b.stacks])
        sizes = [int(n) for n in events[events["ts_ns"].argsort()]["bytes"]]
        assert sizes == [1003] * 3 + [5003] + [1004] * 3

    try:
        run(go(), 120)
    finally:
        work.send_line("exit")
        work.finish()
        work.kill()
