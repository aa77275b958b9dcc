"""Python attribution end to end: a CUDA monitor with config.python_stacks started through the
REST API on a Python process; the manager reads the target's CPython, the agent sends each
stack once, the backend stores them (py_frames), and the events API returns each event with
its stack and filters on its innermost Python function."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, eventually, monitored
from tests.e2e.test_traces_e2e import generate
from tests.trace_tools.validate import validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json

pytestmark = pytest.mark.bpf

SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_cuda_calls.py"


async def test_events_carry_their_python_stack(platform: Platform, cudart12: Path) -> None:
    p, rounds = platform, 3
    at = {
        m.group(1): n
        for n, text in enumerate(SCRIPT.read_text().splitlines(), 1)
        if (m := re.search(r"# at:(\w+)", text))
    }
    _, mon = await monitored(
        p,
        [sys.executable, str(SCRIPT), str(cudart12), str(rounds)],
        {"monitor_type": "CUDA", "config": {"python_stacks": True}},
    )

    async def stored() -> Any:
        got = await p.all_events(f"monitor_id = '{mon}'")
        return got if len(got) >= 3 * rounds else None

    events = await eventually(stored, "events stored")
    file = str(SCRIPT)
    seen = Counter(
        (e["event_type"], tuple((f["function"], f["line"]) for f in e["python_stack"][:2]))
        for e in events
    )
    assert seen == {
        ("cudaMemcpy", (("copy", at["copy"]), ("step", at["step_copy"]))): rounds,
        ("cudaDeviceSynchronize", (("step", at["step_sync"]), ("train", at["train"]))): rounds,
        (
            "cudaMalloc",
            (("allocate", at["allocate"]), ("main.<locals>.worker", at["worker"])),
        ): rounds,
    }
    assert all(e["python_stack"][0]["file"] == file for e in events)
    copies = await p.all_events(f"monitor_id = '{mon}' AND python_function = 'copy'")
    assert {e["event_type"] for e in copies} == {"cudaMemcpy"} and len(copies) == rounds
    ours = await p.all_events(f"monitor_id = '{mon}' AND python_file = '{file}'")
    assert len(ours) == len(events)

    # the trace draws each call inside its Python frames' slices
    _, data = await generate(p, f"monitor_id = '{mon}'", "perfetto")
    s = validate_perfetto(data)
    names = Counter(sl.name for sl in s.slices)
    assert names["copy (python_cuda_calls.py)"] == rounds
    assert names["allocate (python_cuda_calls.py)"] == 1
    depth = {sl.name: sl.depth for sl in s.slices}
    assert depth["cudaMemcpy"] == 5  # copy, step, train, main, <module>
    _, chrome = await generate(p, f"monitor_id = '{mon}'", "chrome")
    assert Counter(sl.name for sl in validate_chrome_json(chrome).slices) == names


async def test_python_monitor_samples_through_the_api(platform: Platform) -> None:
    """A PYTHON monitor from the REST API: samples stored with their stacks, nearly all in
    the function the script spins in."""
    p, hz, seconds = platform, 499, 0.5
    spin = Path(__file__).resolve().parents[1] / "workloads/python_spin.py"
    _, mon = await monitored(
        p,
        [sys.executable, str(spin)],
        {"monitor_type": "PYTHON", "config": {"sample_hz": hz}},
        go=str(seconds),
    )
    samples = await p.all_events(f"monitor_id = '{mon}'")
    spinning = [e for e in samples if e.get("python_stack", [{}])[0].get("function") == "spin"]
    assert len(spinning) >= 0.6 * hz * seconds and len(spinning) >= 0.9 * len(samples)
    assert {e["event_type"] for e in samples} == {"sample"}


CALLS_SCRIPT = Path(__file__).resolve().parents[1] / "workloads/python_calls.py"


async def test_python_function_calls_through_the_api(platform: Platform) -> None:
    """config.functions on a PYTHON monitor started through the REST API: each call of the
    functions named is stored with its stack, found by python_function, and drawn in a trace
    that validates; the names are checked before anything starts."""
    p, rounds = platform, 2
    r = await p.client.post(f"/api/v1/machines/{p.machine_id}/monitors", headers=p.auth,
                            json={"monitor_type": "CUDA", "target": {"pid": 1},
                                  "config": {"functions": ["step"]}})  # fmt: skip
    assert r.status == 400 and "config.functions" in await r.text()
    r = await p.client.post(f"/api/v1/machines/{p.machine_id}/monitors", headers=p.auth,
                            json={"monitor_type": "PYTHON", "target": {"pid": 1},
                                  "config": {"functions": ["rm -rf"]}})  # fmt: skip
    assert r.status == 400 and "config.functions" in await r.text()
    ready, mon = await monitored(
        p,
        [sys.executable, str(CALLS_SCRIPT), str(rounds)],
        {"monitor_type": "PYTHON", "config": {"functions": ["step", "boom"], "sample_hz": 1}},
    )

    async def stored() -> Any:
        got = await p.all_events(f"monitor_id = '{mon}' AND event_type = 'call'")
        return got if len(got) >= 4 * rounds else None

    calls = await eventually(stored, "calls stored")
    seen = Counter((e["tid"], e["python_stack"][0]["function"], e["flags"] & 1) for e in calls)
    assert seen == {(tid, fn, fn == "boom"): rounds for tid in (ready["tid"], ready["worker"])
                    for fn in ("step", "boom")}  # fmt: skip
    steps = await p.all_events(f"monitor_id = '{mon}' AND python_function = 'step'")
    assert len(steps) == 2 * rounds
    _, data = await generate(p, f"monitor_id = '{mon}' AND event_type = 'call'", "perfetto")
    # each call a slice named by its function, inside its callers' frames, not its own
    names = Counter(sl.name for sl in validate_perfetto(data).slices)
    assert names["step (python_calls.py)"] == names["boom (python_calls.py)"] == 2 * rounds
    assert "call" not in names
