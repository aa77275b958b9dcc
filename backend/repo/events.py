"""The ``events`` table: the writer's COPY in (rows built by backend.event_rows, in the
transaction of backend.event_writer); reading back: filter, keyset page, projection; and,
for trace jobs, counting and streaming every match in time order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.copy import AsyncQueuedLibpqWriter
from psycopg.types.string import TextBinaryLoader

from backend.event_rows import COLUMNS
from backend.filters import FieldSpec, as_epoch_ns
from backend.paging import OrderBy, page_clauses

__all__ = [
    "EVENT_FIELDS",
    "ORDERABLE",
    "TIEBREAK",
    "MonitorCount",
    "copy_events",
    "copy_in",
    "count_by_monitor",
    "query_events",
    "stream_events",
]

_COPY_IN = sql.SQL("COPY events ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)
_SEND_BUFFER = 4 << 20


async def copy_in(
    conn: AsyncConnection[Any], pieces: Iterator[memoryview], offload: bool = True
) -> None:
    """Sends a binary COPY stream of ``event_rows.COLUMNS`` (backend.event_rows.encode_copy)
    into events, in conn's transaction.

    offload: the next piece is built in a worker thread (``asyncio.to_thread``; numpy
    releases the GIL for most of it) while psycopg's queued writer task sends the previous
    one, so PostgreSQL works on rows while the next ones are built, and the event loop keeps
    serving requests during a large write (False: built on the event loop).
    """
    _widen_send_buffer(conn)
    cur = conn.cursor()
    # The queued writer sends from its own task: the next piece is built meanwhile.
    writer = AsyncQueuedLibpqWriter(cur)
    async with cur.copy(_COPY_IN, writer=writer) as copy:
        while True:
            if offload:
                piece = await asyncio.to_thread(next, pieces, None)
            else:
                piece = next(pieces, None)
            if piece is None:
                break
            await copy.write(piece)


def _widen_send_buffer(conn: AsyncConnection[Any]) -> None:
    """Lets the socket hold a few MB of COPY data (Linux caps it at net.core.wmem_max).

    The server then always has rows queued, even while the thread building the next piece
    holds the GIL and the task that sends the data waits for it.
    """
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as s:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < _SEND_BUFFER:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
    except OSError:
        pass


_STACK_OF = (
    "py_frames f WHERE f.monitor_id = events.monitor_id"
    " AND f.stack_id = (events.event_data->>'py_stack')::numeric"
)


def _innermost(column: str) -> str:
    return f"(SELECT f.{column} FROM {_STACK_OF} AND f.depth = 0)"


# What `filter` may name, and the columns behind the names (seeds/003 section 4).
EVENT_FIELDS: dict[str, FieldSpec] = {
    "timestamp": FieldSpec("ts", "timestamp", convert=as_epoch_ns),
    "machine_id": FieldSpec("machine_id", "str"),
    "monitor_id": FieldSpec("monitor_id", "str", ops=frozenset({"=", "!="}), convert=uuid.UUID),
    "pid": FieldSpec("pid", "int"),
    "tid": FieldSpec("tid", "int"),
    "cpu": FieldSpec("cpu", "int"),
    "comm": FieldSpec("comm", "str"),
    "event_type": FieldSpec("event_type", "str"),
    "duration_ns": FieldSpec("duration_ns", "int"),
    "duration": FieldSpec("duration_ns", "duration"),
    "ret": FieldSpec("ret", "int"),
    "flags": FieldSpec("flags", "int"),
    "event_data.*": FieldSpec("event_data::jsonb", "json"),
    # the innermost frame of the calling Python stack (config.python_stacks)
    "python_function": FieldSpec(_innermost("function"), "str", nullable=True),
    "python_file": FieldSpec(_innermost("file"), "str", nullable=True),
}
ORDERABLE = {
    "timestamp": "ts",
    "pid": "pid",
    "tid": "tid",
    "duration_ns": "duration_ns",
    "event_type": "event_type",
    "comm": "comm",
}
TIEBREAK = ["ts", "id"]

_COLUMNS = (
    "ts, id, machine_id, monitor_id, pid, tid, cpu, comm, event_type, duration_ns, "
    "ret, flags, event_data"
)
_NAMES = [c.strip() for c in _COLUMNS.split(",")]
# An event's Python stack, innermost frame first (NULL without one).
_PYTHON_STACK = (
    "(SELECT json_agg(json_build_object('function', f.function, 'file', f.file,"
    f" 'line', f.line) ORDER BY f.depth) FROM {_STACK_OF}) AS python_stack"
)


async def query_events(
    conn: AsyncConnection[Any],
    where: str,
    params: list[Any],
    order: OrderBy,
    after: tuple[Any, ...] | None,
    limit: int,
    *,
    json_text: bool = False,
) -> list[dict[str, Any]]:
    """Up to limit rows matching where, in order, strictly after the row keyed by after.

    json_text: event_data and python_stack come as their JSON text, unparsed (parsing them
    costs more than the rest of the row: for a reader that writes them out as text)."""
    where_sql, args, order_sql = page_clauses(where, params, order, after)
    sql = (
        f"SELECT {_COLUMNS}, {_PYTHON_STACK} FROM events WHERE {where_sql} "
        f"ORDER BY {order_sql} LIMIT %s"
    )
    async with conn.cursor(binary=json_text) as cur:
        if json_text:
            cur.adapters.register_loader("json", TextBinaryLoader)
        await cur.execute(sql.encode(), [*args, limit])
        rows = await cur.fetchall()
    return [dict(zip([*_NAMES, "python_stack"], row, strict=True)) for row in rows]


class MonitorCount(NamedTuple):
    monitor_id: uuid.UUID
    monitor_type: str | None  # None when unknown
    events: int
    machine_id: str
    first_ts: int  # the first match's start, the machine's clock (ns)
    last_end: int  # the latest end of a match (ts + duration_ns)


def count_by_monitor(
    conn: psycopg.Connection[Any], where: str, params: list[Any]
) -> list[MonitorCount]:
    """The matches of where per monitor (and its machine), and their time span.

    One pass over the matches: the count a trace job reports progress against, the
    monitor types it needs (events rows do not carry theirs) and the span its device
    counters cover.
    """
    cur = conn.execute(
        f"SELECT e.monitor_id, m.monitor_type, e.n, e.machine_id, e.first, e.last FROM "
        f"(SELECT monitor_id, machine_id, count(*) AS n, min(ts) AS first, "
        f"max(ts + duration_ns) AS last FROM events WHERE ({where}) "
        f"GROUP BY monitor_id, machine_id) e "
        f"LEFT JOIN monitors m ON m.id = e.monitor_id ORDER BY e.monitor_id, e.machine_id".encode(),
        params,
    )
    return [MonitorCount(*r) for r in cur.fetchall()]


def _in_order(
    columns: Sequence[str], where: str, params: Sequence[Any], shifts: Mapping[str, int]
) -> tuple[str, list[Any]]:
    """SELECT columns of the events matching where, ORDER BY ts, id, and its parameters.
    shifts: ns added to the ts of each machine's events (its clock offset), the order being
    that of the shifted ts."""
    unknown = [c for c in columns if c not in _NAMES]
    if unknown:
        raise ValueError(f"not events columns: {unknown}")
    shifts = {m: ns for m, ns in shifts.items() if ns}
    if not shifts:
        return f"SELECT {', '.join(columns)} FROM events WHERE ({where}) ORDER BY ts, id", [*params]
    whens = " ".join("WHEN %s THEN %s::bigint" for _ in shifts)
    shifted = f"(ts + CASE machine_id {whens} ELSE 0 END)::bigint AS ts"
    cols = ", ".join(shifted if c == "ts" else c for c in columns)
    if "ts" not in columns:
        raise ValueError("shifted timestamps need the ts column")
    # ORDER BY ts: the output column (the shifted one) when a name is both
    sql = f"SELECT {cols} FROM events WHERE ({where}) ORDER BY ts, id"
    return sql, [*(v for m, ns in shifts.items() for v in (m, ns)), *params]


@contextlib.contextmanager
def _read_only(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A read-only transaction of conn's: one snapshot for every read in it."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        yield


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_TRAILER = b"\xff\xff"


def copy_events(conn: psycopg.Connection[Any], where: str, params: list[Any],
                columns: Sequence[str], chunk_rows: int,
                shifts: Mapping[str, int] | None = None,
                ) -> Generator[tuple[bytes, int], None, None]:  # fmt: skip
    """Every row matching where, ``ORDER BY ts, id`` (ts shifted per machine by shifts), as
    COPY's binary format: chunks of up
    to chunk_rows tuples, (bytes, count), header and trailer left out (for
    trace_export.from_copy, which reads them without a Python object per row: a cursor's
    rows cost 2.5 us each, COPY's 0.8).

    One statement in a read-only transaction of conn's (conn must be outside one): one
    snapshot, streamed, memory bounded. Closing the iterator early ends the COPY and rolls
    the transaction back.
    """
    select, args = _in_order(columns, where, params, shifts or {})
    sql = f"COPY ({select}) TO STDOUT (FORMAT binary)"
    with _read_only(conn), conn.cursor().copy(sql.encode(), args) as copy:
        parts: list[Any] = []  # PostgreSQL sends each row as a message of its own
        started = False
        while data := copy.read():
            if not started:  # signature, flags, header extension; then maybe tuples
                head = bytes(data[:19])
                if head[:11] != _COPY_SIGNATURE:
                    raise psycopg.DataError("COPY: not its binary format")
                data = data[19 + int.from_bytes(head[15:19], "big") :]
                started = True
                if not data:
                    continue
            if len(data) == 2 and bytes(data) == _COPY_TRAILER:
                continue  # read on to the end of the COPY: its completion is read too
            parts.append(data)
            if len(parts) == chunk_rows:
                yield b"".join(parts), len(parts)
                parts = []
        if parts:
            yield b"".join(parts), len(parts)


def stream_events(
    conn: psycopg.Connection[Any],
    where: str,
    params: list[Any],
    columns: Sequence[str],
    chunk_rows: int,
    shifts: Mapping[str, int] | None = None,
) -> Generator[list[tuple[Any, ...]], None, None]:
    """Every row matching where, ``ORDER BY ts, id``, as lists of up to chunk_rows tuples.

    A server-side cursor in a read-only transaction of conn's (conn must be outside one):
    the rows come from one snapshot, chunk by chunk, and memory stays bounded. Closing the
    iterator early rolls the transaction back. ``event_data`` comes as its JSON text: parsed
    by psycopg it would cost 4x the rest of the row (measured: 98k rows/s against 470k).
    Rows come in the binary format: integers need no parsing (1M rows: 496k/s, 429k text).
    """
    with _read_only(conn), conn.cursor(name="trace_events", binary=True) as cur:
        cur.adapters.register_loader("json", TextBinaryLoader)
        select, args = _in_order(columns, where, params, shifts or {})
        cur.execute(select.encode(), args)
        while rows := cur.fetchmany(chunk_rows):
            yield rows
