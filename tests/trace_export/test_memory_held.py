"""Device memory held is one quantity: the same capture through Grafana's aggregates
(backend.aggregates, what InfluxDB stores) and through the traces (Perfetto and Chrome JSON,
read back with the validators) gives the same bytes held per process and device, the most
held included (xpucore.memory's ledger)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from backend.aggregates import Aggregator, Point
from tests.trace_tools.validate import validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from trace_export import from_batches, write_chrome_json, write_perfetto
from xpucore import abi, calls

T0 = 1_700_000_000 * 10**9
MiB = 1 << 20
Held = dict[tuple[int, int], tuple[int, int]]  # (pid, device) -> (held at the end, most held)


def fid(monitor_type: str, name: str) -> int:
    return next(f for f, n in abi.function_names(monitor_type).items() if n == name)


def call(monitor_type: str, name: str, at: int, pid: int = 7, **fields: Any) -> dict[str, Any]:
    return {"func": fid(monitor_type, name), "ts_ns": at, "duration_ns": 100, "pid": pid,
            "tid": pid, **fields}  # fmt: skip


def cuda_capture() -> list[dict[str, Any]]:
    def c(name: str, at: int, **f: Any) -> dict[str, Any]:
        return call("CUDA", name, at, **f)

    return [
        c("cudaMalloc", 1000, ptr=0xA, bytes=100, device=0),
        c("cudaMalloc", 2000, ptr=0xB, bytes=50, device=1),
        # 0xA allocated again while live (its free was not seen): replaces, never adds
        c("cudaMalloc", 3000, ptr=0xA, bytes=300, device=0),
        c("cudaFree", 4000, ptr=0xDEAD, device=0),  # never allocated: changes nothing
        c("cudaMalloc", 5000, ptr=0, bytes=70, device=1, ret=2),  # failed: counts nothing
        c("cudaMalloc", 6000, ptr=0xC, bytes=20, device=1),
        c("cudaFree", 7000, ptr=0xC, device=0),  # counts on the device 0xC came from
        c("cudaMalloc", 8000, pid=8, ptr=0xA, bytes=1000, device=0),  # another process
    ]


CUDA_HELD: Held = {(7, 0): (300, 300), (7, 1): (50, 70), (8, 0): (1000, 1000)}


def acl_capture() -> list[dict[str, Any]]:
    def c(name: str, at: int, **f: Any) -> dict[str, Any]:
        return call("ACL", name, at, **f)

    return [
        c("aclrtMalloc", 1000, ptr=0xA, bytes=4 * MiB, device=0),
        c("aclrtMallocHost", 2000, ptr=0xC, bytes=777, device=0),  # host memory
        # aclrtFreeHost frees host memory: not a device free, whatever its pointer
        c("aclrtFreeHost", 3000, ptr=0xA, device=0),
        c("aclrtMallocCached", 4000, ptr=0xB, bytes=MiB, device=1),
        c("aclrtFree", 5000, ptr=0xB, device=1),
        c("aclrtFree", 6000, ptr=0xDEAD, device=1),  # never allocated: changes nothing
    ]


ACL_HELD: Held = {(7, 0): (4 * MiB, 4 * MiB), (7, 1): (0, MiB)}


def batch(monitor_type: str, rows: list[dict[str, Any]]) -> abi.Batch:
    ev = abi.empty_events(len(rows), monitor_type)
    ev["comm"] = b"python"
    for i, r in enumerate(rows):
        for k, v in r.items():
            ev[k][i] = v
    return abi.decode_batch(
        abi.encode_batch(
            ev, monitor_id="m", machine_id="mach", mono_to_real_ns=T0, monitor_type=monitor_type
        )
    )


def aggregated(b: abi.Batch) -> Held:
    points: list[Point] = []
    agg = Aggregator(points.extend, clock_ns=lambda: T0 + 10**9)
    agg.add([b])
    agg.flush()
    out: Held = {}
    for p in sorted((p for p in points if p.measurement == "xpu_memory"), key=lambda p: p.time_ns):
        tags = dict(p.tags)
        held, most = int(p.fields["held_bytes"]), int(p.fields["held_max_bytes"])
        key = (int(tags["pid"]), int(tags["device"]))
        out[key] = (held, max(most, out.get(key, (0, 0))[1]))
    return out


def device_of(name: str, label: str) -> int:
    """The device of a memory counter named "<label> <device> <API> device memory"."""
    head, number, _ = name.split(" ", 2)
    assert head == label, name
    return int(number)


def perfetto_held(b: abi.Batch, label: str) -> Held:
    out = io.BytesIO()
    write_perfetto([from_batches([b])], out)
    s = validate_perfetto(out.getvalue())
    held: Held = {}
    for uuid, points in s.counters.items():
        track = s.tracks[uuid]
        if not track.name.endswith("device memory"):
            continue
        assert track.parent is not None
        pid = s.tracks[track.parent].pid
        assert pid is not None
        values = [int(v) for _, v in sorted(points)]
        held[(pid, device_of(track.name, label))] = (values[-1], max(values))
    return held


def chrome_held(b: abi.Batch, label: str) -> Held:
    out = io.BytesIO()
    write_chrome_json([from_batches([b])], out)
    s = validate_chrome_json(out.getvalue())
    held: Held = {}
    for (pid, name), points in s.counters.items():
        if name.endswith("device memory"):
            values = [int(args["bytes"]) for _, args in sorted(points, key=lambda p: p[0])]
            held[(pid, device_of(name, label))] = (values[-1], max(values))
    return held


@pytest.mark.parametrize(("monitor_type", "capture", "label", "want"), [
    ("CUDA", cuda_capture, "GPU", CUDA_HELD),
    ("ACL", acl_capture, "NPU", ACL_HELD),
])  # fmt: skip
def test_grafana_and_traces_hold_the_same_memory(monitor_type: str, capture: Any, label: str,
                                                 want: Held) -> None:  # fmt: skip
    b = batch(monitor_type, sorted(capture(), key=lambda r: r["ts_ns"]))
    assert aggregated(b) == want
    assert perfetto_held(b, label) == want
    assert chrome_held(b, label) == want


def test_acl_frees_are_device_frees_only() -> None:
    """One rule for which ACL calls free device memory, the schema's: aclrtFree, not
    aclrtFreeHost (of the same argument class)."""
    assert calls.functions("ACL", "free") == {"aclrtFree"}
    assert calls.functions("ACL", "alloc") == {"aclrtMalloc", "aclrtMallocCached"}
    assert not calls.is_kind("ACL", "free", "aclrtFreeHost")
