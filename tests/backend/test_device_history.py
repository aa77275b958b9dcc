"""backend.device_history's InfluxDB time range: exact to the ns, so a sample taken at a
range's start (in ms, as samples are) is inside it, at any date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.device_history import _range, ns_of


def test_range_holds_a_sample_at_its_start() -> None:
    base = 1_796_618_263_000  # ms; float ns of 37% of the ms in this second overshoot
    for ms in range(base, base + 1000):
        t = datetime.fromtimestamp(ms / 1000, UTC)
        assert ns_of(t) == ms * 1_000_000
        assert _range(t, t + timedelta(seconds=1)).startswith(f"time >= {ms * 1_000_000} AND")
