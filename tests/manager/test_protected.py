"""The platform's own processes, pid 1 and kernel threads are never targets, whatever the
backend asks; refusals say what was refused, not what was found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from manager.protected import platform_process
from manager.settings import Settings
from manager.supervisor import Supervisor
from tests.manager.conftest import MACHINE_ID, run
from xpucore.protocol import CommandError, ErrorCode, StartMonitor, Target

DATA = "tcp://127.0.0.1:5556"


@contextmanager
def running(argv: list[str], cwd: Path | None = None) -> Iterator[int]:
    """argv running (it has exec'd: its /proc/<pid>/exe is argv's program) until the end."""
    with subprocess.Popen([*argv], cwd=cwd, stdout=subprocess.PIPE) as p:
        try:
            assert p.stdout is not None and p.stdout.readline() == b"up\n"
            yield p.pid
        finally:
            p.kill()


def exec_done(pid: int, program: Path) -> int:
    """pid once it runs program (between fork and exec /proc shows the parent, or nothing)."""
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{pid}/exe") != str(program):
        assert time.monotonic() < deadline, f"{pid} never ran {program}"
        time.sleep(0.01)
    return pid


def test_the_platform_is_recognised(tmp_path: Path) -> None:
    assert platform_process(1) and platform_process(2)  # init, kthreadd
    agent = tmp_path / "xputrace-agent"  # a process whose executable is the agent binary
    shutil.copy("/bin/sleep", agent)
    with subprocess.Popen([str(agent), "60"]) as p:
        try:
            exec_done(p.pid, agent)
            assert platform_process(p.pid, agent_path=agent)
            assert not platform_process(p.pid, agent_path=tmp_path / "other")
            assert platform_process(p.pid, own=[p.pid])
        finally:
            p.kill()
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "__main__.py").write_text(
        "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    with running([sys.executable, "-m", "backend"], cwd=tmp_path) as pid:
        assert platform_process(pid)
    influxd = tmp_path / "bin" / "influxd"
    influxd.parent.mkdir()
    shutil.copy("/bin/sleep", influxd)
    with subprocess.Popen([str(influxd), "60"]) as p:
        try:
            assert platform_process(exec_done(p.pid, influxd))
        finally:
            p.kill()
    with running(["/bin/sh", "-c", "echo up; sleep 60"]) as pid:  # a user's process: fine
        assert not platform_process(pid)


def test_start_on_the_platform_is_refused(
    settings: Callable[..., Settings], agent: Callable[..., Path]
) -> None:
    s = settings(agent_path=agent())

    async def refused(pid: int) -> CommandError:
        async with Supervisor(s, MACHINE_ID) as sup:
            for kind in ("CUDA", "SYSCALL", "PYTHON"):
                c = StartMonitor(
                    "r",
                    "123e4567-e89b-42d3-a456-426614174000",
                    kind,
                    Target(pid),
                    data_endpoint=DATA,
                )
                with pytest.raises(CommandError) as e:
                    await sup.start(replace(c))
                assert e.value.code == ErrorCode.PERMISSION_DENIED, e.value.message
                assert e.value.message == (
                    f"target.pid: PID {pid} is refused: xputrace never "
                    "traces its own processes, pid 1 or kernel threads"
                )
            return e.value

    for pid in (1, 2):
        run(refused(pid))


def test_refusals_do_not_tell_what_is_there(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    """/etc/shadow, a directory, a file that does not exist and one this user cannot read
    are refused alike unless their name is a library's; a pid's command is never told."""
    s = settings(agent_path=agent())

    async def message(target: Target) -> str:
        async with Supervisor(s, MACHINE_ID) as sup:
            with pytest.raises(CommandError) as e:
                await sup.start(
                    StartMonitor(
                        "r",
                        "123e4567-e89b-42d3-a456-426614174000",
                        "CUDA",
                        target,
                        data_endpoint=DATA,
                    )
                )
            return f"{e.value.code.value}: {e.value.message}"

    for path in ("/etc/shadow", "/etc/no-such-file", "/etc", "/root/.bashrc"):
        got = run(message(Target(library_path=path)))
        assert got == (
            f"INVALID_CONFIG: target.library_path: '{path}' is not a library of "
            "libcudart*.so*, libcuda.so*, libnccl*.so*"
        ), got
    got = run(message(Target(pid=os.getpid(), comm="sshd")))
    assert got == f"TARGET_NOT_FOUND: target.comm: PID {os.getpid()} does not run 'sshd'"
    assert "python" not in got and "pytest" not in got


def test_a_user_with_granted_accounts_targets_only_their_processes(
    settings: Callable[..., Settings], agent: Callable[..., Path]
) -> None:
    """START with allowed_users (an operator's granted Unix accounts): a process of one of
    them runs; another account's, a library in every process or a task name are refused."""
    s = settings(agent_path=agent())
    mid = "123e4567-e89b-42d3-a456-426614174000"

    async def start(target: Target, users: tuple[str, ...] | None, kind: str = "CUDA") -> str:
        async with Supervisor(s, MACHINE_ID) as sup:
            c = StartMonitor("r", mid, kind, target, data_endpoint=DATA, allowed_users=users)
            try:
                await sup.start(c)
            except CommandError as e:
                return f"{e.code.value}: {e.message}"
            await sup.stop(mid)
            return "started"

    with subprocess.Popen(["sleep", "60"], user=65534, group=65534) as p:
        try:
            assert run(start(Target(p.pid), ("nobody",))) == "started"
            assert run(start(Target(os.getpid()), ("nobody",))) == (
                f"PERMISSION_DENIED: target.pid: PID {os.getpid()} belongs to no Unix account "
                "this user was granted"
            )
            assert run(start(Target(os.getpid()), None)) == "started"  # an admin's
            for target, kind in (
                (Target(library_path="/usr/lib/libcudart.so.12"), "CUDA"),
                (Target(comm="sleep"), "SYSCALL"),
            ):
                got = run(start(target, ("nobody",), kind))
                assert got.startswith(
                    "PERMISSION_DENIED: target: only a process named by target.pid"
                ), got
            assert run(start(Target(p.pid), ())).startswith("PERMISSION_DENIED")
        finally:
            p.kill()
