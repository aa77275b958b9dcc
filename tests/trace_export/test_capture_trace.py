"""A real libcudart capture, exported: every call once as a slice on its thread with its
duration and arguments, launches and async copies flowing to their stream rows; the
validator passes, and the Chrome JSON export has the same slices."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from tests.agent.procs import trace_workload
from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from tests.workloads import cuda_expect
from trace_export import from_batches, write_chrome_json, write_perfetto
from trace_export.layouts import layout_for

pytestmark = pytest.mark.bpf


def test_real_capture_exports_every_call(
    build_dir: Path, tmp_path: Path, trace_processor: Path
) -> None:
    threads, iters = 3, 4
    argv = [str(build_dir / "tests/workloads/cuda_calls"), "--threads", str(threads),
            "--iters", str(iters)]  # fmt: skip
    ready, _, cap = trace_workload(build_dir, argv, tmp_path)
    calls = cuda_expect.expected_calls(threads, iters)
    chunk = from_batches(cap.batches)
    assert len(chunk) == len(calls)
    # in chunks of 7, so calls and their ends cross chunk boundaries
    chunks = [chunk.take(slice(i, i + 7)) for i in range(0, len(chunk), 7)]
    out = io.BytesIO()
    stats = write_perfetto(chunks, out)
    s = validate_perfetto(out.getvalue())

    ev = cap.events
    expected = Counter(
        (int(ev["tid"][i]), str(name), int(ev["ts_ns"][i]) + cap.batches[0].mono_to_real_ns,
         int(ev["duration_ns"][i]))
        for i, name in enumerate(cap.names()))  # fmt: skip
    got = Counter((s.tracks[sl.track_uuid].tid, sl.name, sl.ts, sl.dur) for sl in s.slices)
    assert got == expected  # each call once, on its thread, with its start and duration
    assert stats.slices == len(calls)
    assert {s.tracks[sl.track_uuid].tid for sl in s.slices} == set(ready["tids"])

    # arguments as the workload passed them (cuda_expect's ground truth)
    want_args = Counter((ready["tids"][c.thread], c.symbol, c.stream, c.bytes) for c in calls)
    seen_args = Counter(
        (s.tracks[sl.track_uuid].tid, sl.name, sl.args.get("stream", 0),
         sl.args.get("bytes", sl.args.get("shared_mem", 0)))
        for sl in s.slices)  # fmt: skip
    assert seen_args == want_args
    assert {sl.args["ret"] for sl in s.slices} == {"cudaErrorInsufficientDriver (35)"}

    # every enqueuing call has a flow ending on its stream's row
    cuda = layout_for("CUDA")
    enqueuing = [c for c in calls if cuda.submits(c.symbol)]
    assert len(enqueuing) > 0 and len(s.flows) == len(enqueuing)
    names = {u: t.name for u, t in s.tracks.items()}
    ends = Counter(names[steps[-1][0]] for steps in s.flows.values())
    assert ends == Counter(cuda.queue_label(c.stream) for c in enqueuing)

    chrome = io.BytesIO()
    write_chrome_json(chunks, chrome)
    assert len(validate_chrome_json(chrome.getvalue()).slices) == len(s.slices)

    # Perfetto's own importer reads the same: every call on a thread track, every stream
    # instant, every flow, and the counter values
    path = tmp_path / "capture.pftrace"
    path.write_bytes(out.getvalue())
    got_tp = tp.counts(path, trace_processor)
    assert got_tp == tp.TraceCounts(
        slices=len(s.slices) + len(s.instants),
        instants=len(s.instants),
        flows=len(s.flows),
        counter_values=stats.counter_points,
        thread_tracks=len(ready["tids"]),
    )


def test_syscall_capture_exports_every_call(
    build_dir: Path, tmp_path: Path, trace_processor: Path
) -> None:
    """A SYSCALL capture: every call a slice on its thread, failures named by errno, and
    trace processor reads the same."""
    from tests.agent.test_syscall_capture import run

    ready, fds, cap = run(build_dir, tmp_path, 2, 2)
    chunk = from_batches(cap.batches)
    assert chunk.monitor_type == "SYSCALL" and len(chunk) == len(cap.events)
    out = io.BytesIO()
    write_perfetto([chunk], out)
    s = validate_perfetto(out.getvalue())
    ends = {t for t in ("read", "write", "nanosleep")}
    mine = [
        sl for sl in s.slices if sl.name in ends and s.tracks[sl.track_uuid].tid in ready["tids"]
    ]
    assert Counter(sl.name for sl in mine) == {"read": 6, "write": 6, "nanosleep": 6}
    for sl in mine:
        if sl.name == "read":
            assert sl.args["arg0"] == fds["zero"] and sl.args["ret"] == str(sl.args["arg2"])
    path = tmp_path / "syscalls.pftrace"
    path.write_bytes(out.getvalue())
    assert tp.counts(path, trace_processor).slices == len(s.slices) + len(s.instants)


def test_python_frames_are_slices_above_their_calls(
    build_dir: Path, tmp_path: Path, cudart12: Path, trace_processor: Path
) -> None:
    """Python attribution in the trace: each call sits inside the slices of its Python
    frames, outermost first, and trace processor reads the same parents."""
    from tests.agent.test_python_attribution import at, run, stacks
    from tests.manager.python.test_target import DEBIAN
    from trace_export.pyframes import frame_label

    rounds = 3
    _, cap = run(DEBIAN, cudart12, build_dir, tmp_path, rounds)
    labels = {
        sid: [frame_label(*f) for f in reversed(frames)] for sid, frames in stacks(cap).items()
    }  # outermost first
    chunk = from_batches(cap.batches)
    out = io.BytesIO()
    stats = write_perfetto(
        [chunk.take(slice(i, i + 4)) for i in range(0, len(chunk), 4)],
        out,
        stacks=lambda ids: {i: labels[i] for i in ids if i in labels},
    )
    s = validate_perfetto(out.getvalue())
    lines = at()
    copy_label = "copy (python_cuda_calls.py)"
    depth_of = {sl.name: sl.depth for sl in s.slices}
    main = labels[int(cap.events["py_stack"][list(cap.names()).index("cudaMemcpy")])]
    assert main[-1] == copy_label and depth_of["cudaMemcpy"] == len(main)
    # each round enters copy() again (a sync from step() comes between), while the calls
    # all come from within train(): one slice for it
    names = Counter(sl.name for sl in s.slices)
    assert names[copy_label] == rounds and names["cudaMemcpy"] == rounds
    assert names["train (python_cuda_calls.py)"] == 1 and lines["copy"] > 0
    assert stats.slices == len(s.slices) + len(s.instants) - stats.flows
    path = tmp_path / "py.pftrace"
    path.write_bytes(out.getvalue())
    (parents,) = tp.query(
        path,
        "select p.name from slice s join slice p on s.parent_id = p.id where s.name = 'cudaMemcpy'",
        folder=trace_processor,
    )
    assert parents == [[copy_label]] * rounds
    # the Chrome JSON export draws the same frames
    chrome = io.BytesIO()
    write_chrome_json(
        [chunk], chrome, stacks=lambda ids: {i: labels[i] for i in ids if i in labels}
    )
    js = validate_chrome_json(chrome.getvalue())
    assert Counter(sl.name for sl in js.slices) == names


def test_python_samples_draw_the_spinning_function(
    build_dir: Path, tmp_path: Path, trace_processor: Path
) -> None:
    """A PYTHON capture as a trace: the samples sit inside the frames they caught, so the
    spinning function is one long slice."""
    from tests.agent.test_python_attribution import py_flags, stacks
    from tests.manager.python.test_target import DEBIAN
    from trace_export.pyframes import frame_label

    script = Path(__file__).resolve().parents[1] / "workloads/python_spin.py"
    _, _, cap = trace_workload(
        build_dir,
        [str(DEBIAN), str(script)],
        tmp_path,
        "--sample-hz",
        "499",
        monitor_type="PYTHON",
        go="0.3",
        flags_for=py_flags,
    )
    labels = {sid: [frame_label(*f) for f in reversed(fr)] for sid, fr in stacks(cap).items()}
    out = io.BytesIO()
    write_perfetto(
        [from_batches(cap.batches)],
        out,
        stacks=lambda ids: {i: labels[i] for i in ids if i in labels},
    )
    s = validate_perfetto(out.getvalue())
    spin = [sl for sl in s.slices if sl.name == "spin (python_spin.py)"]
    samples = [sl for sl in s.slices if sl.name == "sample"]
    assert len(samples) == len(cap.events) and len(samples) > 100
    longest = max(spin, key=lambda sl: sl.dur)
    assert longest.dur > 0.2e9 and longest.depth == 2  # <module>, main, spin
    path = tmp_path / "samples.pftrace"
    path.write_bytes(out.getvalue())
    assert tp.counts(path, trace_processor).slices == len(s.slices) + len(s.instants)
