"""Keeps each machine's monitors and its manager in agreement, and notices silent machines.

A machine is reconciled (backend.monitor_lifecycle.reconcile: GET_STATUS, then converge)
at each HELLO, when a heartbeat's active monitors disagree with its monitors or it comes
back from silence, and every settings.reconcile_interval_s while its manager is RUNNING.
One reconciliation per machine at a time; one asked for meanwhile runs after it. A machine
not heard from for settings.heartbeat_timeout_s becomes UNKNOWN.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiohttp import web

from backend import job_events, monitor_lifecycle
from backend.repo import machines
from backend.typedefs import DB, SETTINGS

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.rounds: Counter[str] = Counter()  # reconciliations done, by machine
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._watch(), name="reconciler")

    async def close(self) -> None:
        tasks = [t for t in (self._loop, *self._running.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def request(self, machine_id: str) -> None:
        """Reconciles the machine soon (after the one under way, if there is one)."""
        task = self._running.get(machine_id)
        if task is not None and not task.done():
            self._again.add(machine_id)
            return
        task = asyncio.get_running_loop().create_task(self._run(machine_id))
        self._running[machine_id] = task
        task.add_done_callback(
            lambda t: (
                self._running.pop(machine_id, None) if self._running.get(machine_id) is t else None
            )
        )

    async def _run(self, machine_id: str) -> None:
        while True:
            self._again.discard(machine_id)
            try:
                if await monitor_lifecycle.reconcile(self.app, machine_id):
                    self.rounds[machine_id] += 1
            except Exception:
                log.exception("machine %s: reconciliation failed", machine_id)
            if machine_id not in self._again:
                return

    async def _watch(self) -> None:
        s = self.app[SETTINGS]
        tick = max(0.05, min(s.reconcile_interval_s, s.heartbeat_timeout_s / 4))
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while True:
            try:
                async with self.app[DB].connection() as conn:
                    for machine_id in await machines.mark_silent(conn, s.heartbeat_timeout_s):
                        log.warning(
                            "machine %s: no heartbeat for %gs; its manager is UNKNOWN",
                            machine_id,
                            s.heartbeat_timeout_s,
                        )
                        await job_events.mark_unknown(
                            conn,
                            machine_id,
                            f"its manager is silent (no heartbeat for {s.heartbeat_timeout_s:g} s)",
                        )
                    if loop.time() >= next_round:
                        next_round = loop.time() + s.reconcile_interval_s
                        for machine_id in await machines.list_running(conn):
                            self.request(machine_id)
            except Exception as e:  # the database may be restarting: next tick
                log.warning("machines not checked: %s", e)
            await asyncio.sleep(tick)
