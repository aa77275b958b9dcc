"""The supervisor with a fake agent process: validation before exec, exit-code mapping,
start timeouts, stop escalation, unsolicited exits, and reaping a dead manager's agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from manager.reaper import start_ticks
from manager.settings import Settings
from manager.supervisor import AGENT_ENV, AGENT_EXIT_CODES, Supervisor
from tests.manager import fake_agent
from tests.manager.conftest import MACHINE_ID, run
from tests.manager.procs import alive, orphan_process, wait_for
from tests.manager.python.test_target import python_or_skip
from xpucore.exit_codes import AGENT_EXIT
from xpucore.protocol import (
    AgentConfig,
    CommandError,
    ErrorCode,
    MonitorStatus,
    StartMonitor,
    Target,
)

MID = "123e4567-e89b-42d3-a456-426614174000"
MID2 = "223e4567-e89b-42d3-a456-426614174000"
DATA = "tcp://127.0.0.1:5556"


def cmd(
    monitor_id: str = MID,
    *,
    pid: int | None = None,
    lib: str | None = None,
    comm: str | None = None,
    endpoint: str | None = DATA,
    **kw: Any,
) -> StartMonitor:
    if pid is None and lib is None:
        pid = os.getpid()
    return StartMonitor(
        "r1", monitor_id, "CUDA", Target(pid, lib, comm), data_endpoint=endpoint, **kw
    )


def refused(s: Settings, c: StartMonitor) -> CommandError:
    async def go() -> CommandError:
        async with Supervisor(s, MACHINE_ID) as sup:
            with pytest.raises(CommandError) as e:
                await sup.start(c)
            m = sup.get(c.monitor_id)
            assert m is None or (m.status == MonitorStatus.ERROR and not m.active)
            return e.value

    return run(go())


def test_start_and_stop(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    record = tmp_path / "argv.json"
    s = settings(agent_path=agent(record=str(record)))

    async def go() -> None:
        async with Supervisor(s, MACHINE_ID) as sup:
            m = await sup.start(cmd(config=AgentConfig(attach_mode="perf", ringbuf_kb=64)))
            assert m.status == MonitorStatus.RUNNING and sup.active() == [m]
            seen = json.loads(record.read_text())
            assert m.agent_pid == seen["pid"]
            key = s.runtime_dir / "keys" / f"{MID}.key"
            assert seen["argv"] == [
                str(s.agent_path),
                "--monitor-id",
                MID,
                "--monitor-type",
                "CUDA",
                "--machine-id",
                MACHINE_ID,
                "--target-pid",
                str(os.getpid()),
                "--backend-zmq-endpoint",
                DATA,
                "--attach-mode",
                "perf",
                "--ringbuf-kb",
                "64",
                "--curve-keyfile",
                str(key),
            ]
            assert seen["keyfile"] == {
                "mode": 0o600,
                "text": (
                    f"server_public_key={s.server_public_key.decode()}\n"
                    f"public_key={s.public_key.decode()}\nsecret_key={s.secret_key.decode()}\n"
                ),
            }
            assert not key.exists(), "the key file outlived the agent's start"
            assert {k: v for k, v in seen["env"].items() if k in AGENT_ENV} == AGENT_ENV
            assert not set(seen["env"]) - set(AGENT_ENV) - {"LC_CTYPE"}
            rec = json.loads((s.runtime_dir / "agents" / f"{MID}.json").read_text())
            assert rec["pid"] == m.agent_pid
            assert rec["start_ticks"] == start_ticks(Path("/proc"), m.agent_pid)
            assert m.summary() == {
                "monitor_id": MID,
                "agent_pid": m.agent_pid,
                "start_time": m.summary()["start_time"],
                "monitor_type": "CUDA",
            }
            reply = m.status_reply("q")
            assert reply["monitor_status"] == "RUNNING" and reply["agent_pid"] == m.agent_pid

            assert await sup.stop(MID) == (m, False)
            assert m.status == MonitorStatus.STOPPED and m.exit_code == 0, m.stderr_text()
            assert m.stats == fake_agent.STATS
            assert Path(f"{record}.signals").read_text() == "SIGTERM\n"
            assert not alive(seen["pid"])
            assert not (s.runtime_dir / "agents" / f"{MID}.json").exists()
            assert sup.active() == []
            assert await sup.stop(MID) == (m, True)  # idempotent
            assert m.status_reply("q") == {
                "request_id": "q",
                "status": "SUCCESS",
                "monitor_id": MID,
                "monitor_status": "STOPPED",
                "start_time": reply["start_time"],
            }

    run(go())


def test_capture_mode_and_library_target(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    record = tmp_path / "argv.json"
    lib = tmp_path / "lib" / "libcudart.so.12.9.79"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF")
    (lib.parent / "libcudart.so.12").symlink_to(lib.name)
    s = settings(agent_path=agent(record=str(record)))

    async def go() -> None:
        async with Supervisor(s, MACHINE_ID) as sup:
            m = await sup.start(
                cmd(lib=str(lib.parent / "libcudart.so.12"), comm="python", endpoint=None)
            )
            argv = json.loads(record.read_text())["argv"]
            assert argv[7:] == [
                "--target-library",
                str(lib),
                "--target-comm",
                "python",
                "--output",
                str(s.capture_dir / f"{MID}.bin"),
            ]
            assert m.libraries == [str(lib)]

    run(go())


@pytest.mark.parametrize("name", ["libcudart.so.12", "libcuda.so.1", "libnccl.so.2"])
def test_cuda_library_is_any_the_agent_attaches_to(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path, name: str
) -> None:
    """The CUDA probe's library patterns (agent_c/cuda_probe.c: the runtime, the driver and
    NCCL), as the probe's schema names them."""
    record = tmp_path / "argv.json"
    lib = tmp_path / name
    lib.write_bytes(b"\x7fELF")
    s = settings(agent_path=agent(record=str(record)))

    async def go() -> None:
        async with Supervisor(s, MACHINE_ID) as sup:
            await sup.start(cmd(lib=str(lib), endpoint=None))
            argv = json.loads(record.read_text())["argv"]
            assert argv[7:9] == ["--target-library", str(lib)]

    run(go())


def test_every_agent_exit_code_maps_to_its_error_code() -> None:
    """enum agent_exit (xpucore/include/exit_codes.h), read from the header: each code the
    agent exits with before it is ready maps to the error code of its name; success and a
    failure after it was running, or the end of a step window, are no refusal."""
    assert set(AGENT_EXIT) == {"AGENT_OK", "AGENT_RUNTIME_ERROR", "AGENT_INVALID_CONFIG",
                               "AGENT_TARGET_NOT_FOUND", "AGENT_PERMISSION_DENIED",
                               "AGENT_START_FAILED", "AGENT_WINDOW_CLOSED"}  # fmt: skip
    for name, code in AGENT_EXIT.items():
        if name in ("AGENT_OK", "AGENT_RUNTIME_ERROR", "AGENT_WINDOW_CLOSED"):
            assert code not in AGENT_EXIT_CODES
        else:
            short = name.removeprefix("AGENT_")
            assert (
                AGENT_EXIT_CODES[code]
                == ErrorCode[short if short in ErrorCode.__members__ else name]
            )
    assert AGENT_EXIT_CODES == {
        2: ErrorCode.INVALID_CONFIG,
        3: ErrorCode.TARGET_NOT_FOUND,
        4: ErrorCode.PERMISSION_DENIED,
        5: ErrorCode.AGENT_START_FAILED,
    }


@pytest.mark.parametrize(
    ("code", "name", "expected"),
    [
        (2, "INVALID_CONFIG", ErrorCode.INVALID_CONFIG),
        (3, "TARGET_NOT_FOUND", ErrorCode.TARGET_NOT_FOUND),
        (4, "PERMISSION_DENIED", ErrorCode.PERMISSION_DENIED),
        (5, "AGENT_START_FAILED", ErrorCode.AGENT_START_FAILED),
        (1, "RUNTIME", ErrorCode.AGENT_START_FAILED),
    ],
)
def test_agent_exit_codes_map_to_error_codes(
    settings: Callable[..., Settings],
    agent: Callable[..., Path],
    code: int,
    name: str,
    expected: ErrorCode,
) -> None:
    s = settings(
        agent_path=agent(
            behaviour="fail", code=code, name=name, stderr="no CUDA library mapped in process 77"
        )
    )
    e = refused(s, cmd())
    assert e.code == expected
    assert e.message == f"no CUDA library mapped in process 77 (agent exited with code {code}" + (
        f" ({expected}))" if code != 1 else ")"
    )
    assert list((s.runtime_dir / "agents").iterdir()) == []


def test_validated_before_exec(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    record = tmp_path / "ran.json"
    s = settings(agent_path=agent(record=str(record)), capture_dir=None)
    not_a_lib = tmp_path / "libcudart.so.12"
    not_a_lib.symlink_to("/bin/sh")
    fake_dir = tmp_path / "libcuda.so.1"
    fake_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    # the refusals themselves are tests/manager/test_agent_args.py's: here, that what the
    # supervisor reads of real processes and files reaches them, and no agent runs
    cases: list[tuple[StartMonitor, ErrorCode, str]] = [
        (cmd(pid=gone.pid), ErrorCode.TARGET_NOT_FOUND, f"Failed to find target PID {gone.pid}."),
        (cmd(comm="no-such-comm"), ErrorCode.TARGET_NOT_FOUND, "does not run 'no-such-comm'"),
        (cmd(lib="lib/libcudart.so"), ErrorCode.INVALID_CONFIG, "target.library_path: "),
        (cmd(lib=str(tmp_path / "libcudart.so.404")), ErrorCode.TARGET_NOT_FOUND, "library"),
        (cmd(lib=str(fake_dir)), ErrorCode.INVALID_CONFIG, "is not a library of"),
        (cmd(lib="/bin/sh"), ErrorCode.INVALID_CONFIG, "is not a library of libcudart*.so*"),
        (cmd(lib=str(not_a_lib)), ErrorCode.INVALID_CONFIG, "target.library_path: "),
        (
            cmd(endpoint="tcp://evil.example:5556"),
            ErrorCode.INVALID_CONFIG,
            "backend_zmq_data_endpoint: ",
        ),
        (cmd(endpoint=None), ErrorCode.INVALID_CONFIG, "backend_zmq_data_endpoint: missing"),
        (cmd(machine_id="another-machine"), ErrorCode.INVALID_CONFIG, "machine_id: "),
        (
            cmd(config=AgentConfig(enable_profiling=True)),
            ErrorCode.INVALID_CONFIG,
            "config.enable_profiling: not supported by CUDA monitors",
        ),
    ]
    for c, code, text in cases:
        e = refused(s, c)
        assert (e.code, text in e.message) == (code, True), (c, e.code, e.message)
    assert not record.exists(), "the agent ran for a refused command"
    e = refused(settings(agent_path=tmp_path / "missing-agent"), cmd())
    assert e.code == ErrorCode.AGENT_START_FAILED and "not executable" in e.message


def test_agent_never_ready(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    record = tmp_path / "argv.json"
    s = settings(agent_path=agent(behaviour="hang", record=str(record)), agent_ready_timeout_s=0.5)
    e = refused(s, cmd())
    assert e.code == ErrorCode.AGENT_START_FAILED and "not ready within 0.5s" in e.message
    assert not alive(json.loads(record.read_text())["pid"])


def test_stop_escalates_to_sigkill(
    settings: Callable[..., Settings], agent: Callable[..., Path]
) -> None:
    s = settings(agent_path=agent(behaviour="ignore_term"), agent_stop_timeout_s=0.3)

    async def go() -> None:
        async with Supervisor(s, MACHINE_ID) as sup:
            m = await sup.start(cmd())
            await sup.stop(MID)
            assert m.status == MonitorStatus.STOPPED and m.exit_code == -signal.SIGKILL
            assert m.message == "stopped on request (agent killed by signal SIGKILL)"
            assert m.agent_pid is not None and not alive(m.agent_pid)

    run(go())


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ({}, MonitorStatus.ERROR, "agent killed by signal SIGKILL"),
        (
            {
                "behaviour": "exit_after",
                "code": 1,
                "stderr": "xputrace-agent: failed to send batch: Connection refused",
            },
            MonitorStatus.ERROR,
            "agent exited with code 1: xputrace-agent: failed to send batch: Connection refused",
        ),
        (
            {"behaviour": "exit_after", "code": 0, "stderr": "xputrace-agent: target 77 exited"},
            MonitorStatus.STOPPED,
            "agent exited: xputrace-agent: target 77 exited",
        ),
    ],
)
def test_agent_exit_is_reported(
    settings: Callable[..., Settings],
    agent: Callable[..., Path],
    mode: dict[str, Any],
    status: MonitorStatus,
    message: str,
) -> None:
    s = settings(agent_path=agent(**mode))
    seen: list[tuple[MonitorStatus, str | None, str | None]] = []

    async def go() -> None:
        async with Supervisor(
            s, MACHINE_ID, on_status=lambda m: seen.append((m.status, m.message, m.error_message))
        ) as sup:
            m = await sup.start(cmd())
            if not mode:
                assert m.agent_pid is not None
                os.kill(m.agent_pid, signal.SIGKILL)
            await m.finished.wait()
            assert m.status == status and sup.active() == []
            assert await sup.stop(MID) == (m, True)
            assert (m.status_reply("q").get("error_message") is not None) == (
                status == MonitorStatus.ERROR
            )

    run(go())
    assert seen == [(status, message, message if status == MonitorStatus.ERROR else None)]


def test_start_is_idempotent_and_monitors_are_distinct(
    settings: Callable[..., Settings], agent: Callable[..., Path]
) -> None:
    s = settings(agent_path=agent(), max_monitors=2)

    async def go() -> None:
        async with Supervisor(s, MACHINE_ID) as sup:
            m = await sup.start(cmd())
            again = await sup.start(
                StartMonitor("r2", MID, "CUDA", Target(os.getpid()), data_endpoint=DATA)
            )
            assert again is m
            with pytest.raises(CommandError) as e:
                await sup.start(cmd(config=AgentConfig(flush_ms=5)))
            assert e.value.code == ErrorCode.INVALID_CONFIG and "already running" in str(e.value)
            m2 = await sup.start(cmd(MID2))
            assert m2.agent_pid != m.agent_pid and len(sup.active()) == 2
            with pytest.raises(CommandError) as e:
                await sup.start(cmd("323e4567-e89b-42d3-a456-426614174000"))
            assert e.value.code == ErrorCode.AGENT_START_FAILED
            await sup.stop(MID)
            m3 = await sup.start(cmd())  # a stopped monitor id can run again
            assert m3 is not m and m3.status == MonitorStatus.RUNNING
            with pytest.raises(CommandError) as e:
                await sup.stop("423e4567-e89b-42d3-a456-426614174000")
            assert e.value.code == ErrorCode.MONITOR_NOT_FOUND
            pids = [x.agent_pid for x in sup.active()]
        assert pids and not any(alive(p) for p in pids if p)  # leaving stops them all

    run(go())


def test_one_manager_per_runtime_dir(settings: Callable[..., Settings]) -> None:
    s = settings()

    async def go() -> None:
        async with Supervisor(s, MACHINE_ID):
            with pytest.raises(RuntimeError, match="another manager"):
                await Supervisor(s, MACHINE_ID).open()
        async with Supervisor(s, MACHINE_ID):  # released on exit
            pass

    run(go())


def test_supervisor_open_reaps(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    record = tmp_path / "orphan.json"
    s = settings(agent_path=agent(record=str(record)))
    orphan = orphan_process(s.agent_path, MID, s.runtime_dir / "agents")
    wait_for(record.exists)
    try:

        async def go() -> None:
            async with Supervisor(s, MACHINE_ID):
                assert orphan.poll() is not None

        run(go())
        assert orphan.returncode == 0
    finally:
        orphan.kill()
        orphan.wait()


def test_agent_gets_sigterm_when_its_manager_dies(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    """PR_SET_PDEATHSIG through setpriv: a manager killed by SIGKILL leaves no agent running.

    The manager here is a child Python process running a Supervisor."""
    record = tmp_path / "argv.json"
    s = settings(agent_path=agent(record=str(record)))
    if not os.access(s.setpriv_path, os.X_OK):
        pytest.skip(f"{s.setpriv_path} not installed")
    script = f"""
import asyncio, os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from manager.supervisor import Supervisor
from manager.settings import Settings
from xpucore.protocol import StartMonitor, Target
from pathlib import Path
s = Settings(backend="tcp://127.0.0.1:1", server_public_key={s.server_public_key!r},
             public_key={s.public_key!r}, secret_key={s.secret_key!r},
             agent_path=Path({str(s.agent_path)!r}), runtime_dir=Path({str(s.runtime_dir)!r}))
async def main():
    async with Supervisor(s, "m1") as sup:
        m = await sup.start(StartMonitor("r", {MID!r}, "CUDA", Target({os.getpid()}),
                                         data_endpoint="tcp://127.0.0.1:5556"))
        print(m.agent_pid, flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""
    mgr = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert mgr.stdout is not None
        agent_pid = int(mgr.stdout.readline())
        assert alive(agent_pid)
        mgr.kill()
        mgr.wait()
        wait_for(lambda: not alive(agent_pid))
        # the kernel sends the death signal each time the agent's parent thread exits, and
        # may reparent it to another thread of the dying manager first: one SIGTERM or more
        signals = Path(f"{record}.signals").read_text().splitlines()
        assert signals and set(signals) == {"SIGTERM"}
    finally:
        mgr.kill()
        mgr.wait()
        if mgr.stdout:
            mgr.stdout.close()


@pytest.mark.parametrize("name", ["pyenv-3.10", "pyenv-3.11"])
def test_qualified_function_names_need_cpython_3_11(
    name: str, settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    """3.10 code objects have no qualified name: 'Trainer.step' could never match there, so
    the monitor is refused with the reason instead of running and recording nothing."""
    python = python_or_skip(name)
    record = tmp_path / "argv.json"
    s = settings(agent_path=agent(record=str(record)))
    script = tmp_path / "idle.py"  # a file: 3.10's target check wants a frame in a .py
    script.write_text("import time\nprint(flush=True)\ntime.sleep(60)\n")
    with subprocess.Popen([str(python), str(script)], stdout=subprocess.PIPE) as target:
        try:
            assert target.stdout is not None and target.stdout.readline() == b"\n"  # running
            for names in (("Trainer.step",), ("step", "Model.forward"), ("step",)):
                got = start_python(s, target.pid, names, record)
                if name == "pyenv-3.10" and names != ("step",):
                    i = len(names) - 1
                    assert got.startswith(
                        f"INVALID_CONFIG: config.functions[{i}]: '{names[i]}' is a qualified name"
                    ), got
                    assert "CPython 3.10" in got and "3.11+" in got, got
                else:  # plain names match co_name on 3.10; 3.11+ match co_qualname
                    assert got.startswith("{"), got
                    argv = json.loads(got)["argv"]
                    assert argv[argv.index("--py-functions") + 1] == ",".join(names)
        finally:
            target.kill()


def start_python(s: Settings, pid: int, names: tuple[str, ...], record: Path) -> str:
    """'CODE: message' when the PYTHON monitor is refused, else what the agent recorded."""
    record.unlink(missing_ok=True)
    c = replace(cmd(pid=pid), monitor_type="PYTHON", config=AgentConfig(functions=names))

    async def go() -> str:
        async with Supervisor(s, MACHINE_ID) as sup:
            try:
                m = await sup.start(c)
            except CommandError as e:
                return f"{e.code.value}: {e.message}"
            await sup.stop(m.monitor_id)
            return record.read_text()

    return run(go())
