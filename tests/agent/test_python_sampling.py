"""The PYTHON monitor: a per-CPU clock samples the target's Python stacks; a script that
spins in one function is caught there, with its callers, at about the rate asked for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from manager.python.target import find_target
from tests.agent.procs import run_agent_expect_failure, trace_workload
from tests.agent.test_python_attribution import py_flags, stacks
from tests.manager.python.test_target import DEBIAN, INTERPRETERS, python_or_skip
from xpucore import abi

pytestmark = pytest.mark.bpf

SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_spin.py"
SPIN_S = 0.5


@pytest.mark.parametrize("name", INTERPRETERS)
def test_samples_name_the_spinning_function(name: str, build_dir: Path, tmp_path: Path) -> None:
    python = python_or_skip(name)
    hz = 499
    ready, _, cap = trace_workload(
        build_dir,
        [str(python), str(SCRIPT)],
        tmp_path,
        "--sample-hz",
        str(hz),
        monitor_type="PYTHON",
        go=str(SPIN_S),
        flags_for=py_flags,
    )
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
    rc, err = run_agent_expect_failure(
        build_dir,
        "--monitor-id",
        "t",
        "--monitor-type",
        "PYTHON",
        "--output",
        str(tmp_path / "c"),
        *args,
    )
    assert rc == 2 and message in err, err


def gc_flags(pid: int) -> list[str]:
    """The Python offsets, and the interpreter file with the gc USDT probes."""
    return ["--py-binary", find_target(pid).binary, *py_flags(pid)]


def test_garbage_collections_are_events(build_dir: Path, tmp_path: Path) -> None:
    """Debian's python3.11 has the gc__start/gc__done USDT probes: each gc.collect() is an
    event with its generation, what it collected and the stack that called it."""
    script = SCRIPT.with_name("python_gc.py")
    _, done, cap = trace_workload(
        build_dir,
        [str(DEBIAN), str(script)],
        tmp_path,
        monitor_type="PYTHON",
        go="5",
        flags_for=gc_flags,
    )
    assert cap.agent_ready["gc"] is True
    ev = cap.events
    gc = ev[ev["func"] == 0x100]
    full = gc[gc["generation"] == 2]
    assert full["collected"].tolist() == done["collected"] == full["ret"].tolist()
    assert (full["duration_ns"] > 0).all()
    by_id = stacks(cap)
    line = next(
        n
        for n, text in enumerate(script.read_text().splitlines(), 1)
        if text.endswith("# at:collect")
    )
    assert {tuple(by_id[int(s)][0][::2]) for s in full["py_stack"]} == {("collect", line)}


def test_no_gc_probes_is_said(build_dir: Path, tmp_path: Path) -> None:
    """pyenv's builds have no USDT probes: sampling goes on, and stderr says why no gc."""
    python = INTERPRETERS["pyenv-3.11"]
    if python is None:
        pytest.skip("no pyenv 3.11 here")
    _, _, cap = trace_workload(
        build_dir,
        [str(python), str(SCRIPT)],
        tmp_path,
        monitor_type="PYTHON",
        go="0.01",
        flags_for=gc_flags,
    )
    assert cap.agent_ready["gc"] is False
    assert "no gc__start and gc__done USDT probes" in cap.stderr
