"""The SYSCALL monitor (bpf/syscall.bpf.c, raw syscall tracepoints): a workload's known
read, write and nanosleep calls come out exactly, per thread, with their arguments, return
values and durations; --syscalls limits what is recorded; bad input is refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.agent.procs import Capture, run_agent_expect_failure, trace_workload, wait_in_syscall
from xpucore import abi

pytestmark = pytest.mark.bpf

SLEEP_NS = 100_000  # the workload's nanosleep


def names(cap: Capture) -> np.ndarray:
    return np.array([abi.function_name(int(f), "SYSCALL") for f in cap.events["func"]])


READ = 0  # x86-64 syscall number


def run(
    build: Path, tmp_path: Path, threads: int, iters: int, *agent_args: str
) -> tuple[dict[str, Any], dict[str, int], Capture]:
    """The workload under a SYSCALL agent by pid: (ready, its fds, capture). The agent stops
    once the main thread waits in read(stdin) for its next line."""
    ready, _, cap = trace_workload(build, [str(build / "tests/workloads/syscall_calls"),
                                           "--threads", str(threads), "--iters", str(iters)],
                                   tmp_path, *agent_args, monitor_type="SYSCALL",
                                   first="fds",
                                   before_stop=lambda r: wait_in_syscall(r["pid"], r["pid"],
                                                                         READ))  # fmt: skip
    return ready, ready["fds"], cap


def test_known_calls_exactly(build_dir: Path, tmp_path: Path) -> None:
    threads, iters = 3, 4
    ready, fds, cap = run(build_dir, tmp_path, threads, iters)
    ev, fn = cap.events, names(cap)
    workers = np.isin(ev["tid"], ready["tids"])
    # nanosleep has two arguments: its arg2 is whatever rdx held
    got = Counter((int(ev["tid"][i]), str(fn[i]), int(ev["arg0"][i]),
                   0 if fn[i] == "nanosleep" else int(ev["arg2"][i]), int(ev["ret"][i]))
                  for i in np.flatnonzero(workers))  # fmt: skip
    want: Counter[tuple[int, str, int, int, int]] = Counter()
    for t, tid in enumerate(ready["tids"]):
        rounds = iters * (t + 1)
        timespec = int(ev["arg0"][(ev["tid"] == tid) & (fn == "nanosleep")][0])  # its stack
        want[(tid, "read", fds["zero"], 64 + t, 64 + t)] += rounds
        want[(tid, "write", fds["null"], 32 + t, 32 + t)] += rounds
        want[(tid, "nanosleep", timespec, 0, 0)] += rounds
    # the workers' other calls: the start barrier's futex, and their exit
    assert {k: n for k, n in got.items() if k[1] in ("read", "write", "nanosleep")} == want
    assert cap.stats["inflight_drops"] == cap.stats["kernel_drops"] == 0
    sleeps = ev[workers & (fn == "nanosleep")]
    assert (sleeps["duration_ns"] >= SLEEP_NS).all()
    assert (sleeps["arg1"] == 0).all()  # no rem pointer
    returning = workers & (fn != "exit")  # exit never returns: an event of no duration
    assert (ev["duration_ns"][returning] > 0).all()
    assert Counter(fn[workers & (fn == "exit")].tolist()) == {"exit": threads}
    assert set(ev["pid"].tolist()) == {ready["pid"]}
    assert cap.stats["kernel_drops"] == cap.stats["inflight_drops"] == 0
    assert cap.stats["events"] == len(ev)
    assert cap.batches[0].monitor_type == abi.MONITOR_TYPES["SYSCALL"]


def test_filter_records_only_the_syscalls_named(build_dir: Path, tmp_path: Path) -> None:
    threads, iters = 2, 3
    ready, _, cap = run(build_dir, tmp_path, threads, iters, "--syscalls", "write,nanosleep")
    fn = names(cap)
    assert set(fn.tolist()) == {"write", "nanosleep"}
    workers = np.isin(cap.events["tid"], ready["tids"])
    assert Counter(fn[workers].tolist()) == {"write": iters * 3, "nanosleep": iters * 3}


def test_call_in_progress_at_stop_is_incomplete(build_dir: Path, tmp_path: Path) -> None:
    """The workload's main thread waits in read(stdin) for "exit" while the agent stops."""
    ready, _, cap = run(build_dir, tmp_path, 1, 1, "--syscalls", "read")
    cut = cap.events[(cap.events["flags"] & abi.EV_INCOMPLETE) != 0]
    assert len(cut) == cap.stats["incomplete"] == 1
    assert cut["tid"][0] == ready["pid"] and cut["arg0"][0] == 0  # stdin


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--target-pid", "1", "--syscalls", "read,bogus"], 2, "unknown syscall 'bogus'"),
    (["--target-pid", "1", "--syscalls", ""], 2, "no syscall named"),
    (["--target-library", "/usr/lib/x86_64-linux-gnu/libc.so.6"], 2,
     "--target-library is for CUDA and ACL monitors"),
    ([], 2, "missing --target-pid or --target-comm"),
    (["--target-pid", "999999999"], 3, "process 999999999 not found"),
])  # fmt: skip
def test_bad_input_is_refused(
    build_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    rc, err = run_agent_expect_failure(
        build_dir,
        "--monitor-id",
        "t",
        "--monitor-type",
        "SYSCALL",
        "--output",
        str(tmp_path / "c"),
        *args,
    )
    assert rc == code and message in err, err
