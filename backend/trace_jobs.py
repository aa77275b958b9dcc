"""The trace job runner: ``workers`` tasks claim queued jobs from trace_jobs and build them
off the event loop.

Jobs wait in the table (PROCESSING, not running). Each worker claims the next one
(backend.repo.trace_jobs.claim_next: FOR UPDATE SKIP LOCKED, fair between users: a user's
twenty jobs take turns with another user's one), then builds the file in a thread of the
runner's own executor (backend.trace_build) on two synchronous connections of its own: one
reads the events, the other writes progress (events_total once counted, then events_done and
progress at most every ``progress_interval_s``). The worker records the outcome: COMPLETED
with the file's size and what the exporter wrote, or FAILED with the reason. An idle worker
sleeps until wake() (a job was queued here) or for ``poll_interval_s`` (one queued elsewhere).

Restarts: start() queues again the jobs a stopped backend left running (one backend runs
trace jobs) and fails those that already had ``max_attempts`` runs (a job that keeps killing
the backend must not do so forever); the others run again from scratch. close() sets the
stop flag the build checks between chunks, cancels the queries in flight, and waits: stopped
jobs are queued again with their run given back, so the next start resumes them. Temporary
files left by a backend that died are removed at start.

A Perfetto trace holds the device counters of its machines (device_counters, read on the
event loop while the build waits: backend.device_counters.for_trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from backend.repo import trace_jobs as repo
from backend.trace_build import BuildError, Built, Stopped, TraceSpec, build_trace
from trace_export import CounterSeries

#: (spans, shifts) -> a trace's device counters, read on the event loop
#: (backend.device_counters.for_trace)
AsyncDeviceCounters = Callable[
    [Mapping[str, tuple[int, int]], Mapping[str, int]],
    Coroutine[Any, Any, list[CounterSeries]],
]

__all__ = ["RESTARTED", "TraceJobs"]

log = logging.getLogger(__name__)
RESTARTED = "backend restarted {n} times during generation"
_DEVICES_TIMEOUT_S = 300.0


class TraceJobs:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        dsn: str,
        traces_dir: Path,
        *,
        workers: int = 2,
        chunk_rows: int = 50_000,
        progress_interval_s: float = 0.5,
        max_attempts: int = 3,
        poll_interval_s: float = 5.0,
        device_counters: AsyncDeviceCounters | None = None,
    ) -> None:
        self.device_counters = device_counters
        self.pool, self.dsn, self.traces_dir = pool, dsn, traces_dir
        self.chunk_rows = chunk_rows
        self.progress_interval_s = progress_interval_s
        self.max_attempts = max_attempts
        self.poll_interval_s = poll_interval_s
        #: Called in the worker thread as (job id, stage) at "counted" and after each
        #: "chunk"; tests hold a job there.
        self.checkpoint: Callable[[uuid.UUID, str], None] | None = None
        #: Awaited with a job's id once it is COMPLETED or FAILED (job traces follow theirs).
        self.on_done: list[Callable[[uuid.UUID], Awaitable[None]]] = []
        self.stop_flag = threading.Event()
        self._workers = workers
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="trace-job")
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading: set[psycopg.Connection[Any]] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Removes stale temporary files, fails exhausted jobs, starts the workers."""
        self._loop = asyncio.get_running_loop()
        self.traces_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for tmp in self.traces_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        async with self.pool.connection() as conn:
            requeued = await repo.requeue_all(conn)
            failed = await repo.fail_exhausted(
                conn, self.max_attempts, RESTARTED.format(n=self.max_attempts)
            )
        for job_id in failed:
            log.warning("trace job %s failed: %s", job_id, RESTARTED.format(n=self.max_attempts))
        if requeued:
            log.info("%d trace jobs left running by the last backend are queued again", requeued)
        for n in range(self._workers):
            task = asyncio.create_task(self._worker(), name=f"trace-worker-{n}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """A job was queued: idle workers look at once."""
        self._wake.set()

    async def close(self) -> None:
        """Stops the running builds between chunks and waits for every worker to end."""
        self.stop_flag.set()
        self._wake.set()
        with self._lock:
            reading = list(self._reading)
        for conn in reading:
            await asyncio.to_thread(_cancel, conn)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _worker(self) -> None:
        while not self.stop_flag.is_set():
            self._wake.clear()  # a wake() from here on is for the next look
            try:
                async with self.pool.connection() as conn:
                    job = await repo.claim_next(conn)
                if job is not None:
                    await self._run(job)
                    await self._done(job["id"])
                    continue
            except Exception:  # the database went away: look again later
                log.exception("trace worker")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def _run(self, job: dict[str, Any]) -> None:
        job_id: uuid.UUID = job["id"]
        if self.stop_flag.is_set():
            async with self.pool.connection() as conn:
                await repo.give_back(conn, job_id)
            return
        spec = TraceSpec.of(
            job["trace_id"], job["filter"], job["format"], job["gzip"], job.get("layout")
        )
        loop = asyncio.get_running_loop()
        try:
            built = await loop.run_in_executor(self._executor, self._build, job_id, spec)
        except Stopped:
            log.info("trace job %s stopped; it resumes at the next start", job_id)
            async with self.pool.connection() as conn:
                await repo.give_back(conn, job_id)
            return
        except BuildError as e:
            log.warning("trace job %s failed: %s", job_id, e)
            await self._fail(job_id, str(e))
            return
        except Exception:
            log.exception("trace job %s failed", job_id)
            await self._fail(
                job_id,
                "internal error while generating the trace (the backend log has the details)",
            )
            return
        async with self.pool.connection() as conn:
            await repo.complete(
                conn,
                job_id,
                built.events,
                built.events_total,
                built.file_size,
                {
                    "slices": built.stats.slices,
                    "flows": built.stats.flows,
                    "counter_points": built.stats.counter_points,
                },
            )
        log.info(
            "trace job %s completed: %d events, %d bytes", job_id, built.events, built.file_size
        )

    async def _done(self, job_id: uuid.UUID) -> None:
        for callback in self.on_done:
            try:
                await callback(job_id)
            except Exception:
                log.exception("trace job %s: a follower of its end failed", job_id)

    async def _fail(self, job_id: uuid.UUID, message: str) -> None:
        async with self.pool.connection() as conn:
            await repo.fail(conn, job_id, message)

    def _build(self, job_id: uuid.UUID, spec: TraceSpec) -> Built:
        """In a worker thread: one build on connections of its own."""
        try:
            with (
                psycopg.connect(self.dsn, autocommit=True) as status,
                psycopg.connect(self.dsn, autocommit=True) as reader,
            ):
                with self._lock:
                    self._reading.add(reader)
                try:
                    return self._build_on(job_id, spec, status, reader)
                finally:
                    with self._lock:
                        self._reading.discard(reader)
        except psycopg.Error as e:
            if self.stop_flag.is_set():
                raise Stopped from None
            raise BuildError(f"database error: {e}") from None

    def _build_on(
        self,
        job_id: uuid.UUID,
        spec: TraceSpec,
        status: psycopg.Connection[Any],
        reader: psycopg.Connection[Any],
    ) -> Built:
        total = 0
        last = time.monotonic()

        def on_total(n: int) -> None:
            nonlocal total
            total = n
            repo.set_total(status, job_id, n)

        def on_progress(done: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= self.progress_interval_s:
                last = now
                repo.set_progress(status, job_id, done, done / total if total else 0.0)

        def checkpoint(stage: str) -> None:
            if self.checkpoint is not None:
                self.checkpoint(job_id, stage)

        return build_trace(
            reader,
            spec,
            self.traces_dir,
            stop=self.stop_flag,
            chunk_rows=self.chunk_rows,
            on_total=on_total,
            on_progress=on_progress,
            checkpoint=checkpoint,
            side=status,
            devices=None if self.device_counters is None else self._devices,
        )

    def _devices(
        self, spans: Mapping[str, tuple[int, int]], shifts: Mapping[str, int]
    ) -> list[CounterSeries]:
        """In the build's thread: the device counters, read on the event loop."""
        assert self.device_counters is not None and self._loop is not None
        coro = self.device_counters(spans, shifts)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_DEVICES_TIMEOUT_S)


def _cancel(conn: psycopg.Connection[Any]) -> None:
    # already closed, or the server went away: nothing to cancel
    with contextlib.suppress(psycopg.Error, OSError):
        conn.cancel_safe(timeout=5)
