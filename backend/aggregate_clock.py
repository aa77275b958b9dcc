"""The clock that closes aggregate intervals on time, whether or not events come.

Without it an interval closes only when the ingest sees an event ``lateness`` past its end,
so the last burst before a quiet spell (an idle or stopped monitor) would wait for the next
one. ``close_by_clock`` sleeps until the next interval's close time by the wall clock and
ticks the aggregator then; it ticks at least every ``max_sleep_s`` (1 s), so that a wall
clock that jumps is followed and late events are written again within that.
"""

from __future__ import annotations

import asyncio
import logging

from backend.aggregates import Aggregator

__all__ = ["close_by_clock"]

log = logging.getLogger(__name__)


async def close_by_clock(aggregator: Aggregator, *, max_sleep_s: float = 1.0) -> None:
    """Ticks the aggregator at each interval's close time, until cancelled."""
    while True:
        delay_s = (aggregator.next_close_ns() - aggregator.clock_ns()) / 1e9
        await asyncio.sleep(min(max(delay_s, 0.0), max_sleep_s))
        try:
            aggregator.tick()
        except Exception:  # aggregates are a view: a failure must not stop the clock
            log.exception("aggregates: closing intervals by the clock failed")
