"""Python attribution of CUDA calls: the probe reads the calling thread's Python stack from
the interpreter's memory at each call, the agent resolves each distinct stack once and sends
it (XPU_BATCH_STACKS); every event's stack is exactly its call chain, with lines. Against
the real libcudart, on Debian's static python3.11 and each pyenv CPython installed here."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from manager.python.target import agent_flags, find_target
from tests.agent.procs import Capture, trace_workload
from tests.manager.python.test_target import INTERPRETERS, python_or_skip
from xpucore import abi

pytestmark = pytest.mark.bpf

SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_cuda_calls.py"


def at() -> dict[str, int]:
    return {
        m.group(1): n
        for n, text in enumerate(SCRIPT.read_text().splitlines(), 1)
        if (m := re.search(r"# at:(\w+)", text))
    }


def py_flags(pid: int) -> list[str]:
    return agent_flags(find_target(pid))


def stacks(cap: Capture) -> dict[int, list[tuple[str, str, int]]]:
    out: dict[int, list[tuple[str, str, int]]] = {}
    for f in sorted(cap.py_frames.tolist(), key=lambda r: (r[0], r[2])):
        sid, _, depth, nframes, line, _, function, file = f
        out.setdefault(sid, []).append((function.decode(), file.decode(), line))
        assert len(out[sid]) == depth + 1 and nframes >= depth + 1
    return out


def run(python: Path, cudart: Path, build: Path, tmp: Path, rounds: int) -> tuple[
        dict[str, Any], Capture]:  # fmt: skip
    ready, _, cap = trace_workload(
        build, [str(python), str(SCRIPT), str(cudart), str(rounds)], tmp, flags_for=py_flags
    )
    return ready, cap


@pytest.mark.parametrize("name", INTERPRETERS)
def test_each_call_has_its_python_stack(
    name: str, build_dir: Path, tmp_path: Path, cudart12: Path
) -> None:
    python = python_or_skip(name)
    rounds = 3
    ready, cap = run(python, cudart12, build_dir, tmp_path, rounds)
    lines, file = at(), str(SCRIPT)
    by_id = stacks(cap)
    ev, names = cap.events, cap.names()
    got: Counter[tuple[int, str, tuple[tuple[str, str, int], ...]]] = Counter()
    for i in range(len(ev)):
        sid = int(ev["py_stack"][i])
        frames = by_id[sid]  # every event's stack was sent
        got[(int(ev["tid"][i]), str(names[i]), tuple(frames[:4]))] += 1
    main = (
        ("train", file, lines["train"]),
        ("main", file, lines["main"]),
        ("<module>", file, lines["module"]),
    )
    worker = by_id[int(ev["py_stack"][list(names).index("cudaMalloc")])]
    nested = "worker" if name == "pyenv-3.10" else "main.<locals>.worker"  # 3.10: co_name
    assert worker[:2] == [("allocate", file, lines["allocate"]), (nested, file, lines["worker"])]
    assert all(f[1].endswith("threading.py") for f in worker[2:]) and len(worker) > 2
    want = Counter({
        (ready["tid"], "cudaMemcpy", (("copy", file, lines["copy"]),
                                      ("step", file, lines["step_copy"]), *main[:2])): rounds,
        (ready["tid"], "cudaDeviceSynchronize", (("step", file, lines["step_sync"]),
                                                 *main)): rounds,
        (ready["worker"], "cudaMalloc", tuple(worker[:4])): rounds,
    })  # fmt: skip
    assert got == want
    assert len(by_id) == 3  # one stack per call site, sent once
    assert len(cap.py_frames) == sum(len(s) for s in by_id.values())
    assert cap.py_stats == {"sent": 3, "frames": len(cap.py_frames), "unsaved_events": 0}


@pytest.mark.parametrize(("args", "message"), [
    (["--py-runtime", "0x1000"], "--py-runtime and --py-offsets go together"),
    (["--py-runtime", "nope", "--py-offsets", "a=1"], "invalid --py-runtime 'nope'"),
    (["--py-runtime", "0x1000", "--py-offsets", "frame_code=1"], "offset runtime_interp_head "
     "missing"),
    (["--py-runtime", "0x1000", "--py-offsets", "colour=1"], "unknown offset 'colour=1'"),
    (["--py-runtime", "0x1000", "--py-offsets", "frame_code=x"], "offset frame_code: 'x' is "
     "not 0-65535"),
])  # fmt: skip
def test_bad_python_flags_are_refused(
    build_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    from tests.agent.procs import run_agent_expect_failure

    rc, err = run_agent_expect_failure(
        build_dir,
        "--monitor-id",
        "t",
        "--monitor-type",
        "CUDA",
        "--target-pid",
        "1",
        "--output",
        str(tmp_path / "c"),
        *args,
    )
    assert rc == 2 and message in err, err


ACL_SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_acl_calls.py"


def test_acl_calls_have_their_python_stacks(build_dir: Path, tmp_path: Path) -> None:
    """The ACL probe attributes its calls too: aclrt* and an aclnn op from Python."""
    python, rounds = INTERPRETERS["debian-3.11-static"], 3
    assert python is not None
    lines = {m.group(1): n for n, text in enumerate(ACL_SCRIPT.read_text().splitlines(), 1)
             if (m := re.search(r"# at:(\w+)", text))}  # fmt: skip
    libdir = build_dir / "tests/workloads/ascend/rt"
    _, done, cap = trace_workload(build_dir, [str(python), str(ACL_SCRIPT), str(libdir),
                                              str(rounds)], tmp_path, monitor_type="ACL",
                                  flags_for=py_flags)  # fmt: skip
    by_id, file = stacks(cap), str(ACL_SCRIPT)
    outer = (("main", file, lines["main"]), ("<module>", file, lines["module"]))
    want = {
        "aclrtMalloc": (("alloc", file, lines["alloc"]),
                        ("forward", file, lines["forward_alloc"]), *outer),
        "aclrtFree": (("alloc", file, lines["free"]), ("forward", file, lines["forward_alloc"]),
                      *outer),
        "aclnnAdd": (("add", file, lines["add"]), ("forward", file, lines["forward_add"]),
                     *outer),
    }  # fmt: skip
    got = Counter((rec["func"], tuple(by_id[rec["args"]["py_stack"]]))
                  for b in cap.batches for rec in abi.event_records(b))  # fmt: skip
    assert got == Counter({(f, s): rounds for f, s in want.items()})
    assert sum(got.values()) == sum(done["calls"].values())
    assert cap.py_stats["sent"] == 3 and cap.py_stats["unsaved_events"] == 0
