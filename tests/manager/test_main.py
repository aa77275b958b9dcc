"""``python -m manager`` as a real process: registers, runs agents, and leaves none running
unsupervised when it is killed (PR_SET_PDEATHSIG) or restarted (the reaper)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from manager import identity
from tests.manager.backend_double import Backend
from tests.manager.conftest import RAW_ID
from tests.manager.procs import alive

ROOT = Path(__file__).resolve().parents[2]
MID = "123e4567-e89b-42d3-a456-426614174000"


def start_cmd() -> dict[str, object]:
    return {
        "command": "START_MONITOR",
        "monitor_id": MID,
        "monitor_type": "CUDA",
        "target": {"pid": os.getpid()},
        "backend_zmq_data_endpoint": "tcp://127.0.0.1:5556",
    }


async def wait_exit(p: subprocess.Popen[bytes], timeout: float = 20) -> int:
    return await asyncio.wait_for(asyncio.to_thread(p.wait), timeout)


async def wait_dead(pid: int, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while alive(pid):
        assert loop.time() < deadline, f"pid {pid} still running"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("pdeathsig", [True, False], ids=["pdeathsig", "reaper"])
def test_killed_manager_leaves_no_agent(
    manager_cmd: Callable[..., list[str]],
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    tmp_path: Path,
    pdeathsig: bool,
) -> None:
    extra = () if pdeathsig else ("--no-pdeathsig",)
    machine = identity.protected_id("xputrace", RAW_ID).encode()

    async def go() -> None:
        async with Backend(enrolled, server_keypair[1]) as backend:
            first = subprocess.Popen(manager_cmd(backend.endpoint, *extra), cwd=ROOT)
            try:
                hello = await backend.event("HELLO", 30)
                assert hello["machine_id"] == machine.decode()
                r = await backend.request(machine, start_cmd())
                assert r["status"] == "SUCCESS", r
                agent_pid = r["agent_pid"]
                first.kill()  # no chance to clean up
                assert await wait_exit(first) == -signal.SIGKILL
                if pdeathsig:
                    await wait_dead(agent_pid)  # the kernel sent it SIGTERM
                else:
                    await asyncio.sleep(0.5)
                    assert alive(agent_pid), "without pdeathsig the agent outlives the manager"
            finally:
                first.kill()
                first.wait()
            second = subprocess.Popen(manager_cmd(backend.endpoint, *extra), cwd=ROOT)
            try:
                hello = await backend.event("HELLO", 30)
                await wait_dead(agent_pid)  # the reaper stopped it before the manager dialed
                assert hello["active_monitors"] == []
                assert list((tmp_path / "run/agents").iterdir()) == []
                r = await backend.request(machine, {"command": "GET_STATUS", "monitor_id": MID})
                assert r["error_code"] == "MONITOR_NOT_FOUND"
                second.send_signal(signal.SIGTERM)
                assert await wait_exit(second) == 0
                bye = await backend.event("GOODBYE")
                assert bye["machine_id"] == machine.decode()
            finally:
                second.kill()
                second.wait()
        # SIGTERM, never SIGKILL. Possibly more than once: the kernel sends the parent-death
        # signal again each time the dying manager's threads hand the child on to one another
        signals = (tmp_path / "agent.json.signals").read_text().splitlines()
        assert signals and set(signals) == {"SIGTERM"}

    asyncio.run(asyncio.wait_for(go(), 90))


def test_second_manager_on_same_runtime_dir_exits(
    manager_cmd: Callable[..., list[str]], tmp_path: Path
) -> None:
    ep = "tcp://127.0.0.1:9"  # nothing listens; it keeps dialing
    first = subprocess.Popen(manager_cmd(ep), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        while "dialing" not in first.stderr.readline():
            assert first.poll() is None
        second = subprocess.run(
            manager_cmd(ep), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        assert "another manager is using" in second.stderr
    finally:
        first.terminate()
        first.wait(20)
        if first.stderr:
            first.stderr.close()
    assert first.returncode == 0


def test_sigusr1_prints_every_stack_and_keeps_running(
    manager_cmd: Callable[..., list[str]],
) -> None:
    """`kill -USR1` shows where a manager that does not stop is waiting, and stops nothing."""
    ep = "tcp://127.0.0.1:9"  # nothing listens; it keeps dialing
    p = subprocess.Popen(manager_cmd(ep), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        while "dialing" not in p.stderr.readline():
            assert p.poll() is None
        p.send_signal(signal.SIGUSR1)
        dump: list[str] = []
        # one block per thread; the main thread's ends at the module that runs the daemon
        while not dump or "manager/__main__.py" not in dump[-1]:
            line = p.stderr.readline()
            assert line, "stderr closed before the stack dump ended: " + "".join(dump)
            dump.append(line)
        text = "".join(dump)
        assert "(most recent call first)" in text and "asyncio/runners.py" in text, text
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(20)
        if p.stderr:
            p.stderr.close()
    assert p.returncode == 0
