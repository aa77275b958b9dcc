"""Sampled counters beside the events (trace_export.counters): each series a counter track in
its group, holding exactly its points, as our validator and Perfetto's trace processor read
them, in a trace with events and in one without."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.trace_export.test_memory_held import T0, batch, call
from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto
from trace_export import CounterSeries, EventChunk, from_batches, write_perfetto

SERIES = [
    CounterSeries("node-1 devices", "node-1 gpu0 utilisation %", "%",
                  [(T0 - 10**9, 7.0), (T0 + 500, 0.0), (T0 + 2 * 10**9, 55.0)]),
    CounterSeries("node-1 devices", "node-1 gpu0 power W", "W", [(T0 + 100, 100.01)]),
    CounterSeries("node-2 devices", "node-2 npu7 memory used", "bytes",
                  [(T0, float(3 << 30)), (T0 + 10**9, float(5 << 30))]),
]  # fmt: skip


def written(with_events: bool) -> bytes:
    out = io.BytesIO()
    chunks: list[EventChunk] = []
    if with_events:
        chunks = [from_batches([batch("CUDA", [call("CUDA", "cudaMalloc", T0 + 1000, ptr=1,
                                                    bytes=10, device=0)])])]  # fmt: skip
    stats = write_perfetto(chunks, out, counters=SERIES)
    without = write_perfetto(chunks, io.BytesIO())
    assert stats.counter_points - without.counter_points == 6
    return out.getvalue()


@pytest.mark.parametrize("with_events", [True, False])
def test_series_are_counter_tracks_in_their_groups(with_events: bool) -> None:
    s = validate_perfetto(written(with_events))
    got = {}
    for uuid, points in s.counters.items():
        track = s.tracks[uuid]
        if not track.name.startswith("node-"):  # the events' own counters
            continue
        assert track.parent is not None
        group = s.tracks[track.parent]
        assert (group.kind, group.parent) == ("other", None)
        got[(group.name, track.name)] = points
    assert got == {(c.group, c.name): list(c.points) for c in SERIES}


def test_trace_processor_reads_the_series(trace_processor: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.pftrace"
    path.write_bytes(written(True))
    (rows,) = tp.query(
        path,
        "select t.name, c.ts, c.value from counter c join counter_track t on c.track_id = t.id"
        " where t.name like 'node-%' order by t.name, c.ts",
        folder=trace_processor,
    )
    want = sorted((c.name, t, v) for c in SERIES for t, v in c.points)
    assert [tuple(r) for r in rows] == want
