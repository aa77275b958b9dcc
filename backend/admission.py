"""Which batches the ingest believes: only what the sending key may speak for.

Every enrolled manager key (and so every agent of that machine) can open the ingest socket;
the key alone must not let it write another machine's events, or events of a monitor that
does not exist or has ended. A batch is admitted when:

- its ``machine_id`` is the machine bound to the CURVE key that sent it (bound by the
  machine's first hello on the control channel, ``machines.public_key``);
- its ``monitor_id`` is a monitor of that machine whose status is STARTING (an agent sends
  before its START reply has arrived), RUNNING or STOPPING.

The rest are counted (``IngestStats.refused``), logged once per cause, acknowledged (the
sender lets them go) and dropped: before any duplicate check, so a forged batch sent first
never makes the real one a "duplicate".

Lookups are cached: a key's machine for as long as the process runs (a key is bound once),
a monitor's status for ``ttl_s`` (a refused monitor is asked again after that, so a monitor
created a moment ago is not refused for long).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from backend.repo.machines import machine_of_key
from backend.repo.monitors import machine_and_status
from xpucore import abi

__all__ = ["ACCEPTING", "Admission"]

log = logging.getLogger(__name__)

ACCEPTING = frozenset({"STARTING", "RUNNING", "STOPPING"})


class Admission:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool, self._ttl, self._clock = pool, ttl_s, clock
        self._machines: dict[str, tuple[str | None, float]] = {}  # key -> machine, when asked
        self._monitors: dict[str, tuple[tuple[str, str] | None, float]] = {}
        self._told: set[tuple[str, str]] = set()

    async def refusal(self, key: str, batch: abi.Batch) -> str | None:
        """Why batch may not be stored when sent with key (None: it may)."""
        machine = await self._machine(key)
        if machine is None:
            return self._say(key, "key", "its key is bound to no machine")
        if batch.machine_id != machine:
            return self._say(
                key,
                "machine",
                f"it claims machine {batch.machine_id[:64]!r}, its key is machine {machine!r}'s",
            )
        monitor = await self._monitor(batch.monitor_id)
        if monitor is None or monitor[0] != machine:
            return self._say(
                key,
                batch.monitor_id,
                f"monitor {batch.monitor_id[:64]!r} is not one of {machine!r}'s",
            )
        if monitor[1] not in ACCEPTING:
            return self._say(key, batch.monitor_id, f"monitor {batch.monitor_id} is {monitor[1]}")
        return None

    async def _machine(self, key: str) -> str | None:
        got = self._machines.get(key)
        if got is not None and (got[0] is not None or self._clock() - got[1] < self._ttl):
            return got[0]
        async with self._pool.connection() as conn:
            machine = await machine_of_key(conn, key)
        self._machines[key] = (machine, self._clock())
        return machine

    async def _monitor(self, monitor_id: str) -> tuple[str, str] | None:
        got = self._monitors.get(monitor_id)
        if got is not None and self._clock() - got[1] < self._ttl:
            return got[0]
        try:
            mid = uuid.UUID(monitor_id)
        except ValueError:
            return None
        async with self._pool.connection() as conn:
            found = await machine_and_status(conn, mid)
        if len(self._monitors) > 100_000:  # forged ids must not grow it without end
            self._monitors.clear()
        self._monitors[monitor_id] = (found, self._clock())
        return found

    def _say(self, key: str, cause: str, reason: str) -> str:
        if (key, cause) not in self._told:
            if len(self._told) > 10_000:
                self._told.clear()
            self._told.add((key, cause))
            log.warning("ingest: batches refused from key %s: %s", key[:12], reason)
        return reason
