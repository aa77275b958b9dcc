"""tests.trace_tools.validate: Perfetto traces built with the perfetto wheel's protos, checked
back."""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path

import perfetto.protos.perfetto.trace.perfetto_trace_pb2 as pb
import pytest

from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import (
    TRACE_PROCESSOR_ENV,
    Instant,
    Slice,
    TraceInvalid,
    Track,
    trace_processor_slice_count,
    validate_perfetto,
)

P = pb.TracePacket
BEGIN, END = pb.TrackEvent.TYPE_SLICE_BEGIN, pb.TrackEvent.TYPE_SLICE_END
INSTANT, COUNTER = pb.TrackEvent.TYPE_INSTANT, pb.TrackEvent.TYPE_COUNTER
CLEARED, NEEDS = P.SEQ_INCREMENTAL_STATE_CLEARED, P.SEQ_NEEDS_INCREMENTAL_STATE
PROCESS, THREAD, QUEUE, MEMORY = 1, 10, 20, 30  # track uuids


def trace(packets: list[pb.TracePacket]) -> bytes:
    return pb.Trace(packet=packets).SerializeToString()


def descriptors() -> list[pb.TracePacket]:
    return [
        P(track_descriptor=pb.TrackDescriptor(
            uuid=PROCESS, process=pb.ProcessDescriptor(pid=100, process_name="app"))),
        P(track_descriptor=pb.TrackDescriptor(
            uuid=THREAD, parent_uuid=PROCESS,
            thread=pb.ThreadDescriptor(pid=100, tid=101, thread_name="main"))),
        P(track_descriptor=pb.TrackDescriptor(uuid=QUEUE, parent_uuid=PROCESS, name="stream 7")),
        P(track_descriptor=pb.TrackDescriptor(uuid=MEMORY, parent_uuid=PROCESS, name="memory",
                                              counter=pb.CounterDescriptor())),
    ]  # fmt: skip


def event(ts: int, kind: int, seq: int = 1, clock: int | None = None, **fields: object) -> P:
    p = P(timestamp=ts, trusted_packet_sequence_id=seq,
          track_event=pb.TrackEvent(type=kind, **fields))  # type: ignore[arg-type]  # fmt: skip
    if clock is not None:
        p.timestamp_clock_id = clock
    return p


def sample() -> list[pb.TracePacket]:
    """A thread with nested slices on an incremental clock (its events compressed), a flow
    from the outer slice to an instant on a queue track, and a memory counter."""
    thread_start = P(
        trusted_packet_sequence_id=1, sequence_flags=CLEARED,
        trace_packet_defaults=pb.TracePacketDefaults(
            timestamp_clock_id=64, track_event_defaults=pb.TrackEventDefaults(track_uuid=THREAD)),
        clock_snapshot=pb.ClockSnapshot(clocks=[
            pb.ClockSnapshot.Clock(clock_id=64, timestamp=1000, is_incremental=True),
            pb.ClockSnapshot.Clock(clock_id=pb.BUILTIN_CLOCK_REALTIME, timestamp=1000)],
            primary_trace_clock=pb.BUILTIN_CLOCK_REALTIME),
    )  # fmt: skip
    interned = P(trusted_packet_sequence_id=1, sequence_flags=NEEDS, interned_data=pb.InternedData(
        event_names=[pb.EventName(iid=1, name="outer"), pb.EventName(iid=2, name="inner")],
        debug_annotation_names=[pb.DebugAnnotationName(iid=1, name="bytes")],
        debug_annotation_string_values=[pb.InternedString(iid=1, str=b"cudaSuccess")]))  # fmt: skip
    thread_events = [
        event(10, BEGIN, name_iid=1, flow_ids=[7], debug_annotations=[
            pb.DebugAnnotation(name_iid=1, uint_value=4096),
            pb.DebugAnnotation(name="ret", string_value_iid=1)]),
        event(5, BEGIN, name_iid=2, debug_annotations=[pb.DebugAnnotation(name="k", int_value=-1)]),
        event(20, END),
        event(65, END),
    ]  # fmt: skip
    chunk = P(compressed_packets=zlib.compress(trace(thread_events)))
    queue = [
        P(trusted_packet_sequence_id=2, sequence_flags=CLEARED),
        event(1100, INSTANT, seq=2, clock=pb.BUILTIN_CLOCK_REALTIME, track_uuid=QUEUE,
              name="launch", terminating_flow_ids=[7],
              debug_annotations=[pb.DebugAnnotation(name="sync", bool_value=False)]),
        event(1100, COUNTER, seq=2, clock=pb.BUILTIN_CLOCK_REALTIME, track_uuid=MEMORY,
              counter_value=4096),
        event(1200, COUNTER, seq=2, clock=pb.BUILTIN_CLOCK_REALTIME, track_uuid=MEMORY,
              double_counter_value=0.5),
    ]  # fmt: skip
    return [*descriptors(), thread_start, interned, chunk, *queue]


def test_sample_reads_back_exactly() -> None:
    s = validate_perfetto(trace(sample()))
    assert s.slices == [
        Slice(THREAD, "outer", 1010, 90, 0, {"bytes": 4096, "ret": "cudaSuccess"}),
        Slice(THREAD, "inner", 1015, 20, 1, {"k": -1}),
    ]
    assert s.instants == [Instant(QUEUE, "launch", 1100, {"sync": False})]
    assert s.flows == {0: [(THREAD, 1010), (QUEUE, 1100)]}  # the first flow (id 7)
    assert s.counters == {MEMORY: [(1100, 4096), (1200, 0.5)]}
    assert s.tracks == {
        PROCESS: Track(PROCESS, "process", "app", pid=100),
        THREAD: Track(THREAD, "thread", "main", pid=100, tid=101, parent=PROCESS),
        QUEUE: Track(QUEUE, "other", "stream 7", parent=PROCESS),
        MEMORY: Track(MEMORY, "counter", "memory", parent=PROCESS),
    }
    assert (s.packet_count, s.sequences) == (14, {0: 4, 1: 6, 2: 4})


def test_gzip_file_reads_like_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.pftrace.gz"
    path.write_bytes(gzip.compress(trace(sample())))
    assert validate_perfetto(path) == validate_perfetto(trace(sample()))


def test_incremental_clock_is_scaled_and_offset_to_its_reference() -> None:
    """Clock 65 counts µs from 2 (2000 ns) when BOOTTIME reads 5000: a delta of 3 µs is
    BOOTTIME 8000; a BOOTTIME timestamp (no clock id) is taken as it is."""
    clocks = [
        pb.ClockSnapshot.Clock(clock_id=65, timestamp=2, is_incremental=True,
                               unit_multiplier_ns=1000),
        pb.ClockSnapshot.Clock(clock_id=pb.BUILTIN_CLOCK_BOOTTIME, timestamp=5000),
    ]  # fmt: skip
    start = P(trusted_packet_sequence_id=1, sequence_flags=CLEARED,
              trace_packet_defaults=pb.TracePacketDefaults(timestamp_clock_id=65),
              clock_snapshot=pb.ClockSnapshot(clocks=clocks))  # fmt: skip
    s = validate_perfetto(trace([
        *descriptors(), start,
        event(3, INSTANT, track_uuid=THREAD, name="a"),
        event(1, INSTANT, track_uuid=THREAD, name="b"),
        event(9500, INSTANT, clock=pb.BUILTIN_CLOCK_BOOTTIME, track_uuid=THREAD, name="c"),
    ]))  # fmt: skip
    assert [(i.name, i.ts) for i in s.instants] == [("a", 8000), ("b", 9000), ("c", 9500)]


# Violations follow HEAD: the tracks of descriptors() and sequence 1 cleared, THREAD its default.
THREAD_DEFAULT = pb.TracePacketDefaults(
    track_event_defaults=pb.TrackEventDefaults(track_uuid=THREAD))  # fmt: skip
HEAD = [*descriptors(), P(trusted_packet_sequence_id=1, sequence_flags=CLEARED,
                          trace_packet_defaults=THREAD_DEFAULT)]  # fmt: skip
N = len(HEAD)  # index of the first packet after HEAD
NAMES = P(trusted_packet_sequence_id=1, sequence_flags=NEEDS,
          interned_data=pb.InternedData(event_names=[pb.EventName(iid=1, name="a")]))  # fmt: skip

VIOLATIONS: dict[str, tuple[Callable[[], list[P]], str]] = {
    "unbalanced end": (lambda: [event(10, END)],
                       f"packet {N}: track 10: slice end with no open slice"),
    "unclosed begin": (lambda: [event(10, BEGIN, name="a")],
                       f"packet {N}: track 10: slice 'a' begun at 10 never ends"),
    "backwards ts": (lambda: [event(20, INSTANT, name="a"), event(10, INSTANT, name="b")],
                     f"packet {N + 1}: track 10: timestamp 10 goes backwards (previous 20)"),
    "end before begin": (lambda: [event(20, BEGIN, name="a"), event(10, END)],
                         f"packet {N + 1}: track 10: slice end at 10 precedes its begin at 20 "
                         f"(packet {N}: track 10)"),
    "clock the trace clock cannot reach": (
        lambda: [event(10, INSTANT, name="a", clock=pb.BUILTIN_CLOCK_REALTIME)],
        f"packet {N}: clock 1 is not tied to the trace clock 6 by any clock snapshot"),
    "unknown track": (lambda: [event(10, INSTANT, name="a", track_uuid=99)],
                      f"packet {N}: track 99 used before its descriptor"),
    "unknown parent": (lambda: [P(track_descriptor=pb.TrackDescriptor(uuid=11, parent_uuid=77))],
                       f"packet {N}: track 11: parent track 77 used before its descriptor"),
    "unresolved name_iid": (lambda: [event(10, INSTANT, name_iid=5)],
                            f"packet {N}: event name iid 5 not interned on sequence 1"),
    "unresolved annotation name": (
        lambda: [event(10, INSTANT, name="a",
                       debug_annotations=[pb.DebugAnnotation(name_iid=3, uint_value=1)])],
        f"packet {N}: debug annotation name iid 3 not interned on sequence 1"),
    "interning dropped by a clear": (
        lambda: [NAMES, P(trusted_packet_sequence_id=1, sequence_flags=CLEARED),
                 event(10, INSTANT, name_iid=1, track_uuid=THREAD)],
        f"packet {N + 2}: event name iid 1 not interned on sequence 1"),
    "flow never terminates": (lambda: [event(10, INSTANT, name="a", flow_ids=[7])],
                              f"flow 7 never terminates (last step at packet {N}: track 10)"),
    "flow never started": (lambda: [event(10, INSTANT, name="a", terminating_flow_ids=[8])],
                           f"packet {N}: track 10: terminating flow 8 was never started"),
    "counter on a thread track": (lambda: [event(10, COUNTER, counter_value=1)],
                                  f"packet {N}: track 10: counter value on a non-counter track"),
    "slice on a counter track": (lambda: [event(10, INSTANT, name="a", track_uuid=MEMORY)],
                                 f"packet {N}: track 30: slice event on a counter track"),
    "state needed before a clear": (
        lambda: [P(trusted_packet_sequence_id=2, sequence_flags=NEEDS)],
        f"packet {N}: needs incremental state but sequence 2 was never cleared before it"),
    "clock without a snapshot": (
        lambda: [event(10, INSTANT, clock=64, name="a")],
        f"packet {N}: clock 64 used before a clock snapshot defines it on sequence 1"),
    "event without a timestamp": (lambda: [P(trusted_packet_sequence_id=1,
                                             track_event=pb.TrackEvent(type=INSTANT))],
                                  f"packet {N}: track event without a timestamp"),
    "error inside a chunk": (lambda: [P(compressed_packets=zlib.compress(trace([
                                 event(10, INSTANT, name="a"), event(11, END)])))],
                             f"packet {N}.1: track 10: slice end with no open slice"),
    "chunk not compressed": (lambda: [P(compressed_packets=b"nope")],
                             f"packet {N}: compressed_packets is neither zlib nor deflate data"),
}  # fmt: skip


@pytest.mark.parametrize("case", VIOLATIONS)
def test_violation_is_named(case: str) -> None:
    tail, message = VIOLATIONS[case]
    with pytest.raises(TraceInvalid) as err:
        validate_perfetto(trace([*HEAD, *tail()]))
    assert str(err.value) == message


def test_broken_files() -> None:
    data = trace(sample())
    with pytest.raises(TraceInvalid, match=r"runs past the end"):
        validate_perfetto(data[:-3])
    with pytest.raises(TraceInvalid, match=r"^not a valid gzip file"):
        validate_perfetto(gzip.compress(data)[:-10])


def test_trace_processor_agrees(tmp_path: Path, trace_processor: Path) -> None:
    """trace processor's slice table (slices and instants) matches what we read: the native
    shell where XPUTRACE_TRACE_PROCESSOR names one, else the WebAssembly build."""
    path = tmp_path / "t.pftrace"
    path.write_bytes(trace(sample()))
    count = trace_processor_slice_count(path, os.environ.get(TRACE_PROCESSOR_ENV))
    if count is None:
        count = tp.counts(path, trace_processor).slices
    s = validate_perfetto(path)
    assert count == len(s.slices) + len(s.instants) == 3


def test_trace_processor_output_and_failure(tmp_path: Path) -> None:
    """How the shell is called and its output read (a stand-in: the real one is not here)."""
    shell = tmp_path / "tp"
    shell.write_text('#!/bin/sh\n[ "$1" = -q ] && grep -q "from slice" "$2" && [ -f "$3" ] '
                     "&& printf 'Loading trace\\n\"n\"\\n3\\n' && exit 0\n"
                     'echo "bad call: $*" >&2; exit 2\n')  # fmt: skip
    shell.chmod(0o755)
    trace_file = tmp_path / "t.pftrace"
    trace_file.write_bytes(b"")
    assert trace_processor_slice_count(trace_file, None) is None
    assert trace_processor_slice_count(trace_file, shell) == 3
    with pytest.raises(RuntimeError, match=re.escape("exited 2: bad call: -q")):
        trace_processor_slice_count(tmp_path / "missing", shell)
