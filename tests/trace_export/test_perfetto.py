"""write_perfetto and write_chrome_json on hand-made CUDA events, checked by parsing back."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import numpy as np
import pytest

from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import PerfettoSummary, validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from trace_export import EventChunk, from_batches, write_chrome_json, write_perfetto
from xpucore import abi

T0 = 1_700_000_000 * 10**9
LAUNCH, MEMCPY, MEMCPY_ASYNC, MALLOC, FREE, SYNC = 0x100, 0x400, 0x500, 0x700, 0xA00, 0xC00
CU_LAUNCH = 0x300


def events(rows: list[dict[str, Any]]) -> EventChunk:
    """One chunk from rows of event fields (ts relative to T0), pid 7 unless given."""
    ev = abi.empty_events(len(rows))
    ev["pid"], ev["comm"] = 7, b"python"
    for i, r in enumerate(rows):
        for k, v in r.items():
            ev[k][i] = v
    b = abi.decode_batch(abi.encode_batch(ev, monitor_id="m", machine_id="mach",
                                          mono_to_real_ns=T0))  # fmt: skip
    return from_batches([b])


def perfetto(chunks: list[EventChunk], compress: bool = True) -> tuple[PerfettoSummary, bytes]:
    out = io.BytesIO()
    stats = write_perfetto(chunks, out, compress=compress)
    data = out.getvalue()
    assert stats.bytes == len(data)
    return validate_perfetto(data), data


def by_track(s: PerfettoSummary) -> dict[str, list[tuple[str, int, int, int]]]:
    out: dict[str, list[tuple[str, int, int, int]]] = {}
    for sl in s.slices:
        name = s.tracks[sl.track_uuid].name
        out.setdefault(name, []).append((sl.name, sl.ts - T0, sl.dur, sl.depth))
    return out


def test_slices_nest_per_thread_with_arguments_and_return_names() -> None:
    # cudaLaunchKernel calling cuLaunchKernel inside it; another thread in parallel
    c = events([
        {"func": LAUNCH, "ts_ns": 1000, "duration_ns": 500, "tid": 8, "ret": 35,
         "ptr": 0xABC, "grid_x": 4, "grid_y": 2, "grid_z": 1, "block_x": 128, "block_y": 1,
         "block_z": 1, "bytes": 64, "stream": 9},
        {"func": CU_LAUNCH, "ts_ns": 1100, "duration_ns": 300, "tid": 8, "ret": 100},
        {"func": MEMCPY, "ts_ns": 1200, "duration_ns": 50, "tid": 9, "bytes": 4096, "kind": 1,
         "ptr": 0x10, "ptr2": 0x20},
    ])  # fmt: skip
    s, _ = perfetto([c])
    tracks = by_track(s)
    assert sorted(tracks) == ["python"]  # threads are named by their comm
    slices = sorted((sl.name, sl.ts - T0, sl.dur, sl.depth, s.tracks[sl.track_uuid].tid)
                    for sl in s.slices)  # fmt: skip
    assert slices == [("cuLaunchKernel", 1100, 300, 1, 8), ("cudaLaunchKernel", 1000, 500, 0, 8),
                      ("cudaMemcpy", 1200, 50, 0, 9)]  # fmt: skip
    args = {sl.name: sl.args for sl in s.slices}
    assert args["cudaLaunchKernel"] == {
        "func": 0xABC,
        "grid": "(4, 2, 1)",
        "block": "(128, 1, 1)",
        "shared_mem": 64,
        "stream": 9,
        "device": 0,
        "ret": "cudaErrorInsufficientDriver (35)",
    }
    assert args["cuLaunchKernel"]["ret"] == "CUDA_ERROR_NO_DEVICE (100)"
    assert args["cudaMemcpy"] == {"dst": 0x10, "src": 0x20, "bytes": 4096,
                                  "kind": "HostToDevice", "device": 0,
                                  "ret": "cudaSuccess (0)"}  # fmt: skip


def test_async_calls_flow_to_their_stream_row() -> None:
    """A row per (device, stream): the same handle on two GPUs is two rows."""
    c = events([
        {"func": LAUNCH, "ts_ns": 1000, "duration_ns": 100, "tid": 8, "stream": 0x55,
         "device": 1},
        {"func": MEMCPY_ASYNC, "ts_ns": 2000, "duration_ns": 100, "tid": 8, "stream": 0x55,
         "device": 1},
        {"func": MEMCPY_ASYNC, "ts_ns": 3000, "duration_ns": 100, "tid": 8, "stream": 0},
        {"func": SYNC, "ts_ns": 4000, "duration_ns": 100, "tid": 8, "stream": 0x55},
        {"func": LAUNCH, "ts_ns": 5000, "duration_ns": 100, "tid": 8, "stream": 0x55},
    ])  # fmt: skip
    s, _ = perfetto([c])
    rows = {s.tracks[i.track_uuid].name: [] for i in s.instants}
    for i in s.instants:
        rows[s.tracks[i.track_uuid].name].append((i.name, i.ts - T0))
    assert rows == {
        "GPU 1 CUDA stream 0x55": [("cudaLaunchKernel", 1100), ("cudaMemcpyAsync", 2100)],
        "GPU 0 CUDA stream 0 (legacy default)": [("cudaMemcpyAsync", 3100)],
        "GPU 0 CUDA stream 0x55": [("cudaLaunchKernel", 5100)]}  # fmt: skip
    assert len(s.flows) == 4  # the sync enqueues nothing
    for steps in s.flows.values():
        (start_track, start_ts), (end_track, end_ts) = steps
        assert s.tracks[start_track].tid == 8
        assert " CUDA stream " in s.tracks[end_track].name
        assert end_ts > start_ts


@pytest.mark.parametrize("split", [None, 2, 3])
def test_flows_of_nested_calls_each_reach_their_own_instant(
    split: int | None, tmp_path: Any, trace_processor: Any
) -> None:
    """Flow ids are free again once their flow ends (one id per thread and nesting level):
    a launch enclosing two more, then one after, over chunks too, make four flows from each
    call to its own instant, as our validator and Perfetto's trace processor read them."""
    rows = [
        {"func": LAUNCH, "ts_ns": 1000, "duration_ns": 500, "tid": 8, "stream": 0x55},
        {"func": CU_LAUNCH, "ts_ns": 1100, "duration_ns": 100, "tid": 8, "stream": 0x55},
        {"func": CU_LAUNCH, "ts_ns": 1300, "duration_ns": 100, "tid": 8, "stream": 0x66},
        {"func": LAUNCH, "ts_ns": 2000, "duration_ns": 100, "tid": 8, "stream": 0x66},
        {"func": LAUNCH, "ts_ns": 1050, "duration_ns": 900, "tid": 9, "stream": 0x55},
    ]  # fmt: skip
    rows.sort(key=lambda r: r["ts_ns"])
    chunks = [events(rows)] if split is None else [events(rows[:split]), events(rows[split:])]
    s, data = perfetto(chunks)
    got = sorted((s.tracks[a].tid, a_ts - T0, s.tracks[b].name, b_ts - T0)
                 for (a, a_ts), (b, b_ts) in s.flows.values())  # fmt: skip
    assert got == [(8, 1000, "GPU 0 CUDA stream 0x55", 1500),
                   (8, 1100, "GPU 0 CUDA stream 0x55", 1200),
                   (8, 1300, "GPU 0 CUDA stream 0x66", 1400),
                   (8, 2000, "GPU 0 CUDA stream 0x66", 2100),
                   (9, 1050, "GPU 0 CUDA stream 0x55", 1950)]  # fmt: skip
    path = tmp_path / "flows.pftrace"
    path.write_bytes(data)
    [[[flows]]] = tp.query(path, "select count(*) from flow", folder=trace_processor)
    assert flows == 5


def test_memory_counter_follows_allocations_and_frees() -> None:
    c = events([
        {"func": MALLOC, "ts_ns": 1000, "duration_ns": 10, "tid": 8, "ptr": 0xA, "bytes": 100},
        {"func": MALLOC, "ts_ns": 2000, "duration_ns": 10, "tid": 8, "ptr": 0xB, "bytes": 50},
        {"func": MALLOC, "ts_ns": 3000, "duration_ns": 10, "tid": 8, "ptr": 0, "bytes": 70,
         "ret": 2},  # failed: holds nothing
        {"func": FREE, "ts_ns": 4000, "duration_ns": 10, "tid": 8, "ptr": 0xA},
        {"func": FREE, "ts_ns": 5000, "duration_ns": 10, "tid": 8, "ptr": 0xDEAD},  # unknown
    ])  # fmt: skip
    s, _ = perfetto([c])
    memory = [u for u, t in s.tracks.items() if t.name == "GPU 0 CUDA device memory"]
    assert len(memory) == 1
    assert [(ts - T0, v) for ts, v in s.counters[memory[0]]] == [(1010, 100), (2010, 150),
                                                                 (4010, 50)]  # fmt: skip


def test_calls_spanning_chunks_stay_nested_and_in_order() -> None:
    """An outer call that ends chunks later, calls starting in the same nanosecond across a
    chunk boundary (the longer is the outer one), and chunked output equal to unchunked."""
    rows = [{"func": SYNC, "ts_ns": 1000, "duration_ns": 100_000, "tid": 8}]
    rows += [{"func": LAUNCH, "ts_ns": 2000 + 100 * i, "duration_ns": 50, "tid": 9,
              "stream": 1} for i in range(30)]  # fmt: skip
    rows += [{"func": MEMCPY, "ts_ns": 9000, "duration_ns": 10, "tid": 8},
             {"func": SYNC, "ts_ns": 9000, "duration_ns": 50, "tid": 8}]  # fmt: skip
    whole = events(sorted(rows, key=lambda r: r["ts_ns"]))
    # the two calls at 9000 are rows 31 and 32: chunks of 8 split them apart
    chunked = [whole.take(slice(i, i + 8)) for i in range(0, len(whole), 8)]
    s1 = perfetto([whole], compress=False)[0]
    s2 = perfetto(chunked, compress=False)[0]
    assert by_track(s1) == by_track(s2)
    on8 = [(sl.name, sl.ts - T0, sl.depth) for sl in s2.slices if s2.tracks[sl.track_uuid].tid == 8]
    assert sorted(on8, key=lambda x: (x[1], x[2])) == [
        ("cudaStreamSynchronize", 1000, 0), ("cudaStreamSynchronize", 9000, 1),
        ("cudaMemcpy", 9000, 2)]  # fmt: skip
    assert len(s2.slices) == len(whole)


def test_calls_starting_together_over_several_chunks() -> None:
    """Chunks of one call each, all starting in the same nanosecond on one thread, the
    longest last: held back until a later start, then nested longest outermost."""
    rows = [{"func": SYNC, "ts_ns": 5000, "duration_ns": 10 * (i + 1), "tid": 8}
            for i in range(4)]  # fmt: skip
    rows.append({"func": LAUNCH, "ts_ns": 9000, "duration_ns": 5, "tid": 8, "stream": 1})
    whole = events(rows)
    s = perfetto([whole.take(slice(i, i + 1)) for i in range(len(whole))])[0]
    nested = sorted((sl.depth, sl.dur) for sl in s.slices if sl.ts - T0 == 5000)
    assert nested == [(0, 40), (1, 30), (2, 20), (3, 10)]
    assert len(s.slices) == 5


def test_same_events_give_the_same_bytes() -> None:
    c = events([{"func": LAUNCH, "ts_ns": 1000 * i, "duration_ns": 10, "tid": 8 + i % 3,
                 "stream": i % 2} for i in range(1, 200)])  # fmt: skip
    assert perfetto([c])[1] == perfetto([c])[1]


def test_incomplete_calls_are_marked() -> None:
    c = events([{"func": SYNC, "ts_ns": 1000, "duration_ns": 10, "tid": 8, "flags": 1}])
    s, _ = perfetto([c])
    assert s.slices[0].args["incomplete"] == 1


def test_empty_input_is_a_valid_trace() -> None:
    for compress in (True, False):
        s, data = perfetto([], compress=compress)
        assert s.slices == [] and s.packet_count == 1 and data  # the clock snapshot alone


@pytest.mark.parametrize("chunk", [5, 1000])
def test_chrome_json_has_the_same_slices(chunk: int) -> None:
    rng = np.random.default_rng(3)
    rows = [{"func": int(rng.choice([LAUNCH, MEMCPY, SYNC, MALLOC])), "ts_ns": 1000 * i,
             "duration_ns": 500, "tid": 8 + i % 2, "stream": 5, "ptr": 16 * i, "bytes": 8}
            for i in range(1, 60)]  # fmt: skip
    c = events(rows)
    chunks = [c.take(slice(i, i + chunk)) for i in range(0, len(c), chunk)]
    s, _ = perfetto(chunks)
    out = io.BytesIO()
    stats = write_chrome_json(chunks, out)
    chrome = validate_chrome_json(out.getvalue())
    assert len(chrome.slices) == len(s.slices) == stats.slices == len(rows)
    doc = json.loads(out.getvalue())
    x = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in x} == {sl.name for sl in s.slices}
    assert doc["otherData"]["trace_start_unix_ns"] == T0 + 1000


def test_calls_of_no_duration_are_slices_too() -> None:
    """A call of no duration (a SYSCALL exit) at the instant one call ends and another
    begins: its end sorts after its own begin."""
    c = events([
        {"func": LAUNCH, "ts_ns": 1000, "duration_ns": 500, "tid": 8},
        {"func": SYNC, "ts_ns": 1500, "duration_ns": 0, "tid": 8},
        {"func": MEMCPY, "ts_ns": 1500, "duration_ns": 100, "tid": 8},
        {"func": SYNC, "ts_ns": 3000, "duration_ns": 0, "tid": 8},
    ])  # fmt: skip
    s, _ = perfetto([c])
    assert sorted((sl.ts - T0, sl.dur, sl.depth, sl.name) for sl in s.slices) == [
        (1000, 500, 0, "cudaLaunchKernel"),
        (1500, 0, 1, "cudaStreamSynchronize"),
        (1500, 100, 0, "cudaMemcpy"),
        (3000, 0, 0, "cudaStreamSynchronize"),
    ]


def test_a_failing_source_leaves_no_compression_running() -> None:
    """The events stop coming mid-way (deleted under a trace job): the error reaches the
    caller, and the writer's compression threads are gone."""
    c = events([{"func": LAUNCH, "ts_ns": 1000 * i, "duration_ns": 10, "tid": 8,
                 "stream": 1} for i in range(1, 20_000)])  # fmt: skip

    def source() -> Any:
        yield c
        raise RuntimeError("events deleted")

    with pytest.raises(RuntimeError, match="events deleted"):
        write_perfetto(source(), io.BytesIO())
    assert not [t for t in threading.enumerate() if t.name.startswith("trace-compress")]
