"""Aggregator: the vectorised per-interval aggregates equal the plain per-event reference."""

from __future__ import annotations

import numpy as np
import pytest

from backend.aggregates import Aggregator, Point
from backend.histogram import RELATIVE_ERROR, bucket_bounds, bucket_of, percentile
from tests.backend.aggregate_data import INTERVALS, Capture, S, make_capture
from xpucore import abi

T0 = 1_900_000_000 * S  # far from now: the watermark cap is the clock we pass


def run(cap: Capture, batches: list[abi.Batch] | None = None, **kw: object) -> list[Point]:
    out: list[Point] = []
    agg = Aggregator(out.extend, clock_ns=lambda: cap.t0 + 3600 * S, **kw)  # type: ignore[arg-type]
    for b in batches if batches is not None else cap.decoded:
        agg.add([b])
    agg.flush()
    return out


def by_key(points: list[Point], measurement: str) -> dict[tuple[object, ...], Point]:
    out: dict[tuple[object, ...], Point] = {}
    for p in points:
        if p.measurement != measurement:
            continue
        t = dict(p.tags)
        if measurement in ("xpu_calls", "xpu_latency_hist"):
            key: tuple[object, ...] = (
                p.time_ns // S,
                t["machine"],
                t["monitor_id"],
                int(t["pid"]),
                int(t["device"]),
                t["function"],
            )
        elif measurement == "xpu_memory":
            key = (p.time_ns // S, t["machine"], t["monitor_id"], int(t["pid"]), int(t["device"]))
        else:
            key = (p.time_ns // S, t["machine"], t["monitor_id"])
        key_last = key  # a re-written point replaces the earlier one, as in InfluxDB
        out[key_last] = p
    return out


@pytest.fixture(scope="module")
def cap() -> Capture:
    return make_capture(T0)


def test_calls_match_reference_exactly(cap: Capture) -> None:
    points = run(cap)
    calls = by_key(points, "xpu_calls")
    hists = by_key(points, "xpu_latency_hist")
    assert set(calls) == set(cap.calls)
    assert len(calls) > 50
    for key, want in cap.calls.items():
        got = calls[key].fields
        for name in (
            "calls",
            "errors",
            "duration_sum_ns",
            "duration_max_ns",
            "bytes_copied",
            "bytes_allocated",
        ):
            assert got[name] == want[name], (key, name)
            assert isinstance(got[name], int)
        assert got["duration_mean_ns"] == want["duration_mean_ns"]
        assert {int(k[1:]): v for k, v in hists[key].fields.items()} == want["hist"]
        for name in ("p50_ns", "p95_ns", "p99_ns"):
            true = want[f"true_{name}"]
            # exactly the top of the bucket holding the true value, capped at the maximum
            assert got[name] == min(
                bucket_bounds(int(bucket_of(np.array([true]))[0]))[1] - 1, want["duration_max_ns"]
            ), (key, name)
            assert true <= got[name] <= true * (1 + RELATIVE_ERROR)
    assert sum(a["errors"] for a in cap.calls.values()) > 0
    assert sum(a["bytes_allocated"] for a in cap.calls.values()) > 0


def test_memory_and_drops_match_reference(cap: Capture) -> None:
    points = run(cap)
    memory = {
        k: (p.fields["held_bytes"], p.fields["held_max_bytes"])
        for k, p in by_key(points, "xpu_memory").items()
    }
    assert memory == cap.memory
    assert len(memory) >= INTERVALS * 2
    drops = {
        k: (p.fields["kernel"], p.fields["inflight"], p.fields["send"])
        for k, p in by_key(points, "xpu_drops").items()
    }
    assert drops == cap.drops
    assert sum(sum(v) for v in drops.values()) > 0


def test_each_interval_is_written_once_when_data_comes_in_order(cap: Capture) -> None:
    points = run(cap)
    keys = [(p.measurement, p.tags, p.time_ns) for p in points]
    assert len(keys) == len(set(keys))


def test_intervals_close_at_watermark_plus_lateness(cap: Capture) -> None:
    out: list[Point] = []
    agg = Aggregator(out.extend, lateness_ns=2 * S, clock_ns=lambda: cap.t0 + 3600 * S)
    ev = abi.empty_events(3)
    ev["func"] = 0x100
    ev["ts_ns"] = [cap.t0 + 100, cap.t0 + S + 5, cap.t0 + 3 * S - 1]
    raw = abi.encode_batch(ev, monitor_id="7d9b8a3c-1111-4222-8333-000000000009", machine_id="m")
    agg.add([abi.decode_batch(raw)])
    assert out == []  # seen up to t0 + 3 s - 1: interval 0 needs t0 + 1 s + 2 s
    ev2 = ev[:1].copy()
    ev2["ts_ns"] = cap.t0 + 3 * S
    agg.add(
        [
            abi.decode_batch(
                abi.encode_batch(
                    ev2, monitor_id="7d9b8a3c-1111-4222-8333-000000000009", machine_id="m", seq=1
                )
            )
        ]
    )
    assert [p.time_ns for p in out if p.measurement == "xpu_calls"] == [cap.t0]
    agg.flush()
    assert sorted(p.time_ns for p in out if p.measurement == "xpu_calls") == [
        cap.t0,
        cap.t0 + S,
        cap.t0 + 2 * S,
        cap.t0 + 3 * S,
    ]


def test_late_data_rewrites_its_interval_whole(cap: Capture) -> None:
    """A batch held back until its intervals closed: they are written again, merged."""
    late = cap.decoded[2]
    rest = [b for b in cap.decoded if b is not late]
    points = run(cap, [*rest, late], lateness_ns=0)
    assert by_key(points, "xpu_calls").keys() == cap.calls.keys()
    for key, p in by_key(points, "xpu_calls").items():
        assert p.fields["calls"] == cap.calls[key]["calls"]
        assert p.fields["duration_sum_ns"] == cap.calls[key]["duration_sum_ns"]


def test_data_older_than_retention_is_counted_not_aggregated(cap: Capture) -> None:
    out: list[Point] = []
    agg = Aggregator(
        out.extend, lateness_ns=0, retain_intervals=1, clock_ns=lambda: cap.t0 + 3600 * S
    )
    first, *rest = cap.decoded[:9]  # first: interval 0 only; rest: up to t0 + 2.5 s
    agg.add(rest)
    assert agg.stats.late_events == 0
    agg.add([first])  # interval 0 was closed, and let go (one interval is kept)
    assert agg.stats.late_events == len(first.events) > 0
    calls = {
        p.time_ns
        for p in out
        if p.measurement == "xpu_calls" and dict(p.tags)["monitor_id"] == first.monitor_id
    }
    assert cap.t0 in calls  # interval 0 was written, from the other batches, once


def test_watermark_is_capped_at_the_clock(cap: Capture) -> None:
    """A batch stamped an hour ahead does not close what is happening now."""
    out: list[Point] = []
    agg = Aggregator(out.extend, lateness_ns=S, clock_ns=lambda: cap.t0)
    ev = abi.empty_events(1)
    ev["ts_ns"] = cap.t0 + 3600 * S
    agg.add([abi.decode_batch(abi.encode_batch(ev, monitor_id="a", machine_id="m"))])
    assert out == []
    agg.flush()
    assert len([p for p in out if p.measurement == "xpu_calls"]) == 1


def test_line_protocol_escapes_and_types() -> None:
    p = Point(
        "xpu_calls",
        (("machine", "a b,c=d"), ("pid", "1")),
        {"calls": 3, "duration_mean_ns": 2.5},
        17,
    )
    assert p.line() == "xpu_calls,machine=a\\ b\\,c\\=d,pid=1 calls=3i,duration_mean_ns=2.5 17"


def test_percentile_nearest_rank() -> None:
    counts = {5: 1, 40: 2, 100: 1}  # values 5, [40..] x2, [100..]
    assert percentile(counts, 0.25) == 5
    assert percentile(counts, 0.5) == bucket_bounds(40)[1] - 1
    assert percentile(counts, 0.99) == bucket_bounds(100)[1] - 1
    assert percentile(counts, 0.99, maximum=90) == 90
    assert percentile({}, 0.5) is None


def test_late_data_for_an_interval_closed_empty_is_counted(cap: Capture) -> None:
    """Every batch with calls in interval 0 held back until later intervals closed it (with
    no data yet): they are aggregated all the same, within the retention."""
    early = [
        b
        for b in cap.decoded
        if len(b.events) and int(b.events["ts_ns"].min()) + b.mono_to_real_ns < cap.t0 + S
    ]
    rest = [b for b in cap.decoded if not any(b is e for e in early)]
    assert early and rest
    out: list[Point] = []
    agg = Aggregator(out.extend, lateness_ns=0, clock_ns=lambda: cap.t0 + 3600 * S)
    agg.add(rest)
    assert not any(p.time_ns == cap.t0 for p in out)  # interval 0 closed with nothing in it
    agg.add(early)
    agg.flush()
    assert agg.stats.late_events == 0
    got = by_key(out, "xpu_calls")
    assert got.keys() == cap.calls.keys()
    for key, p in got.items():
        assert p.fields["calls"] == cap.calls[key]["calls"]
