"""InfluxDB over HTTP: a line protocol writer with a bounded retry buffer, and InfluxQL queries.

One writer for both APIs, chosen by ``InfluxConfig.api``:

- ``v1``: ``POST /write?db=&rp=&precision=ns`` (InfluxDB 1.x; user and password as basic
  auth when given);
- ``v2``: ``POST /api/v2/write?org=&bucket=&precision=ns`` with ``Authorization: Token``
  (InfluxDB 1.8+, 2.x, 3.x).

Lines wait in a buffer of at most ``max_buffer_lines``; one task sends them in order, up to
``batch_lines`` a request. When InfluxDB cannot be reached (or answers 5xx, 401, 403, 429)
the request is retried with a backoff doubling up to ``max_backoff_s``, and nothing is lost
while the buffer holds; lines that do not fit are refused, counted in
``stats.overflowed_lines`` and logged (the oldest are kept: they are sent first, in order).
A request InfluxDB refuses as malformed (other 4xx) is counted in ``stats.rejected_lines``
and dropped, never retried. Each time the counters change, a line of the ``xputrace_writer``
measurement (fields overflowed_lines, rejected_lines, buffered_lines) reports them in
InfluxDB itself.

Queries (the metrics summary) use ``GET /query`` (InfluxQL, ``epoch=ns``), which InfluxDB 2.x
also serves for a bucket mapped to a database (DBRP), with the same token.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

__all__ = ["InfluxConfig", "InfluxError", "InfluxWriter", "InfluxWriterStats", "query",
           "quote_literal"]

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({401, 403, 408, 429})


class InfluxError(RuntimeError):
    """A query InfluxDB answered with an error, or could not answer."""


@dataclass(frozen=True)
class InfluxConfig:
    url: str  # http://host:8086
    api: Literal["v1", "v2"] = "v1"
    database: str = "xputrace"  # v1
    retention_policy: str = ""  # v1; "" = the database's default
    username: str = ""  # v1
    password: str = field(default="", repr=False)  # v1
    token: str = field(default="", repr=False)  # v2
    org: str = ""  # v2
    bucket: str = "xputrace"  # v2
    timeout_s: float = 10.0

    def write_request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """(url, query parameters, headers) of a write."""
        base = self.url.rstrip("/")
        if self.api == "v2":
            return (f"{base}/api/v2/write",
                    {"org": self.org, "bucket": self.bucket, "precision": "ns"},
                    {"Authorization": f"Token {self.token}"} if self.token else {})
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return f"{base}/write", params, {}

    def auth(self) -> aiohttp.BasicAuth | None:
        if self.api == "v1" and self.username:
            return aiohttp.BasicAuth(self.username, self.password)
        return None

    def query_database(self) -> str:
        return self.bucket if self.api == "v2" else self.database


@dataclass
class InfluxWriterStats:
    written_lines: int = 0
    overflowed_lines: int = 0  # refused: the buffer was full
    rejected_lines: int = 0  # InfluxDB refused the request they were in (4xx)
    lost_at_close: int = 0  # still buffered when close() gave up
    failed_requests: int = 0  # requests retried


class InfluxWriter:
    def __init__(self, config: InfluxConfig, *, max_buffer_lines: int = 200_000,
                 batch_lines: int = 5_000, min_backoff_s: float = 0.1,
                 max_backoff_s: float = 5.0, instance: str | None = None) -> None:
        self.config = config
        self.max_buffer_lines = max_buffer_lines
        self.batch_lines = batch_lines
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.instance = instance or socket.gethostname() or "backend"
        self.stats = InfluxWriterStats()
        self._buf: collections.deque[str] = collections.deque()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reported = (0, 0)
        self._overflowing = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        self._task = asyncio.create_task(self._run(), name="influx-writer")

    def submit(self, lines: list[str]) -> None:
        """Queues lines for writing; what does not fit the buffer is counted and dropped."""
        room = self.max_buffer_lines - len(self._buf)
        if len(lines) > room:
            over = len(lines) - max(room, 0)
            self.stats.overflowed_lines += over
            if not self._overflowing:
                log.warning("influx: buffer full (%d lines): dropping new aggregates",
                            self.max_buffer_lines)
            self._overflowing = True
            lines = lines[: max(room, 0)]
        if lines:
            self._buf.extend(lines)
            self._empty.clear()
            self._wake.set()

    async def flushed(self) -> None:
        """Returns once everything submitted so far has been sent (or dropped)."""
        await self._empty.wait()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Sends what is buffered, for at most timeout_s; then stops."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            self.stats.lost_at_close += len(self._buf)
            log.error("influx: %d aggregate lines not written at shutdown", len(self._buf))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        backoff = self.min_backoff_s
        while True:
            if not self._buf:
                self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            chunk = [self._buf[i] for i in range(min(self.batch_lines, len(self._buf)))]
            outcome = await self._post(chunk)
            if outcome == "retry":
                self.stats.failed_requests += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = self.min_backoff_s
            for _ in chunk:
                self._buf.popleft()
            if outcome == "ok":
                self.stats.written_lines += len(chunk)
            else:
                self.stats.rejected_lines += len(chunk)
            if self._overflowing and len(self._buf) < self.max_buffer_lines // 2:
                self._overflowing = False
                log.warning("influx: %d aggregate lines dropped so far (buffer full)",
                            self.stats.overflowed_lines)
            self._report()

    def _report(self) -> None:
        """A line with the writer's own counters, when they have changed."""
        now = (self.stats.overflowed_lines, self.stats.rejected_lines)
        if now == self._reported or len(self._buf) >= self.max_buffer_lines:
            return
        self._reported = now
        self._buf.append(
            f"xputrace_writer,instance={self.instance.replace(' ', '_').replace(',', '_')} "
            f"overflowed_lines={now[0]}i,rejected_lines={now[1]}i,"
            f"buffered_lines={len(self._buf)}i {time.time_ns()}")

    async def _post(self, chunk: list[str]) -> Literal["ok", "rejected", "retry"]:
        assert self._session is not None
        url, params, headers = self.config.write_request()
        body = ("\n".join(chunk) + "\n").encode()
        try:
            async with self._session.post(url, params=params, data=body, headers=headers,
                                          auth=self.config.auth()) as resp:
                if resp.status < 300:
                    return "ok"
                text = (await resp.text())[:500]
                if resp.status >= 500 or resp.status in _RETRY_STATUS:
                    log.warning("influx: write answered %d, retrying: %s", resp.status, text)
                    return "retry"
                log.error("influx: write of %d lines refused (%d): %s", len(chunk),
                          resp.status, text)
                return "rejected"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            if not self.stats.failed_requests % 50:
                log.warning("influx: cannot write (%s), retrying", e)
            return "retry"


def quote_literal(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def query(session: aiohttp.ClientSession, config: InfluxConfig,
                q: str) -> list[dict[str, Any]]:
    """The series of one InfluxQL statement: [{"name", "tags", "columns", "values"}]."""
    headers = {"Authorization": f"Token {config.token}"} if config.api == "v2" and \
        config.token else {}
    params = {"db": config.query_database(), "q": q, "epoch": "ns"}
    try:
        async with session.get(f"{config.url.rstrip('/')}/query", params=params,
                               headers=headers, auth=config.auth(),
                               timeout=aiohttp.ClientTimeout(total=config.timeout_s)) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
        raise InfluxError(f"InfluxDB query failed: {e}") from e
    if resp.status >= 300 or "error" in body:
        raise InfluxError(f"InfluxDB query failed ({resp.status}): {body.get('error')}")
    results = body.get("results") or [{}]
    if "error" in results[0]:
        raise InfluxError(f"InfluxDB query failed: {results[0]['error']}")
    return list(results[0].get("series", []))
