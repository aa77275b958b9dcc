"""The PYTHON monitor's exact calls of named functions (--py-functions, hooks placed by
manager.python.hooks): every call of each function named, start to return, on every thread,
with the stack it was called from; a call left by an exception is marked incomplete;
recursion pairs each return with its own call. On Debian's static python3.11 and each pyenv
CPython installed here."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from manager.python.hooks import find_hooks, hook_flag
from manager.python.offsets import OFFSETS
from manager.python.target import agent_flags, find_target
from tests.agent.procs import run_agent_expect_failure, trace_workload
from tests.manager.python.test_target import INTERPRETERS, python_or_skip
from xpucore import abi

pytestmark = pytest.mark.bpf

SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_calls.py"
ROUNDS = 3
FIB_CALLS = 9  # fib(4)


def at() -> dict[str, int]:
    return {m.group(1): n for n, text in enumerate(SCRIPT.read_text().splitlines(), 1)
            if (m := re.search(r"# at:(\w+)", text))}  # fmt: skip


Stacks = dict[int, list[tuple[str, int]]]


def run(python: Path, build: Path, tmp: Path, names: list[str]) -> tuple[
        dict[str, Any], list[dict[str, Any]], Stacks, dict[str, int]]:  # fmt: skip
    """(ready line, call events, stacks {id: [(function, line)]}, the agent's py_calls line)."""

    def flags(pid: int) -> list[str]:
        t = find_target(pid)
        return [
            *agent_flags(t),
            "--py-binary",
            t.binary,
            "--py-functions",
            ",".join(names),
            "--py-hooks",
            hook_flag(find_hooks(t)),
        ]

    ready, _, cap = trace_workload(build, [str(python), str(SCRIPT), str(ROUNDS)], tmp,
                                   monitor_type="PYTHON", flags_for=flags)  # fmt: skip
    stacks: Stacks = {}
    for fr in sorted(cap.py_frames.tolist(), key=lambda r: (r[0], r[2])):
        stacks.setdefault(fr[0], []).append((fr[6].decode(), fr[4]))
    calls = [r | {"flags": int(f)} for b in cap.batches
             for r, f in zip(abi.event_records(b), b.events["flags"].tolist(), strict=True)
             if r["func"] == "call"]  # fmt: skip
    return ready, calls, stacks, cap.py_calls


@pytest.mark.parametrize("name", INTERPRETERS)
def test_every_call_of_the_functions_named(name: str, build_dir: Path, tmp_path: Path) -> None:
    python = python_or_skip(name)
    old = name == "pyenv-3.10"  # no co_qualname: names are co_name
    forward = "forward" if old else "Model.forward"
    ready, calls, stacks, cost = run(
        python, build_dir, tmp_path, [forward, "boom", "fib", "step", "numbers"]
    )
    lines = at()
    got: Counter[tuple[int, str, int, str, bool]] = Counter()
    for c in calls:
        frames = stacks[c["args"]["py_stack"]]
        (fn, line), caller = frames[0], frames[1][0]
        got[(c["tid"], fn, line, caller, c["incomplete"])] += 1
        assert c["duration_ns"] > 0
    want: Counter[tuple[int, str, int, str, bool]] = Counter()
    for tid, outer in ((ready["tid"], "main"), (ready["worker"], "worker")):
        outer = outer if old or outer == "main" else "main.<locals>.worker"
        want[(tid, "step", lines["step"], outer, False)] += ROUNDS
        want[(tid, forward, lines["forward"], "step", False)] += ROUNDS
        want[(tid, "boom", lines["boom"], "step", True)] += ROUNDS  # left by its exception
        want[(tid, "fib", lines["fib"], "step", False)] += ROUNDS
        want[(tid, "fib", lines["fib"], "fib", False)] += ROUNDS * (FIB_CALLS - 1)
        # a generator: one call from its start to its return, not one per resumption
        want[(tid, "numbers", lines["numbers"], "step", False)] += ROUNDS
    assert got == want
    # the calls a step makes lie within it, on its thread
    for tid in (ready["tid"], ready["worker"]):
        mine = sorted((c for c in calls if c["tid"] == tid), key=lambda c: c["ts_ns"])
        steps = [c for c in mine if stacks[c["args"]["py_stack"]][0][0] == "step"]
        for s in steps:
            inner = [c for c in mine if s["ts_ns"] < c["ts_ns"] < s["ts_ns"] + s["duration_ns"]]
            assert len(inner) == 3 + FIB_CALLS
            assert all(c["ts_ns"] + c["duration_ns"] <= s["ts_ns"] + s["duration_ns"]
                       for c in inner if not c["incomplete"])  # fmt: skip
    named = 2 * ROUNDS * (4 + FIB_CALLS)
    assert cost["named"] == named and cost["lost"] == 0
    assert cost["trapped"] >= named + 2 * ROUNDS * 2  # helper and the generator too


def test_bad_function_flags_are_refused(build_dir: Path, tmp_path: Path) -> None:
    offsets = ",".join(f"{k}={v}" for k, v in OFFSETS[(3, 11)].items())
    base = ["--monitor-id", "t", "--monitor-type", "PYTHON", "--target-pid", "1",
            "--py-runtime", "0x1000", "--py-offsets", offsets, "--output",
            str(tmp_path / "c")]  # fmt: skip
    for extra, message in (
        (["--py-functions", "f"], "--py-functions and --py-hooks go together"),
        (
            ["--py-functions", "f;rm", "--py-hooks", "opcode:1:2", "--py-binary", "/p"],
            "invalid --py-functions",
        ),
        (
            ["--py-functions", "f", "--py-hooks", "jit:1:2", "--py-binary", "/p"],
            "mode opcode or eval",
        ),
        (
            ["--py-functions", "f", "--py-hooks", "opcode:1:", "--py-binary", "/p"],
            "opcode mode takes entry and exit",
        ),
    ):
        rc, err = run_agent_expect_failure(build_dir, *base, *extra)
        assert rc == 2 and message in err, (extra, err)
