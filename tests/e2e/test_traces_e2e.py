"""Traces end to end, as root: a CUDA monitor on a workload calling the real libcudart, its
events stored, then POST traces:generate for that monitor in Perfetto and Chrome JSON. Every
stored call is one slice on its thread with its start, duration and arguments; launches and
async copies flow to their stream rows; both files validate and hold the same slices."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, eventually, monitored
from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from tests.workloads import cuda_expect
from trace_export.layouts import layout_for

pytestmark = pytest.mark.bpf


async def traced_monitor(p: Platform, build_dir: Path, threads: int, iters: int) -> str:
    """Runs cuda_calls under a CUDA monitor; returns the monitor id once all is stored."""
    _, mon = await monitored(p, [str(build_dir / "tests/workloads/cuda_calls"), "--threads",
                                 str(threads), "--iters", str(iters)],
                             {"monitor_type": "CUDA"})  # fmt: skip
    return mon


async def generate(p: Platform, filter: str, fmt: str) -> tuple[dict[str, Any], bytes]:
    r = await p.client.post(
        "/api/v1/traces:generate",
        headers=p.auth,
        json={"filter": filter, "trace_name": "e2e", "format": fmt},
    )
    assert r.status == 202, await r.text()
    job_id = (await r.json())["trace_job_id"]

    async def finished() -> Any:
        job = await p.get(f"/api/v1/traces/jobs/{job_id}")
        assert job["status"] != "FAILED", job
        return job if job["status"] == "COMPLETED" else None

    job = await eventually(finished, "trace job COMPLETED")
    r = await p.client.get(job["download_url"], headers=p.auth)
    assert r.status == 200
    assert "attachment" in r.headers["Content-Disposition"]
    return job, await r.read()


async def test_trace_of_a_monitor(
    platform: Platform, build_dir: Path, tmp_path: Path, trace_processor: Path
) -> None:
    p = platform
    threads, iters = 2, 3
    mon = await traced_monitor(p, build_dir, threads, iters)
    calls = cuda_expect.expected_calls(threads, iters)
    flt = f"monitor_id = '{mon}'"

    async def all_stored() -> Any:
        got = await p.all_events(flt)
        return got if len(got) >= len(calls) else None

    events = await eventually(all_stored, "events stored")
    assert len(events) == len(calls)

    job, data = await generate(p, flt, "perfetto")
    s = validate_perfetto(data)
    assert job["events"] == len(events)
    want = Counter((e["tid"], e["event_type"], e["duration_ns"]) for e in events)
    got = Counter((s.tracks[sl.track_uuid].tid, sl.name, sl.dur) for sl in s.slices)
    assert got == want
    for sl in s.slices:
        assert sl.args["ret"] == "cudaErrorInsufficientDriver (35)"
    cuda = layout_for("CUDA")
    enqueuing = [e for e in events if cuda.submits(e["event_type"])]
    assert len(enqueuing) and len(s.flows) == len(enqueuing)
    ends = Counter(s.tracks[steps[-1][0]].name for steps in s.flows.values())
    assert ends == Counter(cuda.queue_label(e["event_data"]["stream"]) for e in enqueuing)

    path = tmp_path / "monitor.pftrace"  # as the Perfetto UI will read it
    path.write_bytes(data)
    got_tp = tp.counts(path, trace_processor)
    assert (got_tp.slices, got_tp.instants, got_tp.flows) == (
        len(s.slices) + len(s.instants),
        len(s.instants),
        len(s.flows),
    )

    _, chrome = await generate(p, flt, "chrome")
    assert len(validate_chrome_json(chrome).slices) == len(s.slices)
