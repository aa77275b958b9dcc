"""The PYTHON monitor: a per-CPU clock samples the target's Python stacks; a script that
spins in one function is caught there, with its callers, at about the rate asked for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from backend import abi
from tests.agent.procs import Agent, JsonLineProc, run_agent_expect_failure
from tests.agent.test_python_attribution import py_flags, stacks
from tests.manager.test_python_target import INTERPRETERS

pytestmark = pytest.mark.bpf

SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_spin.py"
SPIN_S = 0.5


@pytest.mark.parametrize("name", INTERPRETERS)
def test_samples_name_the_spinning_function(name: str, build_dir: Path, tmp_path: Path) -> None:
    python = INTERPRETERS[name]
    if python is None or not python.exists():
        pytest.skip(f"no {name} installed here (pyenv)")
    hz = 499
    work = JsonLineProc([str(python), str(SCRIPT)])
    agent = None
    try:
        ready = work.read_json("ready")
        agent = Agent(build_dir, tmp_path / "cap.bin", "--target-pid", str(ready["pid"]),
                      "--sample-hz", str(hz), *py_flags(ready["pid"]), monitor_type="PYTHON")
        work.send_line(str(SPIN_S))
        work.read_json("done")
        cap = agent.stop()
        work.send_line("exit")
        assert work.finish() == 0
    finally:
        work.kill()
        if agent:
            agent.kill()
    assert cap.returncode == 0, cap.stderr
    assert cap.batches[0].monitor_type == abi.MONITOR_TYPES["PYTHON"]
    ev = cap.events
    assert (ev["pid"] == ready["pid"]).all() and (ev["duration_ns"] == 10**9 // hz).all()
    by_id = stacks(cap)
    inner = Counter(by_id[int(s)][0][0] if int(s) in by_id else None for s in ev["py_stack"])
    # spinning on one CPU for SPIN_S: about hz * SPIN_S samples, nearly all in spin()
    assert inner["spin"] >= 0.6 * hz * SPIN_S, inner
    assert inner["spin"] >= 0.9 * len(ev), inner
    spin = next(st for st in by_id.values() if st[0][0] == "spin")
    assert [f[0] for f in spin] == ["spin", "main", "<module>"]
    assert spin[0][1] == str(SCRIPT)
    assert cap.stats["kernel_drops"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--target-pid", "1"], "a PYTHON monitor needs --py-runtime and --py-offsets"),
    (["--target-library", "/usr/lib/x86_64-linux-gnu/libc.so.6"], "samples one process"),
    (["--target-pid", "1", "--sample-hz", "0", "--py-runtime", "0x10", "--py-offsets", "a=1"],
     "--sample-hz"),
])  # fmt: skip
def test_bad_flags(build_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    rc, err = run_agent_expect_failure(build_dir, "--monitor-id", "t", "--monitor-type",
                                       "PYTHON", "--output", str(tmp_path / "c"), *args)
    assert rc == 2 and message in err, err
