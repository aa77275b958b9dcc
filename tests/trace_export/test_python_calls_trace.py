"""A PYTHON monitor's exact calls in a trace: each call is a slice named by its function,
exactly its duration, drawn inside its callers' frames and not inside a second slice of its
own; frames opened inside a call (samples under it) close within it; our validator, Chrome
JSON and Perfetto's trace processor read the same slices."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from trace_export import from_batches, write_chrome_json, write_perfetto
from xpucore import abi

T0 = 1_700_000_000 * 10**9
SAMPLE, GC, CALL = 0x000, 0x100, 0x200
STACKS = {  # stack id -> frames, outermost first (as the backend resolves them)
    1: ["main (t.py)", "step (t.py)"],
    2: ["main (t.py)", "step (t.py)", "forward (t.py)"],
    3: ["main (t.py)", "step (t.py)", "helper (t.py)"],
    4: ["main (t.py)", "step (t.py)", "boom (t.py)"],
    5: ["main (t.py)"],
}
# (func, start, duration, stack, flags): a step call holding a forward call, a sample in
# helper and a boom left by an exception; a second step; a sample in main after both
EVENTS = [(CALL, 0, 1000, 1, 0), (CALL, 100, 100, 2, 0), (SAMPLE, 300, 10, 3, 0),
          (CALL, 400, 50, 4, abi.EV_INCOMPLETE), (CALL, 2000, 500, 1, 0),
          (SAMPLE, 3000, 10, 5, 0)]  # fmt: skip


def chunk() -> object:
    ev = abi.empty_events(len(EVENTS), "PYTHON")
    for i, (func, ts, dur, stack, flags) in enumerate(EVENTS):
        ev[i]["func"], ev[i]["ts_ns"], ev[i]["duration_ns"] = func, ts, dur
        ev[i]["py_stack"], ev[i]["flags"] = stack, flags
    ev["pid"], ev["tid"], ev["comm"] = 7, 7, b"python"
    raw = abi.encode_batch(ev, monitor_id="m", machine_id="mach", mono_to_real_ns=T0,
                           monitor_type="PYTHON")  # fmt: skip
    return from_batches([abi.decode_batch(raw)])


def stacks(ids: object) -> dict[int, list[str]]:
    return {i: STACKS[i] for i in ids if i in STACKS}  # type: ignore[attr-defined]


def test_exact_calls_are_their_functions_slices(tmp_path: Path, trace_processor: Path) -> None:
    out = io.BytesIO()
    write_perfetto([chunk()], out, stacks=stacks)  # type: ignore[list-item]
    s = validate_perfetto(out.getvalue())
    got = sorted((sl.name, sl.ts - T0, sl.dur, sl.depth) for sl in s.slices)
    assert got == sorted([
        ("main (t.py)", 0, 3010, 0),
        ("step (t.py)", 0, 1000, 1), ("forward (t.py)", 100, 100, 2),
        ("helper (t.py)", 300, 10, 2), ("sample", 300, 10, 3),
        ("boom (t.py)", 400, 50, 2),
        ("step (t.py)", 2000, 500, 1),
        ("sample", 3000, 10, 1),
    ])  # fmt: skip
    boom = next(sl for sl in s.slices if sl.name == "boom (t.py)")
    assert boom.args.get("incomplete") == 1  # left by its exception
    path = tmp_path / "calls.pftrace"
    path.write_bytes(out.getvalue())
    [[[n]]] = tp.query(path, "select count(*) from slice", folder=trace_processor)
    assert n == len(s.slices)
    chrome = io.BytesIO()
    write_chrome_json([chunk()], chrome, stacks=stacks)  # type: ignore[list-item]
    cs = validate_chrome_json(chrome.getvalue())
    assert sorted((sl.name, round(sl.dur * 1000)) for sl in cs.slices) == sorted(  # us
        (name, dur) for name, _, dur, _ in got
    )
    assert np.all([sl.dur > 0 for sl in s.slices])
