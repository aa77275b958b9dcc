"""Events to a Perfetto trace (protobuf), streamed, a chunk of events at a time.

Layout (what msprof and Kineto users expect): each process is a track group named by its
command and machine; in it, one row per thread with every call as a slice, nested as the
calls were; one row per queue (CUDA stream) with an instant where each asynchronous call
(launch, async copy, event record, graph launch) enqueued its work (a packet of the call's
thread sequence that names the queue's track), and a flow arrow from the call to it; one
row per group where the layout has them (an HCCL communicator) with a copy of each grouped
call's slice; counters for device memory held (from allocations and
frees) and calls per second; and counters given beside the events (a machine's accelerators,
trace_export.counters). Every argument is a debug annotation (text arguments as
strings); ``ret`` reads as the return code's name.

Encoding: what a chunk's markers are, their order and their annotations are worked out
with numpy, a column at a time; the packets themselves are written by C
(trace_export._speedups), since a million calls are some 120 MB of packets. Names,
annotation keys and return-code strings are interned per sequence; each track is a sequence
with itself as the default track and an incremental clock, so a slice's begin and end
packets take ~25 bytes before compression. With ``compress`` the packets go into
``compressed_packets`` (deflate, which trace processor reads natively) of about 512 KB of
packets each, compressed by zlib-ng in _THREADS threads while the next chunk is encoded.

Time order: slices end after they begin, and a call can end long after later calls began,
so each chunk's markers and the ends still pending are merged and sorted, and what falls
before the next chunk's first start is written; the rest waits. A chunk is written once
the next one is known: when the next starts in the nanosecond the chunk ends (calls that
start together nest longest first), the chunk's last calls wait and join it. Memory holds
two chunks and the calls still open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np
from zlib_ng import zlib_ng

from trace_export._speedups import encode
from trace_export.counters import CounterSeries, counter_packets
from trace_export.distinct import distinct
from trace_export.events import EventChunk
from trace_export.layouts import Layout, MemoryHeld, layout_for
from trace_export.markers import (
    Annotations,
    GroupRows,
    Markers,
    counter_markers,
    group_markers,
    queue_markers,
    slice_markers,
    thread_seqs,
)
from trace_export.protowire import Msg
from trace_export.pyframes import PythonFrames, StackFrames
from trace_export.stats import ExportStats, write_all
from trace_export.tracks import Processes, Tracks

__all__ = ["write_perfetto"]

# TrackEvent types and field numbers (perfetto/trace/track_event/track_event.proto)
_END, _BEGIN, _INSTANT, _COUNTER = 2, 1, 3, 4
_COMPRESS_AT = 512 << 10  # raw bytes per compressed_packets: about, whole packets
# compression threads (zlib-ng releases the GIL), and blocks compressing or waiting to be
# written before the encoder waits for them (16 x 512 KB: memory stays bounded)
_THREADS, _IN_FLIGHT = 2, 16


def write_perfetto(chunks: Iterable[EventChunk], out: BinaryIO, *, compress: bool = True,
                   progress: Callable[[int], None] | None = None,
                   stacks: StackFrames | None = None,
                   processes: Processes | None = None,
                   counters: Sequence[CounterSeries] = ()) -> ExportStats:  # fmt: skip
    """Writes the events as a Perfetto trace; returns what was written. With stacks, calls
    that carry a Python stack are drawn inside slices of its frames (trace_export.pyframes);
    processes: how some processes are named and labelled (tracks.ProcessInfo); counters:
    sampled values beside the events (trace_export.counters), written after them."""
    w = _Writer(out, compress, stacks, processes, counters)
    try:
        return write_all(w, chunks, progress)
    finally:  # on failure too: no compression left running
        w.pool.shutdown(cancel_futures=True)


class _Writer:
    def __init__(self, out: BinaryIO, compress: bool, stacks: StackFrames | None,
                 processes: Processes | None,
                 counters: Sequence[CounterSeries] = ()) -> None:  # fmt: skip
        self.out, self.compress = out, compress
        self.counters = counters
        self.frames = PythonFrames(stacks) if stacks is not None else None
        self.tracks = Tracks(processes)
        self.stats = ExportStats()
        self.pending = Markers.empty()  # ends, instants and counter points not yet written
        self.held: EventChunk | None = None  # the last chunk added, not written yet
        self.parts: list[bytes] = []  # packets not yet written, and their size
        self.size = 0
        self.started = False
        self.memory = MemoryHeld()
        self.groups = GroupRows()
        self.flows = _FlowIds()
        self.rates = _Rates()
        self.pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="trace-compress")
        self.compressing: list[Future[bytes]] = []

    def add(self, c: EventChunk) -> None:
        """Writes the chunk before c (held until now: c shows where its markers may end)."""
        held, self.held = self.held, c
        if held is None:
            return
        if c.ts[0] > held.ts[-1]:  # no call of c starts with the last ones of held
            self._chunk(held, horizon=int(c.ts[0]))
            return
        # c's first calls start in the same nanosecond as held's last ones, and calls that
        # start together nest longest first: those of held wait, with c (seldom: a copy)
        cut = int(np.searchsorted(held.ts, held.ts[-1], side="left"))
        if cut:
            self._chunk(held.take(slice(0, cut)), horizon=int(held.ts[-1]))
        self.held = held.take(slice(cut, len(held))).concat(c)

    def finish(self) -> None:
        if self.held is not None:
            self._chunk(self.held, horizon=None)
        rest = self.pending.concat(self.rates.close(self.tracks))
        if self.frames is not None:
            rest = rest.concat(self.frames.close())
        self._write(rest, None, None, None)
        if not self.started:  # no events: still a trace, its clock and nothing else
            self.tracks.start(0)
            self._add(self.tracks.take())
        if self.counters:
            packets, points = counter_packets(self.tracks, self.counters)
            self._add(packets)
            self.stats.counter_points += points
        self._flush(final=True)

    def _chunk(self, c: EventChunk, horizon: int | None) -> None:
        """Writes c's markers (and pending ones) before horizon; no call starts before it."""
        if not self.started:
            self.tracks.start(int(c.ts[0]))
            self.started = True
        if self.frames is not None:
            c = self.frames.tracker.name_calls(c)
        layout = layout_for(c.monitor_type)
        seq = thread_seqs(c, self.tracks)
        flows = self.flows.ids(c, layout, seq)
        calls, ann = slice_markers(c, self.tracks, layout, flows, seq)
        parts = [
            self.pending,
            *calls,
            queue_markers(c, self.tracks, layout, flows, seq),
            group_markers(c, self.tracks, layout, ann, self.groups),
            self._memory(c, layout),
            self.rates.add(c, self.tracks, horizon=horizon),
        ]
        if self.frames is not None:
            parts.append(self.frames.markers(c, self.tracks))
        self.stats.events += len(c)
        self._write(Markers.join(parts), horizon, c, ann)

    def _memory(self, c: EventChunk, layout: Layout) -> Markers:
        """Device memory held per process and device, a point at the end of each alloc and
        free that changes it (layouts.MemoryHeld)."""
        points = []
        for t, machine, pid, comm, device, held in self.memory.update(c, layout):
            s = self.tracks.child(
                "memory",
                machine,
                pid,
                comm,
                layout.memory_track(device),
                device,
                int(c.ts[0]),
                "bytes",
            )
            points.append((t, s.seq, held))
        return counter_markers(points)

    def _write(self, m: Markers, horizon: int | None, c: EventChunk | None,
               ann: Annotations | None) -> None:  # fmt: skip
        """Writes the markers before horizon (all if None), in time order; keeps the rest
        (never a begin: every call in c starts before horizon)."""
        if self.frames is not None:
            m = m.concat(self.frames.settle(m, horizon))
        order = m.order()
        cut = len(m) if horizon is None else int(np.searchsorted(m.t[order], horizon, "left"))
        now = order[:cut]
        self.pending = m.take(order[cut:])
        if not cut:
            return
        self._add(self.tracks.take())  # descriptors, sequence starts, interning: first
        pieces, begins, flows, points = _encode(m, now, self.tracks.clock, c, ann)
        for piece in pieces:
            self._add(piece)
        self.stats.slices += begins
        self.stats.flows += flows
        self.stats.counter_points += points

    def _add(self, packets: bytes) -> None:
        if packets:
            self.parts.append(packets)
            self.size += len(packets)
            if self.size >= _COMPRESS_AT:
                self._flush()

    def _flush(self, final: bool = False) -> None:
        """Writes what is buffered; compression runs in threads (zlib-ng releases the GIL)
        while the next packets are built, and blocks are written in order."""
        if self.parts:
            parts, self.parts, self.size = self.parts, [], 0
            if self.compress:
                self.compressing.append(self.pool.submit(_compressed, parts))
            else:
                for data in parts:
                    self._out(data)
        while self.compressing and (final or len(self.compressing) > _IN_FLIGHT):
            self._out(self.compressing.pop(0).result())

    def _out(self, data: bytes) -> None:
        self.out.write(data)
        self.stats.bytes += len(data)


# deflate level (zlib-ng, bench/trace_write.py, 1M calls): 4 takes 0.50 s and writes
# 15.0 bytes/slice; 3 takes 0.40 s but writes 16.8, over the 16 the trace format is held to;
# 5 writes 14.2 in 0.56 s. zlib-ng at level 4 is 1.8x faster than zlib at level 5 for
# about the same size (zlib: 0.88 s, 14.8).
_LEVEL = 4


def _compressed(parts: list[bytes]) -> bytes:
    """The packets of parts as one TracePacket.compressed_packets (50) in a Trace.packet (1)."""
    z = zlib_ng.compressobj(_LEVEL)
    deflated = b"".join([*(z.compress(p) for p in parts), z.flush()])
    return bytes(Msg().blob(1, Msg().blob(50, deflated)))


class _Rates:
    """Calls per second per process, over 100 ms bins, as a counter."""

    BIN = 100_000_000

    def __init__(self) -> None:
        self.counts: dict[int, dict[int, int]] = {}  # seq -> {bin: calls}

    def add(self, c: EventChunk, tracks: Tracks, horizon: int | None) -> Markers:
        procs, first, _ = distinct((c.machine.astype(np.int64) << 32) | c.pid)
        seqs = {}
        for mp, i in zip(procs.tolist(), first.tolist(), strict=True):
            m, pid = mp >> 32, mp & 0xFFFF_FFFF
            seqs[(m, pid)] = tracks.child(
                "rate",
                c.machines[m],
                pid,
                c.comms[c.comm[i]],
                f"{layout_for(c.monitor_type).api} calls/s",
                None,
                int(c.ts[0]),
                "calls/s",
            ).seq
        # one int64 per (machine code < 2**10, pid < 2**22, bin since the chunk's first
        # < 2**31, i.e. 6 years)
        base = int(c.ts[0]) // self.BIN
        key = (
            (c.machine.astype(np.int64) << 53)
            | (c.pid.astype(np.int64) << 31)
            | (c.ts // self.BIN - base)
        )
        keys, _, inv = distinct(key)
        counts = np.bincount(inv, minlength=len(keys))
        for k, n in zip(keys.tolist(), counts.tolist(), strict=True):
            m, pid, b = k >> 53, (k >> 31) & 0x3FFFFF, (k & 0x7FFF_FFFF) + base
            bins = self.counts.setdefault(seqs[(m, pid)], {})
            bins[b] = bins.get(b, 0) + n
        return self._closed(horizon)

    def _closed(self, horizon: int | None) -> Markers:
        """Bins no later call can fall in: a point at each bin's end (calls/s over the bin),
        and a 0 one bin later when the next bin is known to be empty."""
        points: list[tuple[int, int, int]] = []
        per_s = 1_000_000_000 // self.BIN
        for seq, bins in self.counts.items():
            for b in sorted(bins):
                end = (b + 1) * self.BIN
                if horizon is not None and (
                    end > horizon or (b + 1 not in bins and end + self.BIN > horizon)
                ):
                    break  # b still fills, or whether b + 1 stays empty is not known yet
                points.append((end, seq, bins.pop(b) * per_s))
                if b + 1 not in bins:
                    points.append((end + self.BIN, seq, 0))
        return counter_markers(points)

    def close(self, tracks: Tracks) -> Markers:
        return self._closed(None)


class _FlowIds:
    """Flow ids, from each call that enqueues work to its queue's instant at the call's end.

    A flow's id is free again once it ends, so ids are chosen to compress: (thread sequence
    << 4) | the number of its thread's flows still open when it starts. Calls on a thread
    nest, so its flows end last in, first out, and that number is free: almost always 0,
    one id per thread (3 bytes a slice less than ids counting up). The rare flow opened
    16 deep takes an id of its own from a counter above every thread's.
    """

    def __init__(self) -> None:
        self.open: dict[int, list[int]] = {}  # thread sequence -> ends of its open flows
        self.serial = 1 << 40

    def ids(self, c: EventChunk, layout: Layout, seq: np.ndarray) -> np.ndarray:
        """A flow id for each call of c that enqueues work (0 for the others)."""
        submits = np.array([layout.submits(t) for t in c.names], dtype=bool)[c.name]
        ids = np.zeros(len(c), np.uint64)
        rows = np.flatnonzero(submits)
        if not len(rows):
            return ids
        order = rows[np.argsort(seq[rows], kind="stable")]  # by thread, in start order
        cut = np.flatnonzero(np.diff(seq[order])) + 1
        for part in np.split(order, cut):
            ids[part] = self._thread(int(seq[part[0]]), c.ts[part], c.ts[part] + c.dur[part])
        return ids

    def _thread(self, s: int, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        stack = self.open.setdefault(s, [])
        while stack and stack[-1] <= start[0]:
            stack.pop()
        if not stack and bool((end[:-1] <= start[1:]).all()):  # none inside another
            stack.append(int(end[-1]))
            return np.full(len(start), s << 4, np.uint64)
        out = np.empty(len(start), np.uint64)
        for i, (b, e) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
            while stack and stack[-1] <= b:
                stack.pop()
            if len(stack) < 16:
                out[i] = s << 4 | len(stack)
            else:
                self.serial += 1
                out[i] = self.serial
            stack.append(e)
        return out


def _encode(m: Markers, order: np.ndarray, clock: np.ndarray, c: EventChunk | None,
            ann: Annotations | None) -> tuple[list[bytes], int, int, int]:  # fmt: skip
    """The TracePackets of the markers order names, in that order (trace_export._speedups),
    in pieces of whole packets of about _COMPRESS_AT bytes, and how many begins, flows and
    counter points they hold; clock (each sequence's incremental clock) moves on to the
    last of them.

    A call's begin carries its annotations: per event type, (key, value field, column) of
    each in ann, read at the call's row of c."""
    cols: list[np.ndarray] = []
    col_of: dict[int, int] = {}
    plan_start, keys, fields, plan_cols = [0], [], [], []
    if c is not None and ann is not None:
        for code in range(len(c.names)):
            for key, field, values in ann.by_type[code]:
                if id(values) not in col_of:
                    col_of[id(values)] = len(cols)
                    cols.append(np.ascontiguousarray(values, np.uint64))
                keys.append(key)
                fields.append(field)
                plan_cols.append(col_of[id(values)])
            plan_start.append(len(keys))
        row_type, row_flags, incomplete = c.name, c.flags, ann.incomplete_key
    else:
        row_type, row_flags, incomplete = np.empty(0, np.int32), np.empty(0, np.uint32), 0
    return encode(order, m.t, m.kind, m.seq, m.name, m.flow, m.value, m.ref, m.track, clock,
                  np.ascontiguousarray(row_type, np.int32),
                  np.ascontiguousarray(row_flags, np.uint32),
                  np.array(plan_start, np.int32), np.array(keys, np.uint32),
                  np.array(fields, np.uint8), np.array(plan_cols, np.int32), tuple(cols),
                  incomplete, _COMPRESS_AT)  # fmt: skip
