"""Counter tracks that do not come from the events: values sampled every few seconds beside
them, such as a machine's accelerators (utilisation, memory used, power).

Each series is a counter track in a top-level track group (``"<host> devices"``): a device
is shared by the processes on it, so its counters are the machine's, not one process's, and
a group per machine keeps them together where the process groups of that machine are. The
points are the samples, on the trace's clock: the UI draws each value as holding until the
next one (a step), which is what a sample over the last interval means.

Written after the events, on sequences of their own with absolute timestamps (trace
processor sorts packets by time; each sequence's packets are in time order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trace_export.protowire import Msg
from trace_export.tracks import P_FLAGS, P_TIMESTAMP, P_TRACK_EVENT, SEQ_NEEDS_STATE, Tracks, packet

__all__ = ["CounterSeries", "counter_packets"]

_TYPE, _COUNTER, _DOUBLE_VALUE = 9, 4, 44  # TrackEvent.type, TYPE_COUNTER, double_counter_value


@dataclass(frozen=True)
class CounterSeries:
    group: str  # the track group ("node-1 devices")
    name: str  # the counter track ("node-1 gpu0 utilisation %")
    unit: str  # "%", "bytes", "W"
    points: Sequence[tuple[int, float]]  # (ns on the trace's clock, value), in time order


def counter_packets(tracks: Tracks, series: Sequence[CounterSeries]) -> tuple[bytes, int]:
    """The descriptors and points of every series (tracks: those of the trace being written),
    and how many points."""
    out = bytearray()
    n = 0
    for s in series:
        seq = tracks.sampled(s.group, s.name, s.unit).seq
        for t, v in s.points:
            event = Msg().uint(_TYPE, _COUNTER).double(_DOUBLE_VALUE, float(v))
            p = packet(seq).uint(P_TIMESTAMP, t).uint(P_FLAGS, SEQ_NEEDS_STATE)
            out += Msg().blob(1, p.blob(P_TRACK_EVENT, event)).buf
            n += 1
    return tracks.take() + bytes(out), n
