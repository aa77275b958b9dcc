"""One trace file from the events matching a filter: the synchronous half of a trace job.

build_trace() runs in a worker thread on its own psycopg connection (never the event loop):

1. count the matches per monitor (``events.count_by_monitor``): the total that progress is
   measured against, and each monitor's type (events rows do not carry it; the events of a
   monitor whose row is gone are read as CUDA's, the first probe's, whose layout they most
   likely have), and each machine's span of events, for which ``devices`` gives the device
   counters that a Perfetto trace holds beside the calls (backend.device_counters);
2. stream them ``ORDER BY ts, id`` with COPY in its binary format (``events.copy_events``),
   ``chunk_rows`` at a time, each chunk through ``trace_export.from_copy`` into the writer
   (Perfetto or Chrome JSON), optionally through gzip, into a temporary file beside the final
   one; the next chunk is read while one is written. Events of monitors of several types,
   or a build with no side connection for the writer's questions, come through a
   server-side cursor and ``trace_export.from_rows`` instead;
   Events are read in the order of their timestamps shifted by the spec's per-machine
   clock offsets (a job trace's machines put on the backend's clock), and processes are
   named as the spec says;
3. rename the file into place (atomic): ``<traces_dir>/<trace_id>``.

The stop flag is checked between chunks: set, the build ends with Stopped and leaves no file.
Fewer rows read than counted means events were deleted meanwhile (retention, a dropped
partition): BuildError, as is a query that fails. BuildError's message is for the user.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import psycopg

from backend.filters import FilterError, compile_filter
from backend.repo.events import (
    EVENT_FIELDS,
    MonitorCount,
    copy_events,
    count_by_monitor,
    stream_events,
)
from backend.repo.py_frames import stack_frames
from backend.trace_files import trace_path
from trace_export import (
    ROW_COLUMNS,
    CounterSeries,
    EventChunk,
    ExportStats,
    Processes,
    ProcessInfo,
    from_copy,
    from_rows,
    write_chrome_json,
    write_perfetto,
)
from trace_export.pyframes import frame_label

__all__ = ["BuildError", "Built", "DeviceCounters", "Stopped", "TraceSpec", "build_trace"]

DEFAULT_MONITOR_TYPE = "CUDA"
#: (spans, shifts) -> the device counters of a trace (build_trace's devices)
DeviceCounters = Callable[
    [Mapping[str, tuple[int, int]], Mapping[str, int]], Sequence[CounterSeries]
]
T = TypeVar("T")


class Stopped(Exception):
    """The backend is stopping: the build was abandoned and left no file."""


class BuildError(Exception):
    """The trace cannot be built; str(e) says why, for the user."""


@dataclass(frozen=True)
class TraceSpec:
    trace_id: uuid.UUID
    filter: str
    format: str  # "perfetto" | "chrome"
    gzip: bool
    #: how some processes are shown (a job trace's "rank N (host)", its clock alignment)
    processes: Processes = field(default_factory=dict)
    #: ns added to the timestamps of each machine's events: its clock offset
    shifts: Mapping[str, int] = field(default_factory=dict)

    def layout(self) -> dict[str, Any] | None:
        """processes and shifts as trace_jobs.layout holds them (None: neither)."""
        if not self.processes and not self.shifts:
            return None
        return {
            "processes": [
                {"machine": m, "pid": pid, "name": p.name, "labels": list(p.labels)}
                for (m, pid), p in self.processes.items()
            ],
            "shifts": dict(self.shifts),
        }

    @staticmethod
    def of(trace_id: uuid.UUID, filter: str, format: str, gzip: bool,
           layout: Mapping[str, Any] | None) -> TraceSpec:  # fmt: skip
        """The spec of a trace job's row (layout: its layout column)."""
        layout = layout or {}
        processes = {
            (str(p["machine"]), int(p["pid"])): ProcessInfo(
                str(p["name"]), tuple(str(x) for x in p.get("labels") or ())
            )
            for p in layout.get("processes") or ()
        }
        shifts = {str(m): int(ns) for m, ns in (layout.get("shifts") or {}).items()}
        return TraceSpec(trace_id, filter, format, gzip, processes, shifts)


@dataclass(frozen=True)
class Built:
    events: int  # events in the trace
    events_total: int  # events counted before the read
    file_size: int
    stats: ExportStats


def build_trace(
    conn: psycopg.Connection[Any],
    spec: TraceSpec,
    traces_dir: Path,
    *,
    stop: threading.Event,
    chunk_rows: int = 50_000,
    on_total: Callable[[int], None] = lambda total: None,
    on_progress: Callable[[int], None] = lambda done: None,
    checkpoint: Callable[[str], None] = lambda stage: None,
    side: psycopg.Connection[Any] | None = None,
    devices: DeviceCounters | None = None,
) -> Built:
    """Writes the trace of spec to traces_dir; see the module doc.

    conn: autocommit, outside a transaction. side: another connection, for what the writer
    asks meanwhile (Python stacks): with it, the events are read with COPY, which holds
    conn until it ends; without, through a cursor. on_total(total) once counted,
    on_progress(done) as the writer consumes events. checkpoint(stage) is called at
    "counted" and after each "chunk" (tests hold a build there). devices(spans, shifts):
    the device counters of the machines of spans ({machine: (first ns, last ns)} on its
    clock), shifted as its events (shifts).
    """
    try:
        where, params = compile_filter(spec.filter, EVENT_FIELDS)
    except FilterError as e:
        raise BuildError(str(e)) from None
    if stop.is_set():
        raise Stopped
    try:
        counts = count_by_monitor(conn, where, params)
    except psycopg.Error as e:
        raise _db_error("counting the events", e, stop) from None
    total = sum(c.events for c in counts)
    types = {c.monitor_id: c.monitor_type or DEFAULT_MONITOR_TYPE for c in counts}
    kinds = set(types.values())
    mixed = len(kinds) > 1
    kind = kinds.pop() if len(kinds) == 1 else DEFAULT_MONITOR_TYPE
    on_total(total)
    checkpoint("counted")
    counters: Sequence[CounterSeries] = ()
    if devices is not None and spec.format == "perfetto":
        counters = devices(_spans(counts), spec.shifts)
    columns = (*ROW_COLUMNS, "monitor_id") if mixed else ROW_COLUMNS
    read = 0

    def chunks() -> Generator[EventChunk, None, None]:
        nonlocal read
        if stop.is_set():
            raise Stopped

        def copied(got: Any) -> tuple[int, Iterable[EventChunk]]:  # (COPY bytes, rows)
            return got[1], [from_copy(got[0], got[1], kind)]

        def fetched(rows: Any) -> tuple[int, Iterable[EventChunk]]:  # a cursor's rows
            return len(rows), _by_type(rows, types) if mixed else [from_rows(rows, kind)]

        read_in: Callable[[Any], tuple[int, Iterable[EventChunk]]]
        source: Generator[Any, None, None]
        if not mixed and side is not None:  # the common case: COPY's binary rows, read in C
            source = copy_events(conn, where, params, columns, chunk_rows, spec.shifts)
            read_in = copied
        else:
            source = stream_events(conn, where, params, columns, chunk_rows, spec.shifts)
            read_in = fetched
        # closed at once however this generator ends: the read transaction ends with it
        with contextlib.closing(source):
            for got in _read_ahead(source):
                n, made = read_in(got)
                read += n
                yield from made
                checkpoint("chunk")
                if stop.is_set():
                    raise Stopped

    asker = conn if side is None else side
    traces_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = trace_path(traces_dir, spec.trace_id)
    fd, tmp_name = tempfile.mkstemp(dir=traces_dir, prefix=f".{spec.trace_id}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            out: BinaryIO = raw
            with contextlib.ExitStack() as stack:
                if spec.gzip:
                    gz = gzip.GzipFile(
                        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6
                    )
                    stack.callback(gz.close)
                    out = cast(BinaryIO, gz)
                source = chunks()
                try:
                    if spec.format == "perfetto":
                        # gzip over the file replaces the writer's own deflate of packets
                        stats = write_perfetto(
                            source,
                            out,
                            compress=not spec.gzip,
                            progress=on_progress,
                            stacks=lambda ids: python_stacks(asker, ids),
                            processes=spec.processes,
                            counters=counters,
                        )
                    else:
                        stats = write_chrome_json(
                            source,
                            out,
                            progress=on_progress,
                            stacks=lambda ids: python_stacks(asker, ids),
                            processes=spec.processes,
                        )
                except psycopg.Error as e:
                    raise _db_error("reading the events", e, stop) from None
                finally:
                    source.close()
            raw.flush()
            os.fsync(raw.fileno())
        if read < total:
            raise BuildError(
                f"{total - read} of the {total} events matching the filter were deleted while "
                f"the trace was being generated (retention or a dropped partition); generate "
                f"it again"
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(traces_dir)
    return Built(events=read, events_total=total, file_size=final.stat().st_size, stats=stats)


def _spans(counts: Iterable[MonitorCount]) -> dict[str, tuple[int, int]]:
    """{machine: (its matches' first start, last end)} on the machine's clock."""
    spans: dict[str, tuple[int, int]] = {}
    for c in counts:
        lo, hi = spans.get(c.machine_id, (c.first_ts, c.last_end))
        spans[c.machine_id] = (min(lo, c.first_ts), max(hi, c.last_end))
    return spans


def python_stacks(conn: psycopg.Connection[Any], ids: Sequence[int]) -> dict[int, list[str]]:
    """The frames of these Python stacks as trace labels, outermost first."""
    return {
        sid: [frame_label(*f) for f in frames] for sid, frames in stack_frames(conn, ids).items()
    }


def _read_ahead(items: Iterator[T]) -> Generator[T, None, None]:
    """items, the next one fetched in a thread while the caller works on this one: a
    server-side cursor's rows are made only when asked for, so PostgreSQL makes the next
    chunk while this one is written (bench/trace_job.py). Ends only once no fetch runs."""
    with ThreadPoolExecutor(1, thread_name_prefix="trace-fetch") as pool:
        ahead = pool.submit(next, items, None)
        try:
            while (item := ahead.result()) is not None:
                ahead = pool.submit(next, items, None)
                yield item
        finally:
            futures.wait([ahead])  # the caller closes items next: never while in use


def _by_type(rows: list[tuple[Any, ...]], types: dict[uuid.UUID, str]) -> Iterator[EventChunk]:
    """Rows whose last column is monitor_id, as chunks of consecutive rows of one monitor
    type: the chunks stay in start-time order, as the writers need."""
    for kind, run in itertools.groupby(rows, lambda r: types.get(r[-1], DEFAULT_MONITOR_TYPE)):
        yield from_rows([r[:-1] for r in run], kind)


def _db_error(doing: str, e: psycopg.Error, stop: threading.Event) -> Exception:
    if stop.is_set():  # the backend cancelled the query to stop
        return Stopped()
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, psycopg.errors.UndefinedTable):
        return BuildError(f"{doing} failed: {first} (a partition was dropped meanwhile?)")
    return BuildError(f"{doing} failed: {first}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
