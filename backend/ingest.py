"""Ingest: agents' batches off a CURVE ROUTER socket, into PostgreSQL by binary COPY.

The receiver decodes each frame with the shared ABI decoder (a malformed or
oversized frame is counted and dropped; other senders carry on) and puts it on
a bounded queue. A writer takes everything queued, up to a limit, writes it
in one EventWriter call, and once that has committed acknowledges every batch
of it (struct xpu_batch_ack) to the agent that sent it. Several writers, each
on its own connection, take turns at the queue: one PostgreSQL backend process
inserting rows is what limits ingest, and two of them take in ~1.5x as much. Agents keep batches
until acknowledged and send them again when the acknowledgement is late, and
the database stores a batch once: a backend restart loses nothing an agent
held. When the queue is full the receiver stops reading, the socket's queue
fills, and agents hold (and at worst count) what they cannot send.

With an aggregator (backend.aggregates), the batches each write stored (never a
duplicate) go to it once acknowledged, in the order they were received although
the writers finish in any order: the memory ledger pairs each free with its
allocation, so a free must not overtake the batch that allocated.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import zmq
import zmq.asyncio
from psycopg_pool import AsyncConnectionPool
from zmq.utils.monitor import recv_monitor_message

from backend.admission import Admission
from backend.aggregates import Aggregator
from backend.event_writer import EventWriter
from xpucore import abi

__all__ = ["Ingest", "IngestStats"]

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    batches: int = 0
    events: int = 0
    duplicates: int = 0
    malformed: int = 0
    rejected: int = 0
    write_errors: int = 0
    unacknowledged: int = 0
    unauthenticated: int = 0  # connections refused at the CURVE handshake
    refused: int = 0  # batches the sending key may not speak for (backend.admission)


class Ingest:
    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        secret_key: bytes,
        public_key: bytes,
        pool: AsyncConnectionPool,
        *,
        queue_batches: int = 256,
        max_frame: int = 64 << 20,
        write_batches: int = 64,
        writers: int = 2,
        aggregator: Aggregator | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.stats = IngestStats()
        self._ctx, self._pool = ctx, pool
        self._secret, self._public = secret_key, public_key
        self._queue: asyncio.Queue[tuple[bytes, abi.Batch]] = asyncio.Queue(queue_batches)
        self._max_frame, self._write_batches = max_frame, write_batches
        if writers < 1:
            raise ValueError("writers must be at least 1")
        self._writers = writers
        self._writer = EventWriter()
        self._aggregator = aggregator  # gets every batch once stored (not duplicates)
        self._admission = admission  # None: every authenticated sender is believed (tests)
        self._sock: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._monitor: zmq.asyncio.Socket
        self._idle = asyncio.Event()
        self._taken = 0  # write groups taken off the queue, numbered in order
        self._aggregated = 0  # groups handed to the aggregator (or given up) so far
        self._finished: dict[int, list[abi.Batch]] = {}  # written, waiting for earlier ones
        # batches queued or being written -> peers that sent them again meanwhile: a resent
        # copy is not queued (so the copy stored is always the first received, and the
        # aggregator sees batches in the order they came), it is acknowledged with the first
        self._inflight: dict[tuple[str, int, int], list[bytes]] = {}
        self._wrote = asyncio.Event()  # set, and replaced, after each write group

    async def start(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_secretkey = self._secret
        sock.curve_publickey = self._public
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_frame)
        sock.rcvhwm = 64
        sock.sndhwm = 100_000  # acknowledgements are small; never block on them
        sock.linger = 0
        sock.bind(self.endpoint)
        self._sock = sock
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        self._tasks = [
            asyncio.create_task(self._receive(), name="ingest-receive"),
            asyncio.create_task(self._watch(), name="ingest-watch"),
            *(
                asyncio.create_task(self._write(), name=f"ingest-write-{i}")
                for i in range(self._writers)
            ),
        ]

    async def close(self) -> None:
        """Stops receiving, writes what was received, then stops."""
        self._tasks[0].cancel()
        await asyncio.gather(self._tasks[0], return_exceptions=True)
        await self._queue.join()  # written and acknowledged
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        if self._sock is not None:
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close(linger=0)

    async def flushed(self) -> None:
        """Returns once everything received so far is written (for tests and shutdown)."""
        await self._queue.join()

    async def next_write(self, timeout: float) -> bool:
        """Waits up to timeout for the next write group to end (stored or not); whether one
        did. Who waits for events to be stored looks again after it."""
        wrote = self._wrote
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await wrote.wait()
        except TimeoutError:
            return False
        return True

    async def _watch(self) -> None:
        """Counts senders refused at the handshake (unknown key, or no CURVE at all)."""
        while True:
            event = await recv_monitor_message(self._monitor)
            self.stats.unauthenticated += 1
            log.warning(
                "ingest: connection refused at the CURVE handshake (%s)",
                event.get("endpoint", b"").decode(errors="replace"),
            )

    async def _receive(self) -> None:
        assert self._sock is not None
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            if len(frames) != 2:
                self.stats.malformed += 1
                continue
            try:
                batch = abi.decode_batch(bytes(frames[1].buffer))
            except abi.AbiError as e:
                self.stats.malformed += 1
                log.warning("ingest: malformed batch dropped: %s", e)
                continue
            peer = frames[0].bytes
            if self._admission is not None:
                sender = str(frames[1].get("User-Id") or "")  # the ZAP user id: the key
                if await self._admission.refusal(sender, batch) is not None:
                    self.stats.refused += 1
                    await self._acknowledge([(peer, batch)])  # let go of it: dropped
                    continue
            key = _key(batch)
            waiting = self._inflight.get(key)
            if waiting is not None:  # resent while the first copy is being written
                waiting.append(peer)
                self.stats.duplicates += 1
                continue
            self._inflight[key] = []
            await self._queue.put((peer, batch))

    async def _write(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < self._write_batches and not self._queue.empty():
                items.append(self._queue.get_nowait())
            ticket, self._taken = self._taken, self._taken + 1
            stored: list[abi.Batch] = []
            batches = [b for _, b in items]
            try:
                for attempt in range(3):
                    try:
                        async with self._pool.connection() as conn:
                            result = await self._writer.write(conn, batches)
                        break
                    except Exception:
                        if attempt == 2:
                            raise
                        log.exception("ingest: write failed, retrying")
                        await asyncio.sleep(0.2 * (attempt + 1))
                self.stats.batches += result.batches
                self.stats.events += result.events
                self.stats.duplicates += result.duplicates
                self.stats.rejected += len(result.rejected)
                for r in result.rejected:
                    log.warning("ingest: batch %s/%d rejected: %s", r.monitor_id, r.seq, r.reason)
                await self._acknowledge(
                    items + [(p, b) for _, b in items for p in self._inflight.get(_key(b), ())]
                )
                stored = [b for b in result.stored if not b.stacks]  # events only
            except Exception:
                self.stats.write_errors += len(batches)
                log.exception("ingest: %d batches could not be written", len(batches))
            finally:
                for _, b in items:
                    self._inflight.pop(_key(b), None)
                self._aggregate_in_order(ticket, stored)
                for _ in items:
                    self._queue.task_done()
                self._wrote.set()
                self._wrote = asyncio.Event()

    def _aggregate_in_order(self, ticket: int, stored: list[abi.Batch]) -> None:
        """Hands write groups to the aggregator in the order they were taken."""
        self._finished[ticket] = stored
        while self._aggregated in self._finished:
            ready = self._finished.pop(self._aggregated)
            self._aggregated += 1
            if self._aggregator is None or not ready:
                continue
            try:
                self._aggregator.add(ready)
            except Exception:  # aggregates are a view: never hold up the ingest
                log.exception("ingest: aggregating %d batches failed", len(ready))

    async def _acknowledge(self, items: list[tuple[bytes, abi.Batch]]) -> None:
        """Stored (or never storable): the agents may let these batches go."""
        assert self._sock is not None
        for peer, b in items:
            try:
                await self._sock.send_multipart(
                    [peer, abi.encode_ack(b.agent_pid, b.seq)], flags=zmq.DONTWAIT
                )
            except zmq.Again:
                self.stats.unacknowledged += 1  # the agent will resend; stored once


def _key(b: abi.Batch) -> tuple[str, int, int]:
    return (b.monitor_id, b.agent_pid, b.seq)
