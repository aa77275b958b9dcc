"""Ascend end to end, as root: an ACL monitor started through the REST API on the stand-in
workload (tests/workloads/ascend), its events stored with their text arguments and queried
back, then a trace of it: every call a slice on its thread, a flow from each call that
enqueues work to its NPU stream row, HCCL collectives on their communicator rows; our
validator and Perfetto's trace processor both read it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, eventually, monitored
from tests.e2e.test_traces_e2e import generate
from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto
from tests.workloads import acl_expect
from trace_export.layouts import layout_for

pytestmark = pytest.mark.bpf


async def test_acl_monitor_events_and_trace(
    platform: Platform, build_dir: Path, tmp_path: Path, trace_processor: Path
) -> None:
    p, threads, iters = platform, 2, 1
    _, mon = await monitored(p, [str(build_dir / "tests/workloads/ascend/acl_calls"),
                                 "--threads", str(threads), "--iters", str(iters)],
                             {"monitor_type": "ACL"})  # fmt: skip
    want = Counter(c.symbol for c in acl_expect.expected_acl_calls(threads, iters)
                   if not c.symbol.endswith("GetWorkspaceSize"))  # fmt: skip
    flt = f"monitor_id = '{mon}'"

    async def all_stored() -> Any:
        got = await p.all_events(flt)
        return got if len(got) >= sum(want.values()) else None

    events = await eventually(all_stored, "events stored")
    assert Counter(e["event_type"] for e in events) == want
    ops = {e["event_data"]["op_type"] for e in events if e["event_type"] == "aclopExecuteV2"}
    assert ops == {"Add", "MatMul"}  # acl_expect.OP_TYPES of rounds 0 and 1
    nn = await p.all_events(f"{flt} AND event_type = 'aclnnMatmul'")
    assert len(nn) == want["aclnnMatmul"] and nn[0]["event_data"]["op_type"] == "Matmul"

    job, data = await generate(p, flt, "perfetto")
    s = validate_perfetto(data)
    assert job["events"] == len(events)
    acl = layout_for("ACL")
    on_threads = Counter((s.tracks[sl.track_uuid].tid, sl.name) for sl in s.slices
                         if s.tracks[sl.track_uuid].tid)  # fmt: skip
    assert on_threads == Counter((e["tid"], e["event_type"]) for e in events)
    enqueuing = [e for e in events if acl.submits(e["event_type"])]
    assert len(enqueuing) and len(s.flows) == len(enqueuing)
    ends = Counter(s.tracks[steps[-1][0]].name for steps in s.flows.values())
    assert ends == Counter(acl.queue_label(e["event_data"]["stream"]
                                           | e["event_data"]["device"] << 48)
                           for e in enqueuing)  # fmt: skip
    comm_rows = Counter(s.tracks[sl.track_uuid].name for sl in s.slices
                        if "HCCL communicator" in s.tracks[sl.track_uuid].name)  # fmt: skip
    grouped = [e for e in events if acl.grouped(e["event_type"])]
    assert sum(comm_rows.values()) == len(grouped) > 0

    path = tmp_path / "acl.pftrace"
    path.write_bytes(data)
    got_tp = tp.counts(path, trace_processor)
    assert (got_tp.slices, got_tp.flows) == (len(s.slices) + len(s.instants), len(s.flows))
