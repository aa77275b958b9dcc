"""InfluxDB over HTTP: a line protocol writer with a bounded retry buffer, and InfluxQL queries.

One writer for both APIs, chosen by ``InfluxConfig.api``:

- ``v1``: ``POST /write?db=&rp=&precision=ns`` (InfluxDB 1.x; user and password as basic
  auth when given);
- ``v2``: ``POST /api/v2/write?org=&bucket=&precision=ns`` with ``Authorization: Token``
  (InfluxDB 1.8+, 2.x, 3.x).

v1 needs its database to exist: ``ensure_database`` creates it (``CREATE DATABASE`` leaves
one that exists alone). The backend calls it at start, and refuses to start when InfluxDB
answers that it can neither create the database nor finds it there (``InfluxSetupError``,
naming the database and the command an admin runs); when InfluxDB cannot be reached at
start, and whenever a write answers "database not found", the writer creates it before its
next write.

Lines wait in a buffer of at most ``max_buffer_lines``; one task sends them in order, up to
``batch_lines`` a request. When InfluxDB cannot be reached (or answers 5xx, 401, 403, 404,
408, 429: nothing wrong with the lines, something to fix on InfluxDB's side) the request is
retried with a backoff doubling up to ``max_backoff_s``, and nothing is lost while the buffer
holds; lines that do not fit are refused, counted in ``stats.overflowed_lines`` and logged
(the oldest are kept: they are sent first, in order). Lines InfluxDB refuses as malformed
(other 4xx; a 1.x "partial write" says how many it dropped) are counted in
``stats.rejected_lines`` and dropped, never retried. Every refusal (4xx) is logged at error
level with InfluxDB's own message, once per cause (the message with its numbers and quoted
lines left out). Each time the counters change, a line of the ``xputrace_writer``
measurement (fields overflowed_lines, rejected_lines, buffered_lines) reports them in
InfluxDB itself.

Queries (the metrics summary) use ``GET /query`` (InfluxQL, ``epoch=ns``), which InfluxDB 2.x
also serves for a bucket mapped to a database (DBRP), with the same token.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

__all__ = [
    "InfluxConfig",
    "InfluxError",
    "InfluxSetupError",
    "InfluxWriter",
    "InfluxWriterStats",
    "query",
    "quote_identifier",
    "quote_literal",
]

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({401, 403, 404, 408, 429})
_VARIABLE = re.compile(r"'[^']*'|\d+")  # a cause's quoted lines and numbers
_MAX_CAUSES = 100  # causes remembered as logged
_REPORT = "xputrace_writer,"  # the writer's own counters: measurement and tag separator


class InfluxError(RuntimeError):
    """A query InfluxDB answered with an error, or could not answer."""


class InfluxSetupError(InfluxError):
    """InfluxDB answered, and the database to write to neither exists nor can be created."""


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
            return (
                f"{base}/api/v2/write",
                {"org": self.org, "bucket": self.bucket, "precision": "ns"},
                self.headers(),
            )
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return f"{base}/write", params, self.headers()

    def headers(self) -> dict[str, str]:
        """The credentials: v1 user and password (basic), v2 token."""
        if self.api == "v2":
            return {"Authorization": f"Token {self.token}"} if self.token else {}
        if self.username:
            pair = f"{self.username}:{self.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}

    def query_database(self) -> str:
        return self.bucket if self.api == "v2" else self.database


@dataclass
class InfluxWriterStats:
    written_lines: int = 0
    overflowed_lines: int = 0  # refused: the buffer was full
    rejected_lines: int = 0  # InfluxDB refused them (4xx), or dropped them (partial write)
    lost_at_close: int = 0  # still buffered when close() gave up
    failed_requests: int = 0  # requests retried


class InfluxWriter:
    def __init__(
        self,
        config: InfluxConfig,
        *,
        max_buffer_lines: int = 200_000,
        batch_lines: int = 5_000,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        instance: str | None = None,
    ) -> None:
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
        self._need_database = config.api == "v1"
        self._causes: set[tuple[int, str]] = set()  # refusals logged so far

    @property
    def buffered(self) -> int:
        return len(self._buf)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
        )
        self._task = asyncio.create_task(self._run(), name="influx-writer")

    async def ensure_database(self) -> bool:
        """v1: creates the database unless it exists. True once it does (always for v2);
        False when InfluxDB cannot be reached (the writer tries again before writing).
        Raises InfluxSetupError when InfluxDB refuses to create it and it is not there."""
        if not self._need_database:
            return True
        assert self._session is not None
        cfg = self.config
        statement = f"CREATE DATABASE {quote_identifier(cfg.database)}"
        try:
            async with self._session.post(
                f"{cfg.url.rstrip('/')}/query", data={"q": statement}, headers=cfg.headers()
            ) as resp:
                status, message = resp.status, _message(await resp.text())
            if status < 300 and not message:
                self._need_database = False
                log.info("influx: database %s ready", quote_identifier(cfg.database))
                return True
            # refused (a user without admin rights): it may exist all the same
            names = await query(self._session, cfg, "SHOW DATABASES")
        except (aiohttp.ClientError, TimeoutError, OSError, InfluxError) as e:
            if not self.stats.failed_requests % 50:
                log.warning(
                    "influx: cannot reach %s to create database %s (%s): aggregates wait "
                    "in the buffer",
                    cfg.url,
                    quote_identifier(cfg.database),
                    e,
                )
            return False
        if any(cfg.database in row for s in names for row in s.get("values", ())):
            self._need_database = False
            return True
        raise InfluxSetupError(
            f"InfluxDB at {cfg.url} has no database {quote_identifier(cfg.database)} and "
            f"refused to create it ({status}: {message}). Create it as an InfluxDB admin: "
            f"curl -XPOST -u ADMIN:PASSWORD {cfg.url.rstrip('/')}/query --data-urlencode "
            f"'q={statement}', or name an existing database in XPUTRACE_INFLUX_DATABASE"
        )

    def submit(self, lines: list[str]) -> None:
        """Queues lines for writing; what does not fit the buffer is counted and dropped."""
        room = self.max_buffer_lines - len(self._buf)
        if len(lines) > room:
            over = len(lines) - max(room, 0)
            self.stats.overflowed_lines += over
            if not self._overflowing:
                log.warning(
                    "influx: buffer full (%d lines): dropping new aggregates", self.max_buffer_lines
                )
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
            if self._buf:
                await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            self.stats.lost_at_close += len(self._buf)
            log.error(
                "influx: %d aggregate lines not written at shutdown (not sent within %g s)",
                len(self._buf),
                timeout_s,
            )
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
            outcome: Literal["ok", "retry"] | int = "retry"
            try:
                if await self.ensure_database():
                    outcome = await self._post(chunk)
            except InfluxSetupError as e:  # the database went away, and stays away
                self._refused(403, str(e))
            if outcome == "retry":
                self.stats.failed_requests += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = self.min_backoff_s
            for _ in chunk:
                self._buf.popleft()
            rejected = outcome if isinstance(outcome, int) else 0
            self.stats.written_lines += len(chunk) - rejected
            self.stats.rejected_lines += rejected
            if rejected and all(line.startswith(_REPORT) for line in chunk):
                # the report itself refused: reporting that would be refused in turn, forever
                self._reported = (self.stats.overflowed_lines, self.stats.rejected_lines)
            if self._overflowing and len(self._buf) < self.max_buffer_lines // 2:
                self._overflowing = False
                log.warning(
                    "influx: %d aggregate lines dropped so far (buffer full)",
                    self.stats.overflowed_lines,
                )
            self._report()

    def _report(self) -> None:
        """A line with the writer's own counters, when they have changed."""
        now = (self.stats.overflowed_lines, self.stats.rejected_lines)
        if now == self._reported or len(self._buf) >= self.max_buffer_lines:
            return
        self._reported = now
        self._buf.append(
            f"{_REPORT}instance={self.instance.replace(' ', '_').replace(',', '_')} "
            f"overflowed_lines={now[0]}i,rejected_lines={now[1]}i,"
            f"buffered_lines={len(self._buf)}i {time.time_ns()}"
        )

    async def _post(self, chunk: list[str]) -> Literal["ok", "retry"] | int:
        """ "ok", "retry", or how many of the chunk's lines InfluxDB refused."""
        assert self._session is not None
        url, params, headers = self.config.write_request()
        body = ("\n".join(chunk) + "\n").encode()
        try:
            async with self._session.post(url, params=params, data=body, headers=headers) as resp:
                if resp.status < 300:
                    return "ok"
                status, message = resp.status, _message(await resp.text())
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            if not self.stats.failed_requests % 50:
                log.warning("influx: cannot write (%s), retrying", e)
            return "retry"
        if status >= 500:
            if not self.stats.failed_requests % 50:
                log.warning("influx: write answered %d, retrying: %s", status, message)
            return "retry"
        self._refused(status, message)
        if status in _RETRY_STATUS:
            if status == 404 and message.startswith("database not found"):
                self._need_database = True
            return "retry"
        return _refused_lines(message, len(chunk))

    def _refused(self, status: int, message: str) -> None:
        """Logs a refusal at error level, the first time its cause is seen."""
        cause = (status, _VARIABLE.sub("#", message))
        if cause in self._causes or len(self._causes) >= _MAX_CAUSES:
            return
        self._causes.add(cause)
        action = "retrying" if status in _RETRY_STATUS else "lines dropped"
        log.error("influx: write refused (%d, %s; logged once): %s", status, action, message)
        if len(self._causes) == _MAX_CAUSES:
            log.error(
                "influx: %d causes of refused writes logged; further ones are only "
                "counted (xputrace_writer)",
                _MAX_CAUSES,
            )


def _message(body: str) -> str:
    """InfluxDB's own message in an error body: "error" (1.x) or "message" (2.x, 3.x)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if not isinstance(doc, dict):
        return body.strip()[:500]
    results = doc.get("results")
    if isinstance(results, list) and results and isinstance(results[0], dict):
        doc = {**results[0], **doc}  # a query's error sits in its result
    return str(doc.get("error") or doc.get("message") or "")[:500]


def _refused_lines(message: str, chunk: int) -> int:
    """How many lines of a refused chunk were not written: a 1.x partial write counts the
    points it dropped and names each line it could not parse; any other refusal, all."""
    if not message.startswith("partial write"):
        return chunk
    dropped = re.search(r"dropped=(\d+)", message)
    n = (int(dropped.group(1)) if dropped else 0) + message.count("unable to parse '")
    return min(n, chunk) if n else chunk


def quote_identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def query(
    session: aiohttp.ClientSession, config: InfluxConfig, q: str
) -> list[dict[str, Any]]:
    """The series of one InfluxQL statement: [{"name", "tags", "columns", "values"}]."""
    params = {"db": config.query_database(), "q": q, "epoch": "ns"}
    try:
        async with session.get(
            f"{config.url.rstrip('/')}/query",
            params=params,
            headers=config.headers(),
            timeout=aiohttp.ClientTimeout(total=config.timeout_s),
        ) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
        raise InfluxError(f"InfluxDB query failed: {e}") from e
    if resp.status >= 300 or "error" in body:
        raise InfluxError(f"InfluxDB query failed ({resp.status}): {body.get('error')}")
    results = body.get("results") or [{}]
    if "error" in results[0]:
        raise InfluxError(f"InfluxDB query failed: {results[0]['error']}")
    return list(results[0].get("series", []))
