"""NCCL on the CUDA probe, against the real libnccl.so.2 of the nvidia-nccl-cu12 wheel (no GPU
here: its calls fail, the probe still sees each with its arguments): every call of
nccl_calls with its thread, order, arguments as xpucore.abi decodes them (nccl.h names) and
return value; only ncclX is hooked (pncclX is an alias at the same address), and none of the
CUDA runtime libnccl carries inside it."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.agent.procs import trace_workload
from tests.trace_tools.validate import validate_perfetto
from tests.workloads import nccl_expect
from trace_export import from_batches, write_perfetto
from trace_export.layouts import layout_for
from xpucore import abi
from xpucore.probes import cuda as cuda_probe

pytestmark = pytest.mark.bpf

# nccl.h parameter -> decoded argument name (xpucore.probes.cuda.ARGS)
NAME = {"recvcount": "count", "sendcount": "count", "commId": "comm_id"}


def want_args(c: nccl_expect.Call) -> dict[str, int]:
    args = {NAME.get(k, k): v or 0 for k, v in c.args.items()}
    if c.symbol == "ncclCommInitRank":
        args["comm"] = 0  # the communicator it created: none, it failed
    return args


@pytest.mark.parametrize("attach", ["auto", "perf"])
def test_every_nccl_call_exactly(build_dir: Path, tmp_path: Path, attach: str) -> None:
    threads, iters = 3, 2
    argv = [str(build_dir / "tests/workloads/nccl_calls"), "--threads", str(threads),
            "--iters", str(iters)]  # fmt: skip
    ready, done, cap = trace_workload(build_dir, argv, tmp_path, "--attach-mode", attach)
    assert [Path(p).name for p in cap.libraries] == ["libnccl.so.2"]
    assert done["calls"] == nccl_expect.expected_counts(threads, iters)
    recs: list[dict[str, Any]] = [r for b in cap.batches for r in abi.event_records(b)]
    assert cap.stats["inflight_drops"] == cap.stats["kernel_drops"] == 0
    for t, tid in enumerate(ready["tids"]):
        mine = sorted((r for r in recs if r["tid"] == tid), key=lambda r: r["ts_ns"])
        exp = [c for c in nccl_expect.expected_nccl_calls(threads, iters) if c.thread == t]
        assert [r["func"] for r in mine] == [c.symbol for c in exp]
        for r, c in zip(mine, exp, strict=True):
            got = {k: v for k, v in r["args"].items() if k not in cuda_probe.EVERY_CALL}
            assert (got, r["ret"]) == (want_args(c), c.ret), (t, c)
            assert r["duration_ns"] > 0 and r["pid"] == ready["pid"]
    assert Counter(r["tid"] for r in recs) == Counter(
        {tid: len([c for c in nccl_expect.expected_nccl_calls(threads, iters) if c.thread == t])
         for t, tid in enumerate(ready["tids"])})  # fmt: skip


def test_nccl_trace_has_stream_flows_and_communicator_rows(build_dir: Path, tmp_path: Path) -> None:
    """The captured NCCL calls as a trace: each collective and send/receive flows to its
    stream row and shows on its communicator's row; returns read as ncclResult_t."""
    argv = [str(build_dir / "tests/workloads/nccl_calls"), "--threads", "2", "--iters", "1"]
    _, _, cap = trace_workload(build_dir, argv, tmp_path)
    chunk = from_batches(cap.batches)
    out = io.BytesIO()
    write_perfetto([chunk], out)
    s = validate_perfetto(out.getvalue())
    recs = [r for b in cap.batches for r in abi.event_records(b)]
    cuda = layout_for("CUDA")
    collective = [r for r in recs if cuda.grouped(r["func"])]
    # every call but init, destroy and the group brackets; the ones with a NULL comm too
    assert len(collective) == sum(
        1
        for r in recs
        if r["func"]
        not in ("ncclCommInitRank", "ncclCommDestroy", "ncclGroupStart", "ncclGroupEnd")
    )
    assert len(s.flows) == len(collective)
    rows = Counter(s.tracks[sl.track_uuid].name for sl in s.slices
                   if "NCCL communicator" in s.tracks[sl.track_uuid].name)  # fmt: skip
    assert rows == Counter(cuda.group_label(r["args"]["comm"] | r["args"]["device"] << 48)
                           for r in collective)  # fmt: skip
    rets = {sl.args["ret"] for sl in s.slices if sl.name == "ncclAllReduce"}
    assert rets == {"ncclInvalidArgument (4)"}
