"""The clock estimator (xpucore.clock_sync): known timestamps give the exact offset and bound,
the filter keeps the smallest bound over its window, the bound grows with age, and what
arrives from the network is checked by field."""

from __future__ import annotations

import pytest

from xpucore import clock_sync
from xpucore.clock_sync import ClockFilter, Sample, aged, check_echo, check_report, sample
from xpucore.job_wire import WireError

S = 10**9
T1 = 1_767_000_000 * S  # a wall-clock time, ns


def exchange(theta: int, fwd: int, back: int, held: int, t1: int = T1) -> tuple[int, ...]:
    """The four stamps of an exchange where the backend's clock is theta ahead, the probe
    takes fwd, the backend holds it for held and the echo takes back."""
    t2 = t1 + theta + fwd
    t3 = t2 + held
    t4 = t3 - theta + back
    return t1, t2, t3, t4


def test_known_stamps_give_the_exact_offset_and_bound() -> None:
    s = sample(*exchange(theta=5 * S, fwd=300, back=100, held=50))
    assert s is not None
    assert s.offset_ns == 5 * S + 100  # theta + (fwd - back) / 2
    assert s.delay_ns == 400  # the round trip, net of the 50 ns held
    # half the delay, plus 30 ppm of the 450 ns exchange (rounded up: 1 ns)
    assert s.error_ns == 201
    assert abs(s.offset_ns - 5 * S) <= s.error_ns
    assert s.measured_at_ns == T1 + 5 * S + 350  # t3, on the backend's clock


def test_the_bound_holds_for_the_most_lopsided_path() -> None:
    for fwd, back in ((10_000, 0), (0, 10_000), (1, 9_999)):
        s = sample(*exchange(theta=-7 * S, fwd=fwd, back=back, held=1_000))
        assert s is not None and abs(s.offset_ns - (-7 * S)) <= s.error_ns
        assert s.error_ns == 5_000 + 1  # half of 10 µs, and 30 ppm of 11 µs


def test_an_odd_sum_is_floored_and_its_half_nanosecond_bounded() -> None:
    s = sample(*exchange(theta=0, fwd=3, back=0, held=0))
    assert s is not None
    assert (s.offset_ns, s.delay_ns, s.error_ns) == (1, 3, 2 + 1 + 1)  # 1.5 floored


def test_an_inconsistent_exchange_gives_no_sample() -> None:
    t1, t2, t3, t4 = exchange(theta=0, fwd=100, back=100, held=10)
    assert sample(t1, t2, t3, t1 - 1) is None  # received before it was sent
    assert sample(t1, t3, t2, t4) is None  # the backend answered before it received
    assert sample(t1, t2, t2 + 500, t4) is None  # held longer than the round trip
    # the manager's wall clock stepped 2 ms during the exchange: its monotonic clock says so
    assert sample(t1, t2, t3, t4 + 2_000_000, 0, t4 - t1) is None
    assert sample(t1, t2, t3, t4, 0, t4 - t1) is not None


def at(offset: int, error: int, mono: int, delay: int = 0) -> Sample:
    return Sample(offset, error, delay, T1 + mono, mono)


def test_the_filter_keeps_the_smallest_round_trip() -> None:
    f = ClockFilter()
    for delay, mono in ((1_000, 1_000), (200, 2_000), (800, 3_000)):  # 1 µs apart
        s = sample(*exchange(theta=42, fwd=delay // 2, back=delay // 2, held=0, t1=T1 + mono))
        assert s is not None
        f.add(Sample(s.offset_ns, s.error_ns, s.delay_ns, s.measured_at_ns, mono))
    best = f.best(3_000)
    assert best is not None and best.delay_ns == 200 and best.offset_ns == 42
    assert best.error_at(3_000) == 100 + 1 + 1  # half the delay, its exchange, 1 µs of age


def test_a_fresher_sample_wins_once_the_old_ones_drift_allowance_exceeds_it() -> None:
    f = ClockFilter()
    f.add(at(0, 100, 0))
    f.add(at(0, 1_000, 20 * S))
    # at 20 s the old one's bound is 100 + 600 µs; the fresh one's 1000 + nothing
    best = f.best(20 * S)
    assert best is not None and best.error_ns == 1_000
    assert best.error_at(20 * S) == 1_000
    # 10 ms after the first, the old one still wins: 100 + 300 < 1000
    g = ClockFilter()
    g.add(at(0, 100, 0))
    g.add(at(0, 1_000, 10_000_000))
    assert g.best(10_000_000) == at(0, 100, 0)


def test_the_window_forgets_the_oldest() -> None:
    f = ClockFilter(window=3)
    f.add(at(0, 10, 0))
    for i in range(1, 4):
        f.add(at(0, 500, i))
    assert len(f) == 3
    best = f.best(4)
    assert best is not None and best.error_ns == 500  # the best one is out of the window


def test_a_step_drops_the_samples_it_contradicts() -> None:
    f = ClockFilter()
    f.add(at(0, 100, 0))
    f.add(at(50, 100, 1_000))  # consistent: 50 <= 100 + 100
    assert len(f) == 2
    f.add(at(3 * S, 1_000, 2 * S))  # a 3 s step: both earlier intervals exclude it
    assert len(f) == 1
    best = f.best(2 * S)
    assert best is not None and best.offset_ns == 3 * S


def test_the_drift_allowance_grows_with_age() -> None:
    assert clock_sync.DRIFT_PPM == 30
    assert aged(100, 0) == 100
    assert aged(100, S) == 100 + 30_000  # 30 µs a second
    assert aged(0, 60 * S) == 1_800_000  # 1.8 ms a minute
    assert aged(0, 1) == 1  # rounded up
    assert aged(7, -S) == aged(7, S)  # either side of the measurement
    assert at(0, 100, 0).error_at(S) == 30_100


def report(**kw: object) -> dict[str, object]:
    return {"offset_ns": -5 * S, "error_ns": 120_000, "measured_at_ns": T1, **kw}


def test_a_report_is_checked_field_by_field() -> None:
    r = check_report(report(), T1 + S)
    assert (r.offset_ns, r.error_ns, r.measured_at_ns) == (-5 * S, 120_000, T1)
    bad: list[tuple[object, str]] = [
        ([1, 2], "clock:"),
        (report(error_ns=-1), "clock.error_ns:"),
        (report(error_ns=2 * 3600 * S), "clock.error_ns:"),
        (report(error_ns=1.5), "clock.error_ns:"),
        (report(offset_ns=clock_sync.MAX_OFFSET_NS + 1), "clock.offset_ns:"),
        (report(offset_ns=True), "clock.offset_ns:"),
        (report(offset_ns="0"), "clock.offset_ns:"),
        (report(measured_at_ns=None), "clock.measured_at_ns:"),
        (report(measured_at_ns=T1 + 2 * S), "clock.measured_at_ns:"),  # the backend's future
        (report(measured_at_ns=T1 - 2 * 86_400 * S), "clock.measured_at_ns:"),  # stale
    ]
    for value, field in bad:
        with pytest.raises(WireError) as e:
            check_report(value, T1 + S)
        assert str(e.value).startswith(field), (value, e.value)


def test_an_echo_is_checked() -> None:
    assert check_echo({"seq": 3, "t1": 1, "t2": 2, "t3": 3}) == (3, 1, 2, 3)
    for msg, field in (
        ({"seq": -1, "t1": 1, "t2": 2, "t3": 3}, "seq:"),
        ({"seq": 1, "t1": 1, "t2": "2", "t3": 3}, "t2:"),
        ({"seq": 1, "t1": 1, "t2": 2}, "t3:"),
    ):
        with pytest.raises(WireError, match=f"^{field}"):
            check_echo(msg)
