"""The Ascend (ACL) trace layout, as msprof shows it: AscendCL/CANN calls on their threads, a
row per NPU stream with a flow from each call that enqueues a task, a row per HCCL
communicator with the rank's collectives, text arguments (op_type, model_path, config_path)
and named codes; from agent batches and from stored rows, in Perfetto and Chrome JSON."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import PerfettoSummary, validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from trace_export import (
    ROW_COLUMNS,
    EventChunk,
    from_batches,
    from_rows,
    write_chrome_json,
    write_perfetto,
)
from xpucore import abi

T0 = 1_700_000_000 * 10**9
FN = {name: fid for fid, name in abi.function_names("ACL").items()}
MiB = 1 << 20


def call(name: str, at: int, dur: int = 1_000, tid: int = 8, **fields: Any) -> dict[str, Any]:
    """An event of the named function (an aclnn<Op> as "aclnn" with op_type <Op>)."""
    if name.startswith("aclnn") and name not in FN:
        fields["op_type"] = name.removeprefix("aclnn")
        name = "aclnn"
    return {"func": FN[name], "ts_ns": at, "duration_ns": dur, "tid": tid, **fields}


# Thread 8 drives NPU 0, thread 9 NPU 1, thread 10 joins NPU 1's collectives; stream 0xa0 is
# a handle on both devices (two rows). Times are ns after T0.
ROWS = [
    call("aclInit", 1_000, op_type="/etc/acl.json"),
    call("aclrtSetDevice", 3_000),
    call("aclrtSetDevice", 3_500, tid=9, device=1),
    call("aclrtCreateStream", 5_000, stream=0xA0),
    call("aclrtMalloc", 7_000, ptr=0x1000, bytes=4 * MiB, kind=0),
    # fails: out of memory, holds nothing
    call("aclrtMalloc", 9_000, ptr=0, bytes=1 << 40, kind=0, ret=207001),
    call("aclrtMallocHost", 11_000, ptr=0x5000, bytes=MiB),  # host memory: not counted
    call("aclmdlLoadFromFile", 13_000, op_type="/models/resnet50.om", num=3),
    call("aclrtMemcpyAsync", 15_000, stream=0xA0, ptr=0x1000, ptr2=0x5000, bytes=MiB,
         bytes2=4 * MiB, kind=1),
    call("aclrtLaunchKernel", 17_000, stream=0xA0, ptr=0xF00, num=8, ptr2=0x6000, bytes=64),
    call("aclrtLaunchKernel", 17_500, tid=9, device=1, stream=0xA0, ptr=0xF00, num=4),
    call("aclopExecuteV2", 19_000, stream=0xA0, op_type="MatMul", num=2, num2=1, ptr=0x7000),
    call("aclnnAdd", 21_000, stream=0xA0, ptr=0x8000, bytes=512, handle=0x9000),
    call("aclnnMul", 21_500, tid=9, device=1, stream=0xB1, ret=161001),  # fails
    call("aclmdlExecuteAsync", 23_000, stream=0xA0, num=3, ptr=0xA000, ptr2=0xB000),
    call("HcclCommInitRootInfo", 24_000, tid=9, device=1, num=2, rank=1, handle=0xC1,
         ptr2=0xD000),
    call("HcclAllReduce", 25_000, stream=0xA0, handle=0xC0, ptr=0x1000, ptr2=0x2000,
         bytes=1024, data_type=4, op=0),
    call("HcclAllGather", 25_500, 2_000, tid=9, device=1, stream=0xB1, handle=0xC1,
         ptr=0x3000, ptr2=0x4000, bytes=256, data_type=11),
    # overlaps the all-gather on communicator 0xc1 without ending inside it: cut on that row
    call("HcclBarrier", 26_500, 4_000, tid=10, device=1, stream=0xB1, handle=0xC1),
    call("HcclBroadcast", 27_000, stream=0xB0, handle=0xC0, ptr=0x1000, bytes=16,
         data_type=3, rank=0, ret=1),  # fails: HCCL_E_PARA
    call("aclrtRecordEvent", 28_000, 200, stream=0xA0, ptr=0xE000),
    call("aclrtStreamWaitEvent", 28_500, 200, stream=0xB0, ptr=0xE000),
    call("aclrtSynchronizeStream", 29_000, stream=0xA0),  # waits: enqueues nothing
    call("aclrtFree", 31_000, ptr=0x1000),
    call("aclrtFreeHost", 33_000, ptr=0x5000),
]  # fmt: skip

STREAM_ROWS = {
    "NPU 0 stream 0xa0": ["aclrtMemcpyAsync", "aclrtLaunchKernel", "aclopExecuteV2", "aclnnAdd",
                          "aclmdlExecuteAsync", "HcclAllReduce", "aclrtRecordEvent"],
    "NPU 0 stream 0xb0": ["HcclBroadcast", "aclrtStreamWaitEvent"],
    "NPU 1 stream 0xa0": ["aclrtLaunchKernel"],
    "NPU 1 stream 0xb1": ["aclnnMul", "HcclAllGather", "HcclBarrier"],
}  # fmt: skip
FLOWS = sum(len(v) for v in STREAM_ROWS.values())
# (name, start, duration, depth) on each communicator's row
COMM_ROWS = {
    "NPU 0 HCCL communicator 0xc0": [("HcclAllReduce", 25_000, 1_000, 0),
                                     ("HcclBroadcast", 27_000, 1_000, 0)],
    "NPU 1 HCCL communicator 0xc1": [("HcclAllGather", 25_500, 2_000, 0),
                                     ("HcclBarrier", 26_500, 1_000, 1)],
}  # fmt: skip


def batch(rows: list[dict[str, Any]]) -> abi.Batch:
    ev = abi.empty_events(len(rows), "ACL")
    ev["pid"], ev["comm"] = 7, b"python"
    for i, r in enumerate(rows):
        for k, v in r.items():
            ev[k][i] = v.encode() if isinstance(v, str) else v
    return abi.decode_batch(abi.encode_batch(ev, monitor_id="m", machine_id="mach",
                                             mono_to_real_ns=T0, monitor_type="ACL"))  # fmt: skip


def chunk() -> EventChunk:
    return from_batches([batch(ROWS)])


def stored_rows(b: abi.Batch, as_text: bool = True) -> list[tuple[Any, ...]]:
    """The batch as rows of the events table (ROW_COLUMNS): event_data is the JSON of
    abi.event_records' args, as the backend stores it."""
    out = []
    for r in abi.event_records(b):
        data = json.dumps(r["args"]) if as_text else r["args"]
        out.append((r["ts_ns"], r["duration_ns"], r["pid"], r["tid"], r["ret"],
                    int(r["incomplete"]), r["func"], r["comm"], b.machine_id, data))  # fmt: skip
    assert len(out[0]) == len(ROW_COLUMNS)
    return out


def perfetto(chunks: list[EventChunk]) -> tuple[PerfettoSummary, bytes]:
    out = io.BytesIO()
    stats = write_perfetto(chunks, out)
    data = out.getvalue()
    s = validate_perfetto(data)
    assert stats.flows == len(s.flows) and stats.slices == len(s.slices)
    return s, data


def by_row(s: PerfettoSummary) -> tuple[dict[str, list[str]], dict[str, list[tuple[Any, ...]]]]:
    """Instants per queue row, and slices per row that is not a thread's."""
    instants: dict[str, list[str]] = {}
    for i in s.instants:
        instants.setdefault(s.tracks[i.track_uuid].name, []).append(i.name)
    slices: dict[str, list[tuple[Any, ...]]] = {}
    for sl in s.slices:
        track = s.tracks[sl.track_uuid]
        if track.kind != "thread":
            slices.setdefault(track.name, []).append((sl.name, sl.ts - T0, sl.dur, sl.depth))
    return instants, slices


def test_event_types_and_text_columns() -> None:
    c = chunk()
    names = [c.names[i] for i in c.name]
    assert names == [r["func"] for r in abi.event_records(batch(ROWS))]
    assert "aclnnAdd" in names and "aclnnMul" in names and "aclnn" not in names
    op = dict(zip(names, c.texts["op_type"].values(), strict=True))
    assert op["aclopExecuteV2"] == "MatMul" and op["aclnnAdd"] == "Add"
    assert op["aclrtMalloc"] == ""  # not an argument of that call
    assert c.texts["model_path"].values()[names.index("aclmdlLoadFromFile")] == \
        "/models/resnet50.om"  # fmt: skip
    assert c.texts["config_path"].values()[0] == "/etc/acl.json"
    assert "op_type" not in c.args  # text is no uint64 column


def test_calls_streams_flows_and_communicators() -> None:
    s, _ = perfetto([chunk()])
    threads = Counter((s.tracks[sl.track_uuid].tid, sl.depth) for sl in s.slices
                      if s.tracks[sl.track_uuid].kind == "thread")  # fmt: skip
    assert threads == {(8, 0): 19, (9, 0): 5, (10, 0): 1}  # every call a slice on its thread
    instants, rows = by_row(s)
    assert instants == STREAM_ROWS
    assert rows == COMM_ROWS
    assert len(s.flows) == FLOWS == 13
    for steps in s.flows.values():
        (start, start_ts), (end, end_ts) = steps
        assert s.tracks[start].kind == "thread"
        assert s.tracks[end].name in STREAM_ROWS
        assert end_ts > start_ts
    # each row sits in the process's group
    process = {u for u, t in s.tracks.items() if t.kind == "process"}
    assert {s.tracks[u].parent for u, t in s.tracks.items() if t.name.startswith("NPU ")} \
        == process and len(process) == 1  # fmt: skip


def test_arguments_text_and_named_codes() -> None:
    s, _ = perfetto([chunk()])
    args = {(sl.name, s.tracks[sl.track_uuid].kind): sl.args for sl in s.slices}

    def of(name: str) -> dict[str, Any]:
        return args[(name, "thread")]

    assert of("aclopExecuteV2") == {"op_type": "MatMul", "num_inputs": 2, "num_outputs": 1,
                                    "attr": 0x7000, "stream": 0xA0, "device": 0,
                                    "ret": "ACL_SUCCESS (0)"}  # fmt: skip
    assert of("aclnnAdd") == {"op_type": "Add", "workspace": 0x8000, "workspace_size": 512,
                              "executor": 0x9000, "stream": 0xA0, "device": 0,
                              "ret": "ACLNN_SUCCESS (0)"}  # fmt: skip
    assert of("aclnnMul")["ret"] == "ACLNN_ERR_PARAM_NULLPTR (161001)"
    assert of("aclInit") == {"config_path": "/etc/acl.json", "device": 0,
                             "ret": "ACL_SUCCESS (0)"}  # fmt: skip
    assert of("aclmdlLoadFromFile")["model_path"] == "/models/resnet50.om"
    assert of("aclrtMemcpyAsync") == {"dst": 0x1000, "dest_max": 4 * MiB, "src": 0x5000,
                                      "bytes": MiB, "kind": "ACL_MEMCPY_HOST_TO_DEVICE",
                                      "stream": 0xA0, "device": 0,
                                      "ret": "ACL_SUCCESS (0)"}  # fmt: skip
    failed = [sl.args for sl in s.slices if sl.name == "aclrtMalloc" and sl.args["ptr"] == 0]
    assert failed == [{"ptr": 0, "bytes": 1 << 40, "policy": "ACL_MEM_MALLOC_HUGE_FIRST",
                       "device": 0, "ret": "ACL_ERROR_RT_MEMORY_ALLOCATION (207001)"}]  # fmt: skip
    allreduce = {"send_buf": 0x1000, "recv_buf": 0x2000, "count": 1024,
                 "data_type": "HCCL_DATA_TYPE_FP32", "reduce_op": "HCCL_REDUCE_SUM",
                 "comm": 0xC0, "stream": 0xA0, "device": 0, "ret": "HCCL_SUCCESS (0)"}  # fmt: skip
    # the communicator row's copy has the call's arguments too
    assert of("HcclAllReduce") == args[("HcclAllReduce", "other")] == allreduce
    assert of("HcclBroadcast")["ret"] == "HCCL_E_PARA (1)"
    assert of("HcclAllGather")["data_type"] == "HCCL_DATA_TYPE_BFP16"
    assert of("HcclCommInitRootInfo") == {"n_ranks": 2, "root_info": 0xD000, "rank": 1,
                                          "comm": 0xC1, "device": 1,
                                          "ret": "HCCL_SUCCESS (0)"}  # fmt: skip


def test_device_memory_counts_device_allocations_only() -> None:
    s, _ = perfetto([chunk()])
    (memory,) = [u for u, t in s.tracks.items() if t.name == "NPU 0 ACL device memory"]
    # aclrtMalloc of 4 MiB, its aclrtFree; not the failed one, not aclrtMallocHost/FreeHost
    assert [(t - T0, v) for t, v in s.counters[memory]] == [(8_000, 4 * MiB), (32_000, 0)]


def all_slices(s: PerfettoSummary) -> list[tuple[Any, ...]]:
    return sorted((sl.name, sl.ts, sl.dur, sl.depth, repr(sl.args)) for sl in s.slices)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_chunks_give_the_same_trace(size: int) -> None:
    """Text tables and communicator rows carry across chunks (the cut barrier too)."""
    c = chunk()
    whole, _ = perfetto([c])
    parts, _ = perfetto([c.take(slice(i, i + size)) for i in range(0, len(c), size)])
    assert by_row(parts) == by_row(whole)
    assert all_slices(parts) == all_slices(whole)


@pytest.mark.parametrize("as_text", [True, False])
def test_from_stored_rows_as_from_batches(as_text: bool) -> None:
    """event_data as the backend stores it (abi.event_records' args as JSON: text arguments
    are JSON strings) gives the trace the batches give."""
    b = batch(ROWS)
    rows = from_rows(stored_rows(b, as_text), "ACL")
    direct = from_batches([b])
    assert rows.texts["op_type"].values() == direct.texts["op_type"].values()
    s1, _ = perfetto([rows])
    s2, _ = perfetto([direct])
    assert by_row(s1) == by_row(s2) == (STREAM_ROWS, COMM_ROWS)
    assert [(sl.name, sl.ts, sl.dur, sl.args) for sl in s1.slices] == \
        [(sl.name, sl.ts, sl.dur, sl.args) for sl in s2.slices]  # fmt: skip
    assert len(s1.flows) == len(s2.flows) == FLOWS
    assert list(s1.counters.values()) == list(s2.counters.values())


def test_chrome_json_has_the_same_layout() -> None:
    c = chunk()
    s, _ = perfetto([c])
    out = io.BytesIO()
    stats = write_chrome_json([c.take(slice(i, i + 4)) for i in range(0, len(c), 4)], out)
    chrome = validate_chrome_json(out.getvalue())
    assert len(chrome.slices) == stats.slices == len(s.slices) == len(ROWS) + 4
    assert len(chrome.flows) == stats.flows == FLOWS
    rows: dict[str, list[str]] = {}
    for i in chrome.instants:
        rows.setdefault(chrome.thread_names[(i.pid, i.tid)], []).append(i.name)
    assert rows == STREAM_ROWS
    comm: dict[str, list[tuple[str, float, float]]] = {}
    for sl in chrome.slices:
        name = chrome.thread_names[(sl.pid, sl.tid)]
        if name.startswith("NPU "):
            comm.setdefault(name, []).append((sl.name, sl.ts, sl.dur))
    t0 = chrome.slices[0].ts * 1000  # µs from the first event
    assert {k: [(n, round(ts * 1000 - t0) + 1_000, round(d * 1000)) for n, ts, d in v]
            for k, v in comm.items()} == \
        {k: [(n, ts, d) for n, ts, d, _ in v] for k, v in COMM_ROWS.items()}  # fmt: skip
    op = [sl.args for sl in chrome.slices if sl.name == "aclopExecuteV2"]
    assert op == [{"op_type": "MatMul", "num_inputs": 2, "num_outputs": 1, "attr": "0x7000",
                   "stream": "0xa0", "device": 0, "ret": "ACL_SUCCESS (0)"}]  # fmt: skip


def test_trace_processor_reads_the_layout(tmp_path: Path, trace_processor: Path) -> None:
    s, data = perfetto([chunk()])
    path = tmp_path / "acl.pftrace"
    path.write_bytes(data)
    slices, flows, streams, comms, op_args, thread_slices = tp.query(
        path,
        "select ts, dur, depth, name from slice where dur > 0",
        "select count(*) from flow",
        "select t.name, s.name from slice s join track t on s.track_id = t.id"
        " where t.name like 'NPU % stream %' order by s.ts",
        "select t.name, s.name, s.dur, s.depth from slice s join track t on s.track_id = t.id"
        " where t.name like 'NPU % HCCL communicator %' order by s.ts",
        "select s.name, a.key, a.display_value from slice s join args a using (arg_set_id)"
        " where a.key in ('debug.op_type', 'debug.model_path', 'debug.config_path')"
        " order by s.ts",
        "select count(*) from slice s join thread_track t on s.track_id = t.id",
        folder=trace_processor)  # fmt: skip
    want = Counter((sl.ts, sl.dur, sl.depth, sl.name) for sl in s.slices)
    assert Counter(tuple(r) for r in slices) == want
    assert flows == [[FLOWS]]
    got: dict[str, list[str]] = {}
    for track, name in streams:
        got.setdefault(track, []).append(name)
    assert got == STREAM_ROWS
    comm: dict[str, list[tuple[Any, ...]]] = {}
    for track, name, dur, depth in comms:
        comm.setdefault(track, []).append((name, dur, depth))
    assert comm == {k: [(n, d, depth) for n, _, d, depth in v] for k, v in COMM_ROWS.items()}
    assert op_args == [
        ["aclInit", "debug.config_path", "/etc/acl.json"],
        ["aclmdlLoadFromFile", "debug.model_path", "/models/resnet50.om"],
        ["aclopExecuteV2", "debug.op_type", "MatMul"],
        ["aclnnAdd", "debug.op_type", "Add"],
        ["aclnnMul", "debug.op_type", "Mul"],
    ]
    assert thread_slices == [[len(ROWS)]]
