"""Perfetto's own trace processor (WebAssembly, tests.trace_tools.trace_processor) reads our
traces as the validator does: the same slices with the same nesting, instants, flows, counter
values and arguments. Only the validator checks rules; this checks the UI's importer agrees."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto
from trace_export import from_batches, write_perfetto
from trace_export.layouts import layout_for
from xpucore import abi

T0 = 1_700_000_000 * 10**9
LAUNCH, MEMCPY_ASYNC, MALLOC, FREE, SYNC = 0x100, 0x500, 0x700, 0xA00, 0xC00
CU_LAUNCH = 0x300


def workload(n: int = 300) -> bytes:
    """Three threads of two processes: launches with a nested driver launch, async copies on
    two GPUs, allocations and frees, syncs; written in chunks of 37."""
    rng = np.random.default_rng(3)
    rows = []
    t = 0
    for i in range(n):
        pid = 7 if i % 3 else 9
        tid = pid * 10 + i % 2
        t += int(rng.integers(2_000, 9_000))
        func = [LAUNCH, MEMCPY_ASYNC, MALLOC, FREE, SYNC][i % 5]
        row = dict(
            func=func,
            ts_ns=t,
            duration_ns=1_000,
            pid=pid,
            tid=tid,
            stream=0x10 + i % 2,
            device=i % 2,
            ptr=0x1000 + (i // 5) * 0x100,
            bytes=4096,
        )
        rows.append(row)
        if func == LAUNCH:  # the runtime's launch calls the driver's, inside it
            rows.append(dict(row, func=CU_LAUNCH, ts_ns=t + 100, duration_ns=500))
    ev = abi.empty_events(len(rows))
    ev["comm"] = b"python"
    for i, r in enumerate(rows):
        for k, v in r.items():
            ev[k][i] = v
    b = abi.decode_batch(abi.encode_batch(ev, monitor_id="m", machine_id="mach",
                                          mono_to_real_ns=T0))  # fmt: skip
    chunk = from_batches([b])
    out = io.BytesIO()
    write_perfetto([chunk.take(slice(i, i + 37)) for i in range(0, len(chunk), 37)], out)
    return out.getvalue()


@pytest.fixture(scope="module")
def data() -> bytes:
    return workload()


def test_same_slices_nesting_flows_and_counters(
    data: bytes, tmp_path: Path, trace_processor: Path
) -> None:
    path = tmp_path / "t.pftrace"
    path.write_bytes(data)
    s = validate_perfetto(data)
    rows, flows, counters, names = tp.query(
        path,
        "select ts, dur, depth, name from slice where dur > 0",
        "select count(*) from flow",
        "select count(*) from counter",
        "select distinct name from track where name like 'GPU % stream %' order by name",
        folder=trace_processor,
    )
    assert Counter(tuple(r) for r in rows) == Counter(
        (sl.ts, sl.dur, sl.depth, sl.name) for sl in s.slices
    )
    assert any(depth == 1 for _, _, depth, _ in rows)  # the driver launches, nested
    assert flows[0][0] == len(s.flows) > 0
    assert counters[0][0] > 0
    # a row per (GPU, stream)
    assert [n for (n,) in names] == ["GPU 0 CUDA stream 0x10", "GPU 1 CUDA stream 0x11"]


def test_arguments_as_annotations(data: bytes, tmp_path: Path, trace_processor: Path) -> None:
    path = tmp_path / "t.pftrace"
    path.write_bytes(data)
    s = validate_perfetto(data)
    (rows,) = tp.query(path, "select slice.ts, args.key, args.display_value from slice join args"
                             " using (arg_set_id) where slice.name = 'cudaMemcpyAsync'",
                       folder=trace_processor)  # fmt: skip
    got: dict[int, dict[str, str]] = {}
    for ts, key, value in rows:
        got.setdefault(ts, {})[key.removeprefix("debug.")] = value
    pointers = layout_for("CUDA").pointers  # written as pointer values: shown in hex
    want = {
        sl.ts: {k: hex(v) if k in pointers else str(v) for k, v in sl.args.items()}
        for sl in s.slices
        if sl.name == "cudaMemcpyAsync"
    }
    assert got == want and len(want) == 60


def test_a_failed_query_is_named(tmp_path: Path, trace_processor: Path) -> None:
    path = tmp_path / "t.pftrace"
    path.write_bytes(workload(10))
    with pytest.raises(RuntimeError, match=r"(?s)select nope from nowhere: .*no such table"):
        tp.query(
            path, "select count(*) from slice", "select nope from nowhere", folder=trace_processor
        )
