"""Device attribution: each call carries its thread's current device, learnt from
cudaSetDevice and cudaGetDevice, against the four-device runtime stand-in
(tests/workloads/fake_cudart_devices.c; the real runtime fails both without a GPU)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.agent.procs import trace_workload
from xpucore import abi

pytestmark = pytest.mark.bpf

INVALID_DEVICE = 101  # cudaErrorInvalidDevice
ASSUMED = abi.EV_DEVICE_ASSUMED


def expected(tids: list[int], iters: int) -> Counter[tuple[int, str, int, int, int]]:
    """(tid, function, device, flags, ret) of every call cuda_device_calls.c makes."""
    out: Counter[tuple[int, str, int, int, int]] = Counter()
    for t, tid in enumerate(tids):
        own, other = t % 4, (t + 1) % 4
        for i in range(iters * (t + 1)):
            # round 0's allocation: the device chosen before the agent attached is unknown
            malloc = (
                (tid, "cudaMalloc", 0, ASSUMED, 0) if i == 0 else (tid, "cudaMalloc", own, 0, 0)
            )
            out[malloc] += 1
            out[(tid, "cudaMemcpy", own, 0, 0)] += 1  # cudaGetDevice told the probe
            out[(tid, "cudaSetDevice", other, 0, 0)] += 1  # the device asked for
            out[(tid, "cudaLaunchKernel", other, 0, 0)] += 1
            out[(tid, "cudaSetDevice", 7, 0, INVALID_DEVICE)] += 1
            out[(tid, "cudaStreamSynchronize", other, 0, 0)] += 1  # the failed set changed nothing
            out[(tid, "cudaSetDevice", own, 0, 0)] += 1
    return out


def test_each_call_carries_its_threads_device(build_dir: Path, tmp_path: Path) -> None:
    threads, iters = 3, 2
    exe = build_dir / "tests/workloads/cuda_device_calls"
    ready, done, cap = trace_workload(
        build_dir, [str(exe), "--threads", str(threads), "--iters", str(iters)], tmp_path
    )
    ev, names = cap.events, cap.names()
    got = Counter(
        (
            int(ev["tid"][i]),
            str(names[i]),
            int(ev["device"][i]),
            int(ev["flags"][i]),
            int(ev["ret"][i]),
        )
        for i in range(len(ev))
    )
    assert got == expected(ready["tids"], iters)
    assert "cudaGetDevice" not in set(names.tolist())  # hooked, never an event
    assert sum(done["calls"].values()) == len(ev)
    assert cap.stats["inflight_drops"] == cap.stats["kernel_drops"] == 0
