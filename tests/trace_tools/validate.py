"""Reads a Perfetto trace back and checks it loads as meant; returns what it holds.

``validate_perfetto`` walks the packets in file order the way trace processor reads them
(compressed chunks in place, per-sequence interning, defaults and clocks) and raises
``TraceInvalid`` on the first thing wrong, naming the packet (``packet 7``; ``packet 7.3`` is
the fourth packet inside packet 7's compressed chunk), the track and what. It is stricter
than trace processor in one way: events on a track must come in time order, which is what
our exporter writes. Chrome JSON traces are checked by ``tests.trace_tools.validate_chrome``.

Timestamps come out as absolute ns on the reference clock of the clock snapshot that defines
the packet's clock (its ``primary_trace_clock``, else BOOTTIME, else its first absolute
clock); a builtin clock no snapshot mentions is taken as absolute already.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import perfetto.protos.perfetto.trace.perfetto_trace_pb2 as pb  # type: ignore[import-untyped]

__all__ = [
    "TRACE_PROCESSOR_ENV", "Instant", "PerfettoSummary", "Slice", "TraceInvalid", "Track",
    "read_trace", "trace_processor_slice_count", "validate_perfetto",
]  # fmt: skip

#: The variable naming a trace_processor_shell to cross-check with (read by the caller).
TRACE_PROCESSOR_ENV = "XPUTRACE_TRACE_PROCESSOR"

_CLEARED = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
_NEEDS_STATE = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
_BOOTTIME = pb.BUILTIN_CLOCK_BOOTTIME
_SEQ_CLOCKS = range(64, 128)  # clock ids scoped to one sequence
_BEGIN, _END = pb.TrackEvent.TYPE_SLICE_BEGIN, pb.TrackEvent.TYPE_SLICE_END
_INSTANT, _COUNTER = pb.TrackEvent.TYPE_INSTANT, pb.TrackEvent.TYPE_COUNTER
_PLAIN_VALUES = {"bool_value", "uint_value", "int_value", "double_value", "pointer_value",
                 "string_value", "legacy_json_value"}  # fmt: skip


class TraceInvalid(ValueError):
    """The first thing wrong with a trace: where (packet, track) and what."""


@dataclass(frozen=True)
class Track:
    uuid: int
    kind: str  # "process", "thread", "counter" or "other"
    name: str
    pid: int | None = None
    tid: int | None = None
    parent: int | None = None
    labels: tuple[str, ...] = ()  # a process's process_labels


@dataclass(frozen=True)
class Slice:
    track_uuid: int
    name: str
    ts: int  # absolute ns
    dur: int
    depth: int  # 0 for a slice with no enclosing slice on its track
    args: dict[str, Any] = field(default_factory=dict)  # the begin's and the end's


@dataclass(frozen=True)
class Instant:
    track_uuid: int
    name: str
    ts: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class PerfettoSummary:
    tracks: dict[int, Track]
    slices: list[Slice]  # ordered by (ts, track, depth)
    instants: list[Instant]  # in file order
    # each flow, numbered in the order they start (an id is free again once its flow ends):
    # (track uuid, ts) of each step
    flows: dict[int, list[tuple[int, int]]]
    counters: dict[int, list[tuple[int, float]]]  # track uuid -> (ts, value)
    packet_count: int  # packets other than compressed chunks, those inside them included
    sequences: dict[int, int]  # trusted_packet_sequence_id -> its packet count


@dataclass
class _Clock:
    incremental: bool
    multiplier: int
    snapshot_ns: int  # this clock's value at the snapshot
    reference_ns: int  # the reference clock's value at the same snapshot
    last_ns: int  # for an incremental clock, what the next delta is added to
    reference: int = 0  # the reference clock's id

    def to_absolute(self, value: int) -> int:
        ns = value * self.multiplier
        if self.incremental:
            ns += self.last_ns
            self.last_ns = ns
        return self.reference_ns + ns - self.snapshot_ns


@dataclass
class _Sequence:
    """A sequence's incremental state: dropped when a packet says it was cleared."""

    id: int
    cleared: bool = False
    packets: int = 0
    event_names: dict[int, str] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    annotation_names: dict[int, str] = field(default_factory=dict)
    annotation_strings: dict[int, str] = field(default_factory=dict)
    clocks: dict[int, _Clock] = field(default_factory=dict)
    default_clock: int | None = None
    default_track: int | None = None

    def intern(self, data: Any) -> None:
        self.event_names.update((e.iid, e.name) for e in data.event_names)
        self.categories.update((e.iid, e.name) for e in data.event_categories)
        self.annotation_names.update((e.iid, e.name) for e in data.debug_annotation_names)
        self.annotation_strings.update(
            (e.iid, e.str.decode("utf-8", "replace")) for e in data.debug_annotation_string_values
        )


@dataclass
class _Open:
    name: str
    ts: int
    args: dict[str, Any]
    where: str


def read_trace(src: str | os.PathLike[str] | bytes) -> bytes:
    """A trace's bytes from a path or the bytes themselves, gunzipped when gzip (1f 8b)."""
    data = bytes(src) if isinstance(src, bytes | bytearray | memoryview) else Path(src).read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise TraceInvalid(f"not a valid gzip file: {e}") from e


def validate_perfetto(src: str | os.PathLike[str] | bytes) -> PerfettoSummary:
    """Check a Perfetto trace (a path or its bytes, maybe gzipped); raise TraceInvalid."""
    checker = _Checker()
    checker.packets(_packet_bytes(read_trace(src)), "packet ")
    return checker.finish()


def trace_processor_slice_count(
    path: str | os.PathLike[str], shell: str | os.PathLike[str] | None = None,
    *, timeout: float = 300.0,
) -> int | None:  # fmt: skip
    """Rows of trace processor's slice table (slices and instants) for a trace, or None when
    no trace_processor_shell is given (see TRACE_PROCESSOR_ENV)."""
    if shell is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as query:
        query.write("select count(*) as n from slice;\n")
        query.flush()
        argv = [os.fspath(shell), "-q", query.name, os.fspath(path)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shell} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    for line in reversed(done.stdout.splitlines()):
        value = line.strip().strip('"')
        if value.isdigit():
            return int(value)
    raise RuntimeError(f"no count in the output of {shell}: {done.stdout[-2000:]!r}")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise TraceInvalid(f"byte {pos}: truncated varint")


def _packet_bytes(data: bytes) -> Iterator[bytes]:
    """The serialized packets of a Trace (only ``repeated TracePacket packet = 1``), one at a
    time, so no whole-trace message is built."""
    buf, pos = memoryview(data), 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        if key != (1 << 3 | 2):
            raise TraceInvalid(f"byte {start}: field {key >> 3} (wire type {key & 7}) in a "
                               "Trace, which holds only packets (field 1)")  # fmt: skip
        size, pos = _varint(buf, pos)
        if pos + size > len(buf):
            raise TraceInvalid(f"byte {start}: packet of {size} bytes runs past the end")
        yield bytes(buf[pos : pos + size])
        pos += size


class _Checker:
    def __init__(self) -> None:
        self.sequences: dict[int, _Sequence] = {}
        self.clocks: dict[int, _Clock] = {}  # global clock ids
        self.trace_clock: int | None = None  # the first snapshot's primary_trace_clock
        self.linked: set[int] = set()  # clocks a snapshot ties to the trace clock
        self.tracks: dict[int, Track] = {}
        self.stacks: dict[int, list[_Open]] = {}
        self.last_ts: dict[int, int] = {}
        self.slices: list[Slice] = []
        self.instants: list[Instant] = []
        self.flows: dict[int, list[tuple[int, int]]] = {}
        self.open_flows: dict[int, tuple[int, str]] = {}  # id -> (flow, where its last step)
        self.counters: dict[int, list[tuple[int, float]]] = {}
        self.packet_count = 0

    def packets(self, raw: Iterable[bytes], prefix: str) -> None:
        for i, data in enumerate(raw):
            where = f"{prefix}{i}"
            try:
                packet = pb.TracePacket.FromString(data)
            except Exception as e:  # protobuf's DecodeError differs between backends
                raise TraceInvalid(f"{where}: not a TracePacket: {e}") from e
            if packet.HasField("compressed_packets"):
                self.packets(_packet_bytes(_inflate(packet.compressed_packets, where)),
                             f"{where}.")  # fmt: skip
            else:
                self.packet(packet, where)

    def packet(self, p: Any, where: str) -> None:
        self.packet_count += 1
        seq_id = p.trusted_packet_sequence_id
        seq = self.sequences.setdefault(seq_id, _Sequence(seq_id))
        seq.packets += 1
        if p.sequence_flags & _CLEARED or p.incremental_state_cleared:
            seq = self.sequences[seq_id] = _Sequence(seq_id, cleared=True, packets=seq.packets)
        if p.sequence_flags & _NEEDS_STATE and not seq.cleared:
            raise TraceInvalid(f"{where}: needs incremental state but sequence {seq_id} was "
                               "never cleared before it")  # fmt: skip
        if p.HasField("trace_packet_defaults"):
            d = p.trace_packet_defaults
            seq.default_clock = d.timestamp_clock_id if d.HasField("timestamp_clock_id") else None
            ted = d.track_event_defaults
            seq.default_track = ted.track_uuid if ted.HasField("track_uuid") else None
        if p.HasField("interned_data"):
            seq.intern(p.interned_data)
        if p.HasField("clock_snapshot"):  # its own timestamp is not converted
            self.clock_snapshot(p.clock_snapshot, seq, where)
            return
        ts = self.timestamp(p, seq, where) if p.HasField("timestamp") else None
        if p.HasField("track_descriptor"):
            self.track_descriptor(p.track_descriptor, where)
        if p.HasField("track_event"):
            if ts is None:
                raise TraceInvalid(f"{where}: track event without a timestamp")
            self.track_event(p.track_event, ts, seq, where)

    def clock_snapshot(self, snap: Any, seq: _Sequence, where: str) -> None:
        values = {c.clock_id: c.timestamp * (c.unit_multiplier_ns or 1) for c in snap.clocks}
        if self.trace_clock is None:
            self.trace_clock = snap.primary_trace_clock or _BOOTTIME
        if self.trace_clock in values:
            self.linked |= {c.clock_id for c in snap.clocks if not c.is_incremental}
        reference = snap.primary_trace_clock or _BOOTTIME
        if reference not in values:
            absolute = [c.clock_id for c in snap.clocks if not c.is_incremental]
            if not absolute:
                raise TraceInvalid(f"{where}: clock snapshot has no absolute clock")
            reference = absolute[0]
        for c in snap.clocks:
            clocks = seq.clocks if c.clock_id in _SEQ_CLOCKS else self.clocks
            clocks[c.clock_id] = _Clock(c.is_incremental, c.unit_multiplier_ns or 1,
                                        values[c.clock_id], values[reference],
                                        values[c.clock_id], reference)  # fmt: skip

    def timestamp(self, p: Any, seq: _Sequence, where: str) -> int:
        clock_id = p.timestamp_clock_id if p.HasField("timestamp_clock_id") else seq.default_clock
        clock_id = clock_id or _BOOTTIME
        clocks = seq.clocks if clock_id in _SEQ_CLOCKS else self.clocks
        clock = clocks.get(clock_id)
        if clock is None and clock_id > pb.BUILTIN_CLOCK_MAX_ID:
            raise TraceInvalid(f"{where}: clock {clock_id} used before a clock snapshot "
                               f"defines it on sequence {seq.id}")  # fmt: skip
        # trace processor converts every timestamp to the trace clock, and drops events
        # whose clock no snapshot ties to it
        domain = clock.reference if clock is not None else clock_id
        trace_clock = self.trace_clock or _BOOTTIME
        if domain != trace_clock and domain not in self.linked:
            raise TraceInvalid(f"{where}: clock {domain} is not tied to the trace clock "
                               f"{trace_clock} by any clock snapshot")  # fmt: skip
        return int(p.timestamp) if clock is None else clock.to_absolute(p.timestamp)

    def track_descriptor(self, d: Any, where: str) -> None:
        if not d.uuid:
            raise TraceInvalid(f"{where}: track descriptor without a uuid")
        parent = d.parent_uuid if d.HasField("parent_uuid") else None
        if parent is not None and parent not in self.tracks:
            raise TraceInvalid(f"{where}: track {d.uuid}: parent track {parent} used before "
                               "its descriptor")  # fmt: skip
        name = d.name or d.static_name
        if d.HasField("counter"):
            track = Track(d.uuid, "counter", name, parent=parent)
        elif d.HasField("thread"):
            t = d.thread
            track = Track(d.uuid, "thread", name or t.thread_name, t.pid, t.tid, parent)
        elif d.HasField("process"):
            track = Track(d.uuid, "process", name or d.process.process_name, d.process.pid,
                          parent=parent, labels=tuple(d.process.process_labels))  # fmt: skip
        else:
            track = Track(d.uuid, "other", name, parent=parent)
        self.tracks[d.uuid] = track

    def track_event(self, ev: Any, ts: int, seq: _Sequence, where: str) -> None:
        uuid = ev.track_uuid if ev.HasField("track_uuid") else seq.default_track
        if uuid is None:
            raise TraceInvalid(f"{where}: track event with no track_uuid and no default track "
                               f"on sequence {seq.id}")  # fmt: skip
        if uuid not in self.tracks:
            raise TraceInvalid(f"{where}: track {uuid} used before its descriptor")
        here = f"{where}: track {uuid}"
        name = self.event_name(ev, seq, where)
        for iid in ev.category_iids:
            _lookup(seq.categories, iid, f"{where}: event category", seq)
        args = {self.annotation_name(a, seq, where): self.annotation_value(a, seq, where)
                for a in ev.debug_annotations}  # fmt: skip
        is_counter = self.tracks[uuid].kind == "counter"
        if ev.type == _COUNTER:
            if not is_counter:
                raise TraceInvalid(f"{here}: counter value on a non-counter track")
            self.advance(uuid, ts, here)
            value = ev.double_counter_value if ev.HasField("double_counter_value") \
                else ev.counter_value  # fmt: skip
            self.counters.setdefault(uuid, []).append((ts, value))
        elif ev.type in (_BEGIN, _END, _INSTANT):
            if is_counter:
                raise TraceInvalid(f"{here}: slice event on a counter track")
            self.slice_event(ev.type, uuid, name, ts, args, here)
        else:
            raise TraceInvalid(f"{here}: unsupported track event type {ev.type}")
        self.flow_steps(ev, uuid, ts, here)

    def advance(self, uuid: int, ts: int, here: str) -> None:
        last = self.last_ts.get(uuid)
        if last is not None and ts < last:
            raise TraceInvalid(f"{here}: timestamp {ts} goes backwards (previous {last})")
        self.last_ts[uuid] = ts

    def slice_event(self, kind: int, uuid: int, name: str, ts: int, args: dict[str, Any],
                    here: str) -> None:  # fmt: skip
        stack = self.stacks.setdefault(uuid, [])
        if kind == _END:
            if not stack:
                raise TraceInvalid(f"{here}: slice end with no open slice")
            if ts < stack[-1].ts:
                raise TraceInvalid(f"{here}: slice end at {ts} precedes its begin at "
                                   f"{stack[-1].ts} ({stack[-1].where})")  # fmt: skip
        self.advance(uuid, ts, here)
        if kind == _BEGIN:
            stack.append(_Open(name, ts, args, here))
        elif kind == _END:
            top = stack.pop()
            self.slices.append(Slice(uuid, top.name, top.ts, ts - top.ts, len(stack),
                                     {**top.args, **args}))  # fmt: skip
        else:
            self.instants.append(Instant(uuid, name, ts, args))

    def flow_steps(self, ev: Any, uuid: int, ts: int, here: str) -> None:
        for fid in ev.flow_ids:
            flow = self.open_flows[fid][0] if fid in self.open_flows else len(self.flows)
            self.flows.setdefault(flow, []).append((uuid, ts))
            self.open_flows[fid] = (flow, here)
        for fid in ev.terminating_flow_ids:
            if fid not in self.open_flows:
                raise TraceInvalid(f"{here}: terminating flow {fid} was never started")
            self.flows[self.open_flows.pop(fid)[0]].append((uuid, ts))

    def event_name(self, ev: Any, seq: _Sequence, where: str) -> str:
        kind = ev.WhichOneof("name_field")
        if kind == "name_iid":
            return _lookup(seq.event_names, ev.name_iid, f"{where}: event name", seq)
        return str(ev.name) if kind == "name" else ""

    def annotation_name(self, a: Any, seq: _Sequence, where: str) -> str:
        kind = a.WhichOneof("name_field")
        if kind == "name_iid":
            return _lookup(seq.annotation_names, a.name_iid, f"{where}: debug annotation name",
                           seq)  # fmt: skip
        if kind is None:
            raise TraceInvalid(f"{where}: debug annotation without a name")
        return str(a.name)

    def annotation_value(self, a: Any, seq: _Sequence, where: str) -> Any:
        kind = a.WhichOneof("value")
        if kind in _PLAIN_VALUES:
            return getattr(a, kind)
        if kind == "string_value_iid":
            return _lookup(seq.annotation_strings, a.string_value_iid,
                           f"{where}: debug annotation string", seq)  # fmt: skip
        if a.dict_entries:
            return {self.annotation_name(e, seq, where): self.annotation_value(e, seq, where)
                    for e in a.dict_entries}  # fmt: skip
        if a.array_values:
            return [self.annotation_value(e, seq, where) for e in a.array_values]
        return None

    def finish(self) -> PerfettoSummary:
        for stack in self.stacks.values():
            if stack:
                s = stack[-1]
                raise TraceInvalid(f"{s.where}: slice {s.name!r} begun at {s.ts} never ends")
        for fid, (_, where) in self.open_flows.items():
            raise TraceInvalid(f"flow {fid} never terminates (last step at {where})")
        self.slices.sort(key=lambda s: (s.ts, s.track_uuid, s.depth))
        return PerfettoSummary(
            tracks=self.tracks, slices=self.slices, instants=self.instants, flows=self.flows,
            counters=self.counters, packet_count=self.packet_count,
            sequences={s.id: s.packets for s in self.sequences.values()},
        )  # fmt: skip


def _lookup(table: dict[int, str], iid: int, what: str, seq: _Sequence) -> str:
    if iid not in table:
        raise TraceInvalid(f"{what} iid {iid} not interned on sequence {seq.id}")
    return table[iid]


def _inflate(data: bytes, where: str) -> bytes:
    """compressed_packets: zlib (what Perfetto writes), raw deflate accepted too."""
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        try:
            return zlib.decompress(data, wbits)
        except zlib.error:
            continue
    raise TraceInvalid(f"{where}: compressed_packets is neither zlib nor deflate data")
