"""Monitors of every pair of types on one process, in one trace: the rows come in start
order, cut into chunks of one type each (as a trace job reads them); every call is one slice
on the process's thread, Python frames included, whatever the interleaving."""

from __future__ import annotations

import io
import itertools
import random
from collections import Counter

import numpy as np
import pytest

from tests.trace_tools.validate import validate_perfetto
from trace_export import from_batches, write_perfetto
from trace_export.events import EventChunk
from xpucore import abi

T0 = 1_700_000_000 * 10**9
TYPES = ("CUDA", "ACL", "PYTHON", "SYSCALL")
STACKS = {1: ["main (t.py)", "step (t.py)"], 2: ["main (t.py)"],
          3: ["main (t.py)", "step (t.py)", "forward (t.py)"]}  # fmt: skip
LABELS = {label for frames in STACKS.values() for label in frames}


def stacks(ids: object) -> dict[int, list[str]]:
    return {i: STACKS[i] for i in ids if i in STACKS}  # type: ignore[attr-defined]


def nested_calls(rng: random.Random, kinds: tuple[str, str], n: int) -> list[tuple[str, int, int]]:
    """(type, start, duration) of n calls on one thread, nested as calls on a thread are:
    a syscall inside a CUDA call, a sample anywhere (a leaf of 10 ns)."""
    out: list[tuple[str, int, int]] = []

    def fill(start: int, end: int, depth: int) -> None:
        t = start
        while len(out) < n and t < end - 40:
            kind = rng.choice(kinds)
            if kind == "PYTHON" or depth >= 3:
                dur = 10
            else:
                dur = rng.randrange(20, max(21, (end - t) // 2))
            begin = t + rng.randrange(1, 20)
            if begin + dur > end:
                return
            out.append((kind, begin, dur))
            if dur > 10:
                fill(begin, begin + dur, depth + 1)
            t = begin + dur

    while len(out) < n:
        fill(out[-1][1] + out[-1][2] if out else 0, (len(out) + 1) * 100_000, 0)
    return sorted(out, key=lambda c: (c[1], -c[2]))


def chunk(kind: str, calls: list[tuple[int, int]], rng: random.Random) -> EventChunk:
    funcs = sorted(abi.function_names(kind))[:2] if kind != "PYTHON" else [0]  # sample
    ev = abi.empty_events(len(calls), kind)
    for i, (ts, dur) in enumerate(calls):
        ev[i]["func"], ev[i]["ts_ns"], ev[i]["duration_ns"] = rng.choice(funcs), ts, dur
        if "py_stack" in ev.dtype.names:
            ev[i]["py_stack"] = rng.choice(list(STACKS))
    ev["pid"], ev["tid"], ev["comm"] = 7, 7, b"python"
    raw = abi.encode_batch(ev, monitor_id=f"m-{kind}", machine_id="mach", mono_to_real_ns=T0,
                           monitor_type=kind)  # fmt: skip
    return from_batches([abi.decode_batch(raw)])


def by_type(calls: list[tuple[str, int, int]], rng: random.Random, most: int) -> list[EventChunk]:
    """Runs of consecutive calls of one type, at most `most` calls a chunk."""
    out = []
    for kind, run in itertools.groupby(calls, lambda c: c[0]):
        rows = [(ts, dur) for _, ts, dur in run]
        out += [chunk(kind, rows[i : i + most], rng) for i in range(0, len(rows), most)]
    return out


@pytest.mark.parametrize("kinds", list(itertools.combinations(TYPES, 2)), ids=lambda k: "+".join(k))
@pytest.mark.parametrize("seed", range(4))
def test_every_pair_of_monitor_types_on_one_process(kinds: tuple[str, str], seed: int) -> None:
    rng = random.Random(seed)
    calls = nested_calls(rng, kinds, 60)
    for most in (1, 3, 1000):
        chunks = by_type(calls, rng, most)
        out = io.BytesIO()
        write_perfetto(chunks, out, stacks=stacks)
        s = validate_perfetto(out.getvalue())
        got = Counter((sl.ts - T0, sl.dur) for sl in s.slices if sl.name not in LABELS)
        assert got == Counter((ts, dur) for _, ts, dur in calls)
        assert {s.tracks[sl.track_uuid].tid for sl in s.slices} == {7}
        frames = [sl for sl in s.slices if sl.name in LABELS]
        assert bool(frames) == any(k in ("CUDA", "ACL", "PYTHON") for k in kinds)
        for sl in frames:  # a frame holds the calls drawn inside it
            assert sl.dur >= 0 and np.isfinite(sl.dur)
