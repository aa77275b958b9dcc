"""Aggregates of ACL events: bytes copied (a 2-D copy moves width x height), device memory
allocated and held per device (aclrtMalloc[Cached] and aclrtFree; aclrtMallocHost is host
memory), calls and errors per function."""

from __future__ import annotations

from backend.aggregates import Aggregator, Point
from xpucore import abi

S = 10**9
T0 = 1_900_000_000 * S
IDS = {name: fid for fid, name in abi.function_names("ACL").items()}


def acl_batch(calls: list[tuple[str, dict[str, int], int]]) -> abi.Batch:
    """One event per (function, fields, ret), 1 ms apart from T0, pid 4100."""
    ev = abi.empty_events(len(calls), "ACL")
    for i, (name, fields, ret) in enumerate(calls):
        ev[i]["func"] = IDS[name]
        ev[i]["ts_ns"] = i * 10**6
        ev[i]["duration_ns"] = 1000 * (i + 1)
        ev[i]["ret"] = ret
        ev[i]["pid"] = ev[i]["tid"] = 4100
        for k, v in fields.items():
            ev[i][k] = v
    raw = abi.encode_batch(
        ev,
        monitor_id="7d9b8a3c-1111-4222-8333-00000000000a",
        machine_id="npu-host",
        mono_to_real_ns=T0,
        monitor_type="ACL",
    )
    return abi.decode_batch(raw)


def aggregate(b: abi.Batch) -> list[Point]:
    out: list[Point] = []
    agg = Aggregator(out.extend, clock_ns=lambda: T0 + 3600 * S)
    agg.add([b])
    agg.flush()
    return out


def test_acl_copies_allocations_and_memory() -> None:
    b = acl_batch([
        ("aclrtMalloc", {"ptr": 0xA000, "bytes": 4096, "device": 1}, 0),
        ("aclrtMallocCached", {"ptr": 0xB000, "bytes": 1000, "device": 1}, 0),
        ("aclrtMallocHost", {"ptr": 0xC000, "bytes": 777, "device": 1}, 0),
        ("aclrtMalloc", {"ptr": 0, "bytes": 5555, "device": 1}, 207001),  # failed
        ("aclrtMemcpy", {"bytes": 300, "kind": 1, "device": 1}, 0),
        ("aclrtMemcpyAsync", {"bytes": 200, "kind": 2, "device": 1}, 0),
        ("aclrtMemcpy2d", {"bytes": 64, "num": 8, "kind": 3, "device": 1}, 0),
        ("aclrtMemcpy2dAsync", {"bytes": 10, "num": 3, "kind": 1, "device": 1}, 0),
        ("aclrtFree", {"ptr": 0xA000, "device": 1}, 0),
        ("aclrtFreeHost", {"ptr": 0xC000, "device": 1}, 0),
        ("aclnn", {"op_type": b"Add", "device": 1}, 0),
        ("aclnn", {"op_type": b"Add", "device": 1}, 0),
        ("aclnn", {"op_type": b"MatMul", "device": 1}, 0),
    ])  # fmt: skip
    points = aggregate(b)
    calls = {dict(p.tags)["function"]: p.fields for p in points if p.measurement == "xpu_calls"}
    assert calls["aclrtMemcpy"]["bytes_copied"] == 300
    assert calls["aclrtMemcpyAsync"]["bytes_copied"] == 200
    assert calls["aclrtMemcpy2d"]["bytes_copied"] == 64 * 8
    assert calls["aclrtMemcpy2dAsync"]["bytes_copied"] == 30
    assert calls["aclrtMalloc"]["bytes_allocated"] == 4096
    assert (calls["aclrtMalloc"]["calls"], calls["aclrtMalloc"]["errors"]) == (2, 1)
    assert calls["aclrtMallocCached"]["bytes_allocated"] == 1000
    assert calls["aclrtMallocHost"]["bytes_allocated"] == 0  # host memory
    # each aclnn op a function of its own, as the events name it
    assert (calls["aclnnAdd"]["calls"], calls["aclnnMatMul"]["calls"]) == (2, 1)
    assert "aclnn" not in calls
    assert all(dict(p.tags)["device"] == "1" for p in points if p.measurement == "xpu_calls")
    memory = [p for p in points if p.measurement == "xpu_memory"]
    assert len(memory) == 1 and dict(memory[0].tags)["device"] == "1"
    # held at the end: the cached 1000 (4096 freed; the host block never counted); most 5096
    assert (memory[0].fields["held_bytes"], memory[0].fields["held_max_bytes"]) == (1000, 5096)
