"""Intervals close by the wall clock (Aggregator.tick), whether or not events come; late
events rewrite their interval whole, once per tick; a clock running ahead closes nothing
early; and InfluxDB keeps one point per series and interval, with the late events in it."""

from __future__ import annotations

import asyncio

import numpy as np

from backend.aggregate_clock import close_by_clock
from backend.aggregates import Aggregator, Point
from backend.influx import InfluxConfig, InfluxWriter
from tests.backend.influx_fixtures import InfluxServer
from xpucore import abi

S = 10**9
T0 = 1_900_000_000 * S
MON = "7d9b8a3c-1111-4222-8333-0000000000c1"


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def batch(stamps: list[int], seq: int = 0, machine: str = "m", monitor: str = MON) -> abi.Batch:
    ev = abi.empty_events(len(stamps))
    ev["func"] = 0x100
    ev["ts_ns"] = stamps
    ev["duration_ns"] = 1000
    ev["pid"] = 7
    raw = abi.encode_batch(ev, monitor_id=monitor, machine_id=machine, seq=seq)
    return abi.decode_batch(raw)


def calls(points: list[Point]) -> list[tuple[int, object]]:
    return [(p.time_ns, p.fields["calls"]) for p in points if p.measurement == "xpu_calls"]


def test_tick_closes_an_interval_by_the_clock_with_no_event_after_it() -> None:
    out: list[Point] = []
    clock = Clock(T0 + S // 2)
    agg = Aggregator(out.extend, lateness_ns=2 * S, clock_ns=clock)
    agg.add([batch([T0 + 10, T0 + 20, T0 + 30])])
    ticks = []
    while not out:  # as backend.aggregate_clock does: a tick at each close time
        clock.now = agg.next_close_ns()
        ticks.append(clock.now)
        agg.tick()
    assert ticks == [T0 + S, T0 + 2 * S, T0 + 3 * S]  # written at its end plus the lateness
    assert calls(out) == [(T0, 3)]
    agg.flush()
    assert calls(out) == [(T0, 3)]  # written once: the flush has nothing more


def test_late_events_rewrite_their_interval_whole_once_per_tick() -> None:
    out: list[Point] = []
    clock = Clock(T0 + 3 * S)
    agg = Aggregator(out.extend, lateness_ns=2 * S, clock_ns=clock)
    agg.add([batch([T0 + 10, T0 + 20])])
    agg.tick()  # t0 + 3 s: interval 0 closes
    assert calls(out) == [(T0, 2)]
    agg.add([batch([T0 + 40], seq=1)])  # late, three times over
    agg.add([batch([T0 + 50], seq=2)])
    agg.add([batch([T0 + 60], seq=3, machine="other")])
    assert calls(out) == [(T0, 2)]  # not yet: at the next tick
    first = len(out)
    agg.tick()
    again = {
        dict(p.tags)["machine"]: (p.time_ns, p.fields["calls"])
        for p in out[first:]
        if p.measurement == "xpu_calls"
    }
    assert again == {"m": (T0, 4), "other": (T0, 1)}  # whole: merged, every series once
    assert agg.stats.intervals_rewritten == 1 and agg.stats.late_events == 0
    agg.tick()
    agg.flush()
    assert len(calls(out)) == 3  # nothing changed since: nothing written again


def test_a_clock_running_ahead_closes_nothing_early() -> None:
    """A machine stamping lateness ahead of the backend's clock: the interval that has just
    ended by the clock still waits for its lateness (other machines' events on their way)."""
    out: list[Point] = []
    clock = Clock(T0 + S // 2)
    agg = Aggregator(out.extend, lateness_ns=2 * S, clock_ns=clock)
    agg.add([batch([T0 - S // 2])])
    agg.add([batch([T0 + S // 2 + 2 * S], machine="ahead")])
    assert out == []
    clock.now = T0 + 2 * S
    agg.tick()
    assert calls(out) == [(T0 - S, 1)]


async def test_close_by_clock_writes_an_interval_lateness_after_its_end() -> None:
    """The backend's clock task, on the real clock: a burst with nothing after it is
    written at its end plus the lateness (half a second allowed for a busy machine)."""
    written: list[tuple[int, list[Point]]] = []
    got = asyncio.Event()
    interval, lateness = S // 5, S // 10

    def sink(points: list[Point]) -> None:
        written.append((agg.clock_ns(), points))
        got.set()

    agg = Aggregator(sink, interval_ns=interval, lateness_ns=lateness)
    now = agg.clock_ns()
    agg.add([batch([now])])
    clock = asyncio.create_task(close_by_clock(agg))
    try:
        await asyncio.wait_for(got.wait(), 5)
    finally:
        clock.cancel()
        await asyncio.gather(clock, return_exceptions=True)
    at, points = written[0]
    due = (now // interval + 1) * interval + lateness
    assert due <= at < due + S // 2, (at - due) / S
    assert calls(points) == [(now // interval * interval, 1)]


async def test_influxdb_keeps_one_point_with_the_late_events(
    influx_server: InfluxServer, influx_db: str
) -> None:
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db))
    await writer.start()
    clock = Clock(T0 + 3 * S)
    agg = Aggregator(
        lambda pts: writer.submit([p.line() for p in pts]), lateness_ns=2 * S, clock_ns=clock
    )
    try:
        agg.add([batch([T0 + 10, T0 + 20])])
        agg.tick()
        await writer.flushed()
        agg.add([batch(list(T0 + 100 + np.arange(5)), seq=1)])
        agg.tick()
        await writer.flushed()
    finally:
        await writer.close()
    series = influx_server.query("SELECT calls, duration_sum_ns FROM xpu_calls", influx_db)
    assert series[0]["values"] == [[T0, 7, 7000]]
