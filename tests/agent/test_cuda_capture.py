"""The CUDA probe against the real libcudart: exact calls, threads and arguments.

Each workload prints its pid and thread ids, waits for "go", makes a known set
of calls (tests/workloads/cuda_expect.py says which, with which arguments) and
waits again, so the agent attaches before the first call and stops while the
process is still alive.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.agent.procs import Agent, Capture, JsonLineProc, trace_workload
from tests.workloads import cuda_expect
from xpucore import abi

pytestmark = pytest.mark.bpf

CUDA_ERROR_INSUFFICIENT_DRIVER = 35
CUDA13_LIB = Path("/usr/local/cuda/lib64/libcudart.so.13")


def observed(cap: Capture) -> Counter[tuple[Any, ...]]:
    e, names = cap.events, cap.names()
    return Counter(
        (
            int(e["tid"][i]),
            str(names[i]),
            int(e["stream"][i]),
            int(e["ptr"][i]),
            int(e["ptr2"][i]),
            int(e["bytes"][i]),
            (int(e["grid_x"][i]), int(e["grid_y"][i]), int(e["grid_z"][i])),
            (int(e["block_x"][i]), int(e["block_y"][i]), int(e["block_z"][i])),
            int(e["kind"][i]),
        )
        for i in range(len(e))
    )


def expected(calls: list[cuda_expect.Call], tids: list[int]) -> Counter[tuple[Any, ...]]:
    return Counter(
        (
            tids[c.thread],
            c.symbol,
            c.stream,
            c.ptr,
            c.ptr2,
            c.bytes,
            tuple(c.grid),
            tuple(c.block),
            c.kind,
        )
        for c in calls
    )


def assert_exact(
    cap: Capture, ready: dict[str, Any], calls: list[cuda_expect.Call], ret: int, comm: str
) -> None:
    ev = cap.events
    assert len(ev) == len(calls), f"{len(ev)} events for {len(calls)} calls"
    assert observed(cap) == expected(calls, ready["tids"])
    assert set(ev["pid"].tolist()) == {ready["pid"]}
    assert (ev["ret"] == ret).all()
    assert (ev["duration_ns"] > 0).all()
    # no GPU: no thread ever had a device chosen or returned, so CUDA's default is assumed
    assert (ev["flags"] == abi.EV_DEVICE_ASSUMED).all()
    assert (ev["device"] == 0).all()
    comms = {bytes(c).rstrip(b"\0").decode() for c in ev["comm"]}
    assert comms == {comm[:15]}
    assert cap.stats["kernel_drops"] == cap.stats["inflight_drops"] == 0
    assert cap.stats["events"] == len(calls)
    assert cap.batches[-1].flags & abi.BATCH_FINAL
    assert [b.seq for b in cap.batches] == list(range(len(cap.batches)))
    # per thread, calls are in the order they were made
    for tid in ready["tids"]:
        ts = ev["ts_ns"][ev["tid"] == tid]
        assert (np.diff(ts.astype(np.int64)) > 0).all()


@pytest.mark.parametrize(
    ("exe", "attach"),
    [("cuda_calls", "auto"), ("cuda_calls_ptsz", "auto"), ("cuda_calls", "perf")],
)
def test_runtime_calls_exact(build_dir: Path, tmp_path: Path, exe: str, attach: str) -> None:
    """Also with a perf link per probe, the fallback for kernels before 6.6."""
    threads, iters = 3, 4
    argv = [
        str(build_dir / "tests/workloads" / exe),
        "--threads",
        str(threads),
        "--iters",
        str(iters),
    ]
    ready, done, cap = trace_workload(build_dir, argv, tmp_path, "--attach-mode", attach)
    calls = cuda_expect.expected_calls(threads, iters, ptsz=exe.endswith("ptsz"))
    assert done["calls"] == dict(Counter(c.symbol for c in calls))
    assert_exact(cap, ready, calls, CUDA_ERROR_INSUFFICIENT_DRIVER, exe)


@pytest.mark.parametrize("exe", ["cuda_calls13", "cuda_calls13_ptsz"])
def test_runtime_calls_exact_cuda13(build_dir: Path, tmp_path: Path, exe: str) -> None:
    path = build_dir / "tests/workloads" / exe
    if not CUDA13_LIB.exists() or not path.exists():
        pytest.skip(f"CUDA 13 not installed at {CUDA13_LIB}")
    threads, iters = 2, 3
    ready, _, cap = trace_workload(
        build_dir, [str(path), "--threads", str(threads), "--iters", str(iters)], tmp_path
    )
    calls = cuda_expect.expected_calls(threads, iters, ptsz=exe.endswith("ptsz"))
    assert_exact(cap, ready, calls, CUDA_ERROR_INSUFFICIENT_DRIVER, exe)
    assert [Path(p).resolve() for p in cap.libraries] == [CUDA13_LIB.resolve()]


@pytest.mark.parametrize("exe", ["cuda_driver_calls", "cuda_driver_calls_ptsz"])
def test_driver_calls_exact(build_dir: Path, tmp_path: Path, exe: str) -> None:
    """cuLaunchKernel's 7th-9th arguments come off the stack; with per-thread default
    streams the stream-ordered calls are the driver's _ptsz entry points."""
    threads, iters = 2, 3
    argv = [
        str(build_dir / "tests/workloads" / exe),
        "--threads",
        str(threads),
        "--iters",
        str(iters),
    ]
    ready, _, cap = trace_workload(build_dir, argv, tmp_path)
    calls = cuda_expect.expected_driver_calls(threads, iters, ptsz=exe.endswith("ptsz"))
    CUDA_ERROR_NOT_INITIALIZED = 3
    assert_exact(cap, ready, calls, CUDA_ERROR_NOT_INITIALIZED, "cuda_driver_cal")


def test_python_ctypes_by_pid(build_dir: Path, tmp_path: Path, cudart12: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "workloads/cuda_ctypes.py"
    ready, done, cap = trace_workload(
        build_dir, [sys.executable, str(script), str(cudart12)], tmp_path
    )
    names = Counter(cap.names().tolist())
    assert dict(names) == done["calls"]
    assert set(cap.events["tid"].tolist()) == {ready["tid"]}
    assert (cap.events["ret"] == CUDA_ERROR_INSUFFICIENT_DRIVER).all()
    launches = cap.events[cap.names() == "cudaLaunchKernel"]
    assert len(launches) and (launches["grid_x"] > 0).all() and (launches["block_x"] > 0).all()
    assert [Path(p).resolve() for p in cap.libraries] == [cudart12.resolve()]


def test_library_mode_catches_later_process(
    build_dir: Path, tmp_path: Path, cudart12: Path
) -> None:
    """--target-library attaches to the file: a process started afterwards is traced."""
    exe = build_dir / "tests/workloads/cuda_calls"
    agent = Agent(
        build_dir,
        tmp_path / "cap.bin",
        "--target-library",
        str(cudart12),
        "--target-comm",
        "cuda_calls",
    )
    # a process with another name using the same library is not recorded
    other = JsonLineProc(
        [str(build_dir / "tests/workloads/cuda_calls_ptsz"), "--threads", "1", "--iters", "1"]
    )
    work = JsonLineProc([str(exe), "--threads", "2", "--iters", "2"])
    try:
        ready = work.read_json("ready")
        other.read_json("ready")
        other.send_line("go")
        work.send_line("go")
        other.read_json("done")
        work.read_json("done")
        cap = agent.stop()
        work.send_line("exit")
        other.send_line("exit")
        assert work.finish() == 0 and other.finish() == 0
    finally:
        work.kill()
        other.kill()
        agent.kill()
    assert cap.returncode == 0, cap.stderr
    calls = cuda_expect.expected_calls(2, 2, ptsz=False)
    assert_exact(cap, ready, calls, CUDA_ERROR_INSUFFICIENT_DRIVER, "cuda_calls")


def test_burst_larger_than_ring_counts_every_drop(build_dir: Path, tmp_path: Path) -> None:
    """16 KiB ring, never woken early: the burst overflows; received + dropped == made."""
    threads, per_thread = 2, 20_000
    argv = [
        str(build_dir / "tests/workloads/cuda_calls"),
        "--threads",
        str(threads),
        "--iters",
        "1",
        "--burst",
        str(per_thread),
    ]
    _, done, cap = trace_workload(
        build_dir, argv, tmp_path, "--ringbuf-kb", "16", "--wakeup-kb", "64", "--poll-ms", "60000"
    )
    made = sum(done["calls"].values())
    assert made == threads * per_thread
    drops = cap.stats["kernel_drops"]
    assert drops > 0, "the burst did not overflow the ring buffer"
    assert len(cap.events) + drops == made
    assert cap.final_drops["kernel_drops"] == drops
    assert cap.stats["inflight_drops"] == cap.stats["send_drops"] == 0
    assert f"{drops} ring buffer" in cap.stderr


def test_agent_takes_held_calls_while_threads_append(build_dir: Path, tmp_path: Path) -> None:
    """Calls of 400 µs on 4 threads, held up to 1 ms by their thread, taken by the agent every
    millisecond once 0.5 ms old: owners append and flush while the agent takes (both by
    compare-and-swap on the slot), and every call still arrives exactly once."""
    threads, iters = 4, 12
    argv = [str(build_dir / "tests/workloads/cuda_driver_calls"), "--threads", str(threads),
            "--iters", str(iters)]  # fmt: skip
    env = dict(os.environ, XPU_FAKE_DRIVER_DELAY_US="400")
    ready, _, cap = trace_workload(build_dir, argv, tmp_path, "--flush-ms", "1",
                                   "--poll-ms", "1", env=env)  # fmt: skip
    CUDA_ERROR_NOT_INITIALIZED = 3
    assert_exact(cap, ready, cuda_expect.expected_driver_calls(threads, iters),
                 CUDA_ERROR_NOT_INITIALIZED, "cuda_driver_cal")  # fmt: skip
    assert cap.stats["taken_from_threads"] > 0  # the agent did take from live threads


def test_call_in_flight_at_stop_is_incomplete(build_dir: Path, tmp_path: Path) -> None:
    """A call that has not returned when the agent stops comes out flagged incomplete."""
    argv = [str(build_dir / "tests/workloads/cuda_driver_calls"), "--threads", "1", "--iters", "1"]
    env = dict(os.environ, XPU_FAKE_DRIVER_DELAY_US="30000000")
    work = JsonLineProc(argv, env=env)
    agent = None
    try:
        ready = work.read_json("ready")
        agent = Agent(build_dir, tmp_path / "cap.bin", "--target-pid", str(ready["pid"]))
        work.send_line("go")
        wait_until_sleeping(ready["pid"], ready["tids"][0])
        cap = agent.stop()
    finally:
        work.kill()
        if agent:
            agent.kill()
    assert cap.returncode == 0, cap.stderr
    assert cap.stats["incomplete"] == 1
    (ev,) = cap.events
    assert ev["flags"] & abi.EV_INCOMPLETE
    assert ev["tid"] == ready["tids"][0]
    assert abi.function_name(int(ev["func"])) == cuda_expect.expected_driver_calls(1, 1)[0].symbol
    assert ev["duration_ns"] > 0


def wait_until_sleeping(pid: int, tid: int, timeout: float = 30.0) -> None:
    """Until the thread sits in a sleep syscall (inside the stand-in driver call)."""
    import time

    path = Path(f"/proc/{pid}/task/{tid}/syscall")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nr = path.read_text().split()[0]
        if nr in ("35", "230"):  # nanosleep, clock_nanosleep
            return
        os.sched_yield()
    raise TimeoutError(f"thread {tid} never slept")
