"""The Ascend runtime stand-ins (tests/workloads/ascend, built from the real CANN headers of the
torch-npu wheel): in both layouts (runtime in libacl_rt.so, as current CANN; all of AscendCL
in libascendcl.so, as older CANN), each library has its real name as soname and exports the
symbols acl_expect says it does, and the workload makes exactly the calls acl_expect lists.
The ground truth the Ascend probe (issue #5) will be checked against."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.agent.procs import JsonLineProc
from tests.workloads import acl_expect


def exported(lib: Path) -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}


def soname(lib: Path) -> str:
    out = subprocess.run(
        ["readelf", "-d", str(lib)], capture_output=True, text=True, check=True
    ).stdout
    return next(line.split("[")[1].rstrip("]") for line in out.splitlines() if "(SONAME)" in line)


@pytest.mark.parametrize("layout", ["rt", "compat"])
def test_libraries_export_where_cann_does(build_dir: Path, layout: str) -> None:
    folder = build_dir / "tests/workloads/ascend" / layout
    symbols = set(acl_expect.expected_counts(1, 1))
    for lib in sorted(folder.glob("lib*.so")):
        assert soname(lib) == lib.name
        mine = {s for s in symbols if acl_expect.library_of(s, layout) == lib.name}
        assert mine <= exported(lib), (lib.name, mine - exported(lib))
    names = {p.name for p in folder.glob("lib*.so")}
    assert ("libacl_rt.so" in names) == (layout == "rt")


@pytest.mark.parametrize("exe", ["acl_calls", "acl_calls_compat"])
def test_workload_makes_the_expected_calls(build_dir: Path, exe: str) -> None:
    threads, iters = 3, 2
    work = JsonLineProc(
        [
            str(build_dir / "tests/workloads/ascend" / exe),
            "--threads",
            str(threads),
            "--iters",
            str(iters),
        ]
    )
    try:
        work.read_json("ready")
        work.send_line("go")
        done = work.read_json("done")
        work.send_line("exit")
        assert work.finish() == 0
    finally:
        work.kill()
    assert done["calls"] == acl_expect.expected_counts(threads, iters)


def test_sync_time_is_configurable(build_dir: Path) -> None:
    """XPU_FAKE_ACL_SYNC_US makes the four synchronize calls wait, so waits show in traces."""
    argv = [str(build_dir / "tests/workloads/ascend/acl_calls"), "--threads", "1", "--iters", "1"]

    def run(env: dict[str, str]) -> float:
        work = JsonLineProc(argv, env={**os.environ, **env})
        try:
            work.read_json("ready")
            t0 = time.monotonic()
            work.send_line("go")
            work.read_json("done")
            took = time.monotonic() - t0
            work.send_line("exit")
            work.finish()
        finally:
            work.kill()
        return took

    assert run({"XPU_FAKE_ACL_SYNC_US": "50000"}) >= 4 * 0.05 > run({})
