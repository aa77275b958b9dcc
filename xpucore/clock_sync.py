"""Each machine's wall clock measured against the backend's, as NTP measures a server.

Traces of a distributed job put events stamped on different machines on one time base: the
backend's clock. Every stamp involved is CLOCK_REALTIME (``time.time_ns()``) in nanoseconds.

**Exchange.** The manager sends ``CLOCK_PROBE`` ``{"seq", "t1"}`` (t1: its clock when sending);
the backend stamps t2 on receiving it and answers at once, before any other work, with
``CLOCK_ECHO`` ``{"seq", "t1", "t2", "t3"}`` (t3: its clock when sending); the manager stamps t4
on receiving that. With θ the true offset (backend clock minus manager clock) and d→, d← ≥ 0
the one-way delays, t2 = t1 + θ + d→ and t4 = t3 - θ + d←, so::

    offset = ((t2 - t1) + (t3 - t4)) / 2 = θ + (d→ - d←) / 2
    delay  = (t4 - t1) - (t3 - t2)       = d→ + d←      (the round trip, net of backend time)

and |offset - θ| ≤ delay / 2 whatever the asymmetry of the path (queueing in either process
included): delay / 2 is a hard bound, not a statistical one. To it is added the clocks'
drift over the exchange (below). A sample is refused when the manager's wall clock and its
monotonic clock disagree on the exchange's length by more than STEP_NS (its clock was stepped
during the exchange), and when its delay is negative.

**Filter.** A probe goes with every heartbeat; the last WINDOW samples are kept and the one
with the smallest bound *now* is the estimate (NTP's clock filter, RFC 5905 §10). A sample
whose interval, grown to now, is disjoint from the newest sample's is dropped: one of the
clocks was stepped since.

**Drift.** Both wall clocks are assumed to run within 15 ppm of the true rate (RFC 5905's
PHI, the tolerance of an NTP-disciplined clock), so they part by at most DRIFT_PPM = 30 ppm:
a measurement's bound grows by 30 ns per millisecond of its age (``aged``; 1.8 ms a minute).
The backend ages what it stores the same way (backend.repo.machine_clocks). A clock slewed
faster than that, or stepped between the measurement and an event, is outside the bound.

**Report.** Each HEARTBEAT carries the estimate as ``"clock": {"offset_ns", "error_ns",
"measured_at_ns"}``: the bound at measurement and t3 (the backend's own clock). ``check_report``
checks one on arrival. A manager that sends no ``clock`` leaves its machine unmeasured.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xpucore.job_wire import WireError

__all__ = [
    "DRIFT_PPM",
    "MAX_ERROR_NS",
    "MAX_OFFSET_NS",
    "STEP_NS",
    "WINDOW",
    "ClockFilter",
    "ClockReport",
    "Sample",
    "aged",
    "check_echo",
    "check_probe",
    "check_report",
    "sample",
]

DRIFT_PPM = 30  # two clocks each within 15 ppm (RFC 5905 PHI) part by at most 30 ppm
WINDOW = 8  # samples kept (NTP's clock filter keeps 8)
STEP_NS = 1_000_000  # wall and monotonic clocks disagree by more: a step, the sample refused
MAX_OFFSET_NS = 100 * 365 * 86_400 * 10**9  # beyond a century apart: not a clock reading
MAX_ERROR_NS = 3600 * 10**9  # an hour of round trip: not a measurement worth keeping
_STAMP_MAX = 2**63 - 1


def aged(error_ns: int, age_ns: int) -> int:
    """A bound grown by the drift allowance over age_ns (rounded up; a negative age counts
    as its size: the allowance holds either side of the measurement)."""
    return error_ns + (abs(age_ns) * DRIFT_PPM + 999_999) // 1_000_000


@dataclass(frozen=True)
class Sample:
    """One exchange: offset_ns to add to the manager's clock to get the backend's, within
    error_ns; measured_at_ns on the backend's clock (t3), mono_ns the manager's monotonic
    clock at t4 (for its age)."""

    offset_ns: int
    error_ns: int
    delay_ns: int
    measured_at_ns: int
    mono_ns: int

    def error_at(self, mono_now_ns: int) -> int:
        return aged(self.error_ns, mono_now_ns - self.mono_ns)


def sample(
    t1: int, t2: int, t3: int, t4: int, mono1: int | None = None, mono4: int | None = None
) -> Sample | None:
    """The sample of one exchange, None when it is inconsistent (negative delay, or a clock
    stepped during it). mono1, mono4: the manager's monotonic clock at t1 and t4 (None: the
    wall stamps stand for them, and no step is detected)."""
    m1, m4 = (t1, t4) if mono1 is None or mono4 is None else (mono1, mono4)
    if abs((t4 - t1) - (m4 - m1)) > STEP_NS or t4 < t1 or t3 < t2:
        return None
    delay = (t4 - t1) - (t3 - t2)
    if delay < 0:
        return None
    two_offset = (t2 - t1) + (t3 - t4)
    offset = two_offset // 2  # floor: the error bound below covers the half nanosecond
    error = aged((delay + 1) // 2 + (two_offset & 1), t4 - t1)
    return Sample(offset, error, delay, t3, m4)


class ClockFilter:
    """The last `window` samples; `best` is the one with the smallest bound now."""

    def __init__(self, window: int = WINDOW) -> None:
        self._samples: deque[Sample] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, s: Sample) -> None:
        """Keeps s, dropping the kept samples whose grown intervals it contradicts."""
        kept = [
            old
            for old in self._samples
            if abs(old.offset_ns - s.offset_ns) <= old.error_at(s.mono_ns) + s.error_ns
        ]
        self._samples.clear()
        self._samples.extend(kept)
        self._samples.append(s)

    def best(self, mono_now_ns: int) -> Sample | None:
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: (s.error_at(mono_now_ns), -s.mono_ns))


@dataclass(frozen=True)
class ClockReport:
    offset_ns: int
    error_ns: int
    measured_at_ns: int


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise WireError(f"{name}: must be an integer in [{lo}, {hi}]")
    return v


def check_report(v: Any, now_ns: int) -> ClockReport:
    """A HEARTBEAT's ``clock``, checked; now_ns the backend's clock (measured_at_ns is a
    stamp of its own: not in its future, not older than a day)."""
    if not isinstance(v, dict):
        raise WireError("clock: must be an object")
    return ClockReport(
        _int(v.get("offset_ns"), "clock.offset_ns", -MAX_OFFSET_NS, MAX_OFFSET_NS),
        _int(v.get("error_ns"), "clock.error_ns", 0, MAX_ERROR_NS),
        _int(v.get("measured_at_ns"), "clock.measured_at_ns", now_ns - 86_400 * 10**9, now_ns),
    )


def check_probe(msg: Mapping[str, Any]) -> tuple[int, int]:
    """A CLOCK_PROBE's (seq, t1)."""
    return _int(msg.get("seq"), "seq", 0, _STAMP_MAX), _int(msg.get("t1"), "t1", 0, _STAMP_MAX)


def check_echo(msg: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """A CLOCK_ECHO's (seq, t1, t2, t3)."""
    seq, t1 = check_probe(msg)
    return (
        seq,
        t1,
        _int(msg.get("t2"), "t2", 0, _STAMP_MAX),
        _int(msg.get("t3"), "t3", 0, _STAMP_MAX),
    )
