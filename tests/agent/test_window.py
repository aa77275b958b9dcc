"""The step window (--window FUNCTION:SKIP:COUNT, xpucore/include/window.h): a CUDA monitor
and a PYTHON monitor of a real training loop (tests/workloads/python_steps.py: step(k) calls
the wheel's libcudart with cudaMalloc(1000 + k), and cudaMalloc(5000 + k) between steps) keep
exactly what happens from the start of the 4th call of step to the end of the 5th, on one
thread or two taking turns, then the agent ends by itself with AGENT_WINDOW_CLOSED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from manager.python.hooks import find_hooks, hook_flag
from manager.python.offsets import OFFSETS
from manager.python.target import agent_flags, find_target
from tests.agent.procs import Agent, Capture, JsonLineProc, capture_from, run_agent_expect_failure
from tests.manager.python.test_target import python_or_skip
from xpucore import abi
from xpucore.exit_codes import AGENT_EXIT

pytestmark = pytest.mark.bpf

SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_steps.py"
STEPS, PER_STEP = 8, 3
SKIP, COUNT = 3, 2  # the 4th and 5th calls: step(3) and step(4)


def window_flags(pid: int, monitor_type: str, window: str) -> list[str]:
    t = find_target(pid)
    flags = [*agent_flags(t), "--py-binary", t.binary, "--py-hooks", hook_flag(find_hooks(t))]
    flags += ["--window", window]
    if monitor_type == "PYTHON":
        flags += ["--py-functions", "step,malloc"]
    else:
        flags += ["--no-py-stacks"]
    return flags


def run(python: Path, build: Path, cudart: Path, tmp: Path, monitor_type: str, threads: int,
        window: str = f"step:{SKIP}:{COUNT}", closes: bool = True,
        ) -> tuple[dict[str, Any], dict[str, Any], Capture, dict[str, Any]]:  # fmt: skip
    """(ready, done, capture, the agent's window line) of the workload under a windowed
    agent; the agent must end by itself when closes, else it is stopped once steps are done."""
    work = JsonLineProc([str(python), str(SCRIPT), str(cudart), str(STEPS), str(threads)])
    agent = None
    try:
        ready = work.read_json("ready")
        out = tmp / "cap.bin"
        agent = Agent(build, out, "--target-pid", str(ready["pid"]),
                      *window_flags(ready["pid"], monitor_type, window),
                      monitor_type=monitor_type)  # fmt: skip
        assert agent.ready["pid"] > 0
        work.send_line()
        done = work.read_json("done")
        if not closes:
            agent.proc.send_signal(15)
        line = agent.read_json("window")["window"]
        stats = agent.read_json("stats")["stats"]
        rc = agent.finish()
        err = agent.stderr_text()
        work.send_line("exit")
        assert work.finish() == 0
    finally:
        work.kill()
        if agent:
            agent.kill()
    with open(out, "rb") as f:
        cap = capture_from(list(abi.iter_batches(f)), stats, err, rc, agent.ready["libraries"])
    return ready, done, cap, line


def mallocs(cap: Capture) -> list[int]:
    """The sizes of the cudaMalloc calls recorded, in time order."""
    ev = cap.events[cap.events["ts_ns"].argsort()]
    assert set(cap.names()) <= {"cudaMalloc"}
    return [int(b) for b in ev["bytes"]]


@pytest.mark.parametrize("threads", [1, 2])
def test_cuda_calls_of_the_window_exactly(build_dir: Path, cudart12: Path, tmp_path: Path,
                                          threads: int) -> None:  # fmt: skip
    python = python_or_skip("debian-3.11-static")
    ready, done, cap, window = run(python, build_dir, cudart12, tmp_path, "CUDA", threads)
    assert cap.returncode == AGENT_EXIT["AGENT_WINDOW_CLOSED"], cap.stderr
    assert "its window closed: step:3:2" in cap.stderr
    # steps 3 and 4 whole, and what ran between them (outside step), nothing else
    assert mallocs(cap) == [1003] * PER_STEP + [5003] + [1004] * PER_STEP
    if threads == 2:  # step k ran on thread k % 2: the count is the process's
        tids = ready["tids"]
        assert [int(t) for t in cap.events[cap.events["ts_ns"].argsort()]["tid"]] == (
            [tids[1]] * (PER_STEP + 1) + [tids[0]] * PER_STEP
        )
    assert cap.final_drops == {"kernel_drops": 0, "inflight_drops": 0, "send_drops": 0}
    assert window["state"] == "closed" and window["calls"] >= SKIP + COUNT
    spans = done["spans"]
    assert spans[3][0] <= window["opened_ns"] <= min(cap.events["ts_ns"])
    assert spans[4][1] >= window["closed_ns"] >= max(cap.events["ts_ns"])


def test_a_window_not_reached_keeps_nothing(build_dir: Path, cudart12: Path,
                                            tmp_path: Path) -> None:  # fmt: skip
    """Every call of step counted (8), the window (the 9th) never opens: no event, and the
    agent runs until it is stopped."""
    python = python_or_skip("debian-3.11-static")
    _, _, cap, window = run(python, build_dir, cudart12, tmp_path, "CUDA", 2,
                            window=f"step:{STEPS}:1", closes=False)  # fmt: skip
    assert cap.returncode == 0, cap.stderr
    assert len(cap.events) == 0 and cap.final_drops["kernel_drops"] == 0
    assert window == {"calls": STEPS, "state": "shut", "opened_ns": 0, "closed_ns": 0}


@pytest.mark.parametrize("name", ["debian-3.11-static", "pyenv-3.10", "pyenv-3.12"])
@pytest.mark.parametrize("threads", [1, 2])
def test_python_calls_of_the_window_exactly(name: str, threads: int, build_dir: Path,
                                            cudart12: Path, tmp_path: Path) -> None:  # fmt: skip
    """A PYTHON monitor naming step and malloc, its window on step: the 4th and 5th calls of
    step (told by the workload's clock around each), the mallocs within them and the one
    between, and no sample or call before or after."""
    python = python_or_skip(name)
    _, done, cap, window = run(python, build_dir, cudart12, tmp_path, "PYTHON", threads)
    assert cap.returncode == AGENT_EXIT["AGENT_WINDOW_CLOSED"], cap.stderr
    stacks: dict[int, str] = {}
    for fr in sorted(cap.py_frames.tolist(), key=lambda r: (r[0], r[2])):
        stacks.setdefault(fr[0], fr[6].decode())  # the innermost frame's function
    ev = cap.events[cap.events["ts_ns"].argsort()]
    names = abi.function_names("PYTHON")
    calls = [(stacks[int(e["py_stack"])], int(e["ts_ns"]), int(e["duration_ns"]))
             for e in ev if names[int(e["func"])] == "call"]  # fmt: skip
    steps = [(ts, ts + d) for fn, ts, d in calls if fn == "step"]
    spans = done["spans"]
    which = [k for ts, end in steps for k, (t0, t1) in enumerate(spans) if t0 <= ts <= end <= t1]
    assert which == [3, 4]
    assert [fn for fn, _, _ in calls].count("malloc") == 2 * PER_STEP + 1
    # samples, if any, lie in the window too
    assert all(window["opened_ns"] <= int(e["ts_ns"]) <= window["closed_ns"] for e in ev
               if names[int(e["func"])] == "sample")  # fmt: skip
    assert spans[3][0] <= window["opened_ns"] <= steps[0][0]
    assert steps[1][1] <= window["closed_ns"] <= spans[4][1]


def test_bad_window_flags_are_refused(build_dir: Path, tmp_path: Path) -> None:
    offsets = ",".join(f"{k}={v}" for k, v in OFFSETS[(3, 11)].items())
    base = ["--monitor-id", "t", "--target-pid", "1", "--py-runtime", "0x1000",
            "--py-offsets", offsets, "--output", str(tmp_path / "c")]  # fmt: skip
    hooks = ["--py-binary", "/p", "--py-hooks", "opcode:1:2"]
    for extra, message in (
        (["--monitor-type", "CUDA", "--window", "step:1"], "invalid --window 'step:1'"),
        (["--monitor-type", "CUDA", "--window", "step:1:0"], "COUNT >= 1"),
        (["--monitor-type", "CUDA", "--window", "a;b:1:1"], "invalid --window"),
        (["--monitor-type", "SYSCALL", "--window", "step:1:1"], "CUDA, ACL and PYTHON"),
        (["--monitor-type", "CUDA", "--window", "step:1:1"], "--window needs --py-runtime"),
        (["--monitor-type", "CUDA", "--no-py-stacks", *hooks], "--no-py-stacks is for"),
        (["--monitor-type", "CUDA", "--py-functions", "f", *hooks], "are for PYTHON monitors"),
        (
            [
                "--monitor-type",
                "PYTHON",
                "--py-functions",
                "f",
                "--window",
                "step:1:1",
                "--py-binary",
                "/p",
            ],
            "--window needs",
        ),
    ):
        rc, err = run_agent_expect_failure(build_dir, *base, *extra)
        assert rc == AGENT_EXIT["AGENT_INVALID_CONFIG"] and message in err, (extra, err)
