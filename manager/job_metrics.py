"""Process metrics of the machine's running AI jobs, sent every interval (JOB_METRICS).

Every ``interval_s`` (the manager's ``--job-metrics-interval``; 0 turns it off) each running
job the watcher knows is sampled from /proc (``manager.jobs.sampler``), in a worker thread so
that a machine with many jobs never holds up the event loop, and the samples go to the
backend as one JOB_METRICS (several when there are more than ``MAX_METRIC_SAMPLES`` jobs).
Rounds are kept on a fixed schedule (a slow round does not shift the next ones); a round that
overruns its interval is followed by the next one at once, not by a burst.

The backend reads suspension from these samples: a job stopped by SIGSTOP or SIGTSTP (state
``T``) is ``suspended`` from the first sample that sees it stopped, and ``running`` again
from the first after SIGCONT, so either move shows within one interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from manager.jobs.sampler import Sampler
from manager.jobs.watch import Watcher
from xpucore import protocol
from xpucore.job_wire import MAX_METRIC_SAMPLES

__all__ = ["JobMetrics"]

log = logging.getLogger(__name__)


class JobMetrics:
    def __init__(
        self,
        watcher: Watcher,
        machine_id: str,
        emit: Callable[[dict[str, Any]], None],
        interval_s: float,
        *,
        sampler: Sampler | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.watcher = watcher
        self.machine_id = machine_id
        self.emit = emit
        self.interval_s = interval_s
        self.sampler = sampler or Sampler(watcher.proc_root)
        self.rounds = 0

    async def round(self) -> list[dict[str, Any]]:
        """Samples every running job now; the JOB_METRICS messages that carry them (none when
        no job runs)."""
        keys = [
            r.key
            for r in self.watcher.table.live.values()
            if r.job is not None and r.status == "running"
        ]
        samples = await asyncio.to_thread(self.sampler.sample, keys)
        self.rounds += 1
        now = datetime.now(UTC)
        return [
            protocol.job_metrics(
                self.machine_id, self.interval_s, samples[i : i + MAX_METRIC_SAMPLES], now
            )
            for i in range(0, len(samples), MAX_METRIC_SAMPLES)
        ]

    async def run(self) -> None:
        """Rounds every interval_s until cancelled; each round's messages emitted."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due, loop.time() - self.interval_s)  # after an overrun: no burst
            try:
                for msg in await self.round():
                    self.emit(msg)
            except Exception:
                log.exception("job metrics round failed")
