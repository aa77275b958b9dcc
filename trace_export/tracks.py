"""Tracks, packet sequences and interning of a Perfetto trace being written.

Every track that carries events (a thread, a queue, a counter) is written on a packet
sequence of its own, whose defaults name the track (so its packets carry no track uuid) and
whose timestamps are deltas on an incremental clock (so they take 1-3 bytes). A sequence's
first packet clears its incremental state, sets those defaults and starts the clock with a
snapshot; interned names are added to a sequence the first time it needs them. Track uuids
are derived from what they stand for (machine, pid, tid, queue), so the same events always
give the same trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from trace_export.protowire import Msg

__all__ = ["CLOCK_INCREMENTAL", "CLOCK_REALTIME", "ProcessInfo", "Processes", "Sequence", "Tracks",
           "packet"]  # fmt: skip

CLOCK_REALTIME = 1  # BuiltinClock: the events' timestamps are wall clock
CLOCK_INCREMENTAL = 64  # the first sequence-scoped clock id
SEQ_CLEARED, SEQ_NEEDS_STATE = 1, 2

# field numbers (perfetto/trace/trace_packet.proto and the messages it includes)
P_CLOCK_SNAPSHOT, P_TIMESTAMP, P_SEQ, P_TRACK_EVENT, P_INTERNED, P_FLAGS = 6, 8, 10, 11, 12, 13
P_DEFAULTS, P_TRACK_DESCRIPTOR = 59, 60


def packet(seq: int | None = None) -> Msg:
    """A TracePacket, on a sequence if given."""
    m = Msg()
    if seq is not None:
        m.uint(P_SEQ, seq)
    return m


def _uuid(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1 or 1  # positive, non-zero


@dataclass(frozen=True)
class ProcessInfo:
    """How a process is shown, instead of its command and machine: its name ("rank 0
    (host)"), and labels the UI shows beside it (the clock alignment its events were put
    on)."""

    name: str
    labels: tuple[str, ...] = ()


#: Per (machine, pid): how the process is shown (absent: "comm (machine)").
Processes = Mapping[tuple[str, int], ProcessInfo]


@dataclass
class Sequence:
    seq: int
    track: int  # uuid of the track its events go to
    names: set[int] = field(default_factory=set)  # interned event name iids
    keys: set[int] = field(default_factory=set)  # interned debug annotation name iids
    strings: set[int] = field(default_factory=set)  # interned annotation string iids


class Tracks:
    """Tracks and sequences made so far, and the global interning tables."""

    def __init__(self, shown: Processes | None = None) -> None:
        self.shown: Processes = shown or {}
        self.processes: dict[tuple[str, int], int] = {}  # (machine, pid) -> track uuid
        self.sequences: dict[tuple[object, ...], Sequence] = {}
        self.groups: set[str] = set()  # top-level track groups made (sampled())
        self.by_seq: list[Sequence] = []
        self.names: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.strings: dict[str, int] = {}
        self.pending = bytearray()  # packets to write before the next events
        self.clock = np.zeros(64, np.int64)  # each sequence's incremental clock, by seq

    @staticmethod
    def _iid(table: dict[str, int], s: str) -> int:
        return table.setdefault(s, len(table) + 1)

    def name_iid(self, s: str) -> int:
        return self._iid(self.names, s)

    def key_iid(self, s: str) -> int:
        return self._iid(self.keys, s)

    def string_iid(self, s: str) -> int:
        return self._iid(self.strings, s)

    def _emit(self, m: Msg) -> None:
        self.pending += Msg().blob(1, m).buf  # Trace.packet

    def start(self, first_ts: int) -> None:
        """The trace's first packet: timestamps are wall clock (REALTIME)."""
        clock = Msg().uint(1, CLOCK_REALTIME).uint(2, max(first_ts, 0))
        snap = Msg().blob(1, clock).uint(2, CLOCK_REALTIME)  # primary_trace_clock
        self._emit(packet(0x7FFF_FFFF).uint(P_FLAGS, SEQ_CLEARED).blob(P_CLOCK_SNAPSHOT, snap))

    def process(self, machine: str, pid: int, comm: str) -> int:
        key = (machine, pid)
        if key not in self.processes:
            uuid = self.processes[key] = _uuid("process", machine, pid)
            info = self.shown.get(key)
            name = info.name if info else f"{comm} ({machine[:12]})" if machine else comm
            proc = Msg().uint(1, pid).blob(6, name)
            for label in info.labels if info else ():
                proc.blob(8, label)  # ProcessDescriptor.process_labels
            self._describe(Msg().uint(1, uuid).blob(3, proc))
        return self.processes[key]

    def thread(self, machine: str, pid: int, tid: int, comm: str, t0: int) -> Sequence:
        """The thread's track and sequence; a new sequence's clock starts at t0, which no
        later event on it may precede."""
        key: tuple[object, ...] = ("thread", machine, pid, tid)
        if key not in self.sequences:
            parent = self.process(machine, pid, comm)
            uuid = _uuid(*key)
            thread = Msg().uint(1, pid).uint(2, tid).blob(5, comm)
            self._describe(Msg().uint(1, uuid).uint(5, parent).blob(4, thread))
            self._sequence(key, uuid, t0)
        return self.sequences[key]

    def child(self, kind: str, machine: str, pid: int, comm: str, name: str,
              ident: object, t0: int, counter_unit: str | None = None) -> Sequence:  # fmt: skip
        """A track under a process: a queue (kind "queue") or a counter."""
        key: tuple[object, ...] = (kind, machine, pid, ident)
        if key not in self.sequences:
            parent = self.process(machine, pid, comm)
            uuid = _uuid(*key)
            desc = Msg().uint(1, uuid).uint(5, parent).blob(2, name)
            if counter_unit is not None:
                desc.blob(8, Msg().blob(6, counter_unit))
            self._describe(desc)
            self._sequence(key, uuid, t0)
        return self.sequences[key]

    def sampled(self, group: str, name: str, unit: str) -> Sequence:
        """A counter track in a top-level track group (one per group name, made on first
        use) whose sequence takes absolute wall-clock timestamps: for values sampled every
        few seconds apart from the events (trace_export.counters)."""
        key: tuple[object, ...] = ("sampled", group, name)
        if key not in self.sequences:
            parent = _uuid("group", group)
            if group not in self.groups:
                self._describe(Msg().uint(1, parent).blob(2, group))
                self.groups.add(group)
            uuid = _uuid(*key)
            desc = Msg().uint(1, uuid).uint(5, parent).blob(2, name)
            self._describe(desc.blob(8, Msg().blob(6, unit)))
            s = Sequence(seq=len(self.by_seq) + 1, track=uuid)
            self.sequences[key] = s
            self.by_seq.append(s)
            defaults = Msg().uint(58, CLOCK_REALTIME).blob(11, Msg().uint(11, uuid))
            self._emit(packet(s.seq).uint(P_FLAGS, SEQ_CLEARED).blob(P_DEFAULTS, defaults))
        return self.sequences[key]

    def _describe(self, desc: Msg) -> None:
        self._emit(packet().blob(P_TRACK_DESCRIPTOR, desc))

    def _sequence(self, key: tuple[object, ...], track: int, t0: int) -> None:
        s = Sequence(seq=len(self.by_seq) + 1, track=track)
        self.sequences[key] = s
        self.by_seq.append(s)
        self._begin_sequence(s, t0)

    def _begin_sequence(self, s: Sequence, ts: int) -> None:
        """The sequence's first packet: cleared state, default track, clock at ts."""
        defaults = Msg().uint(58, CLOCK_INCREMENTAL).blob(11, Msg().uint(11, s.track))
        snap = Msg()
        snap.blob(1, Msg().uint(1, CLOCK_INCREMENTAL).uint(2, ts).uint(3, 1))
        snap.blob(1, Msg().uint(1, CLOCK_REALTIME).uint(2, ts))
        self._emit(packet(s.seq).uint(P_FLAGS, SEQ_CLEARED).blob(P_DEFAULTS, defaults)
                   .blob(P_CLOCK_SNAPSHOT, snap))  # fmt: skip
        if s.seq >= len(self.clock):
            self.clock = np.concatenate([self.clock, np.zeros(len(self.clock), np.int64)])
        self.clock[s.seq] = ts

    def intern(self, s: Sequence, names: set[int], keys: set[int], strings: set[int]) -> None:
        """Adds what s lacks of these iids to its interned data."""
        names, keys, strings = names - s.names, keys - s.keys, strings - s.strings
        if not (names or keys or strings):
            return
        data = Msg()
        for field_no, iids, table in ((2, names, self.names), (3, keys, self.keys),
                                      (29, strings, self.strings)):  # fmt: skip
            text = {v: k for k, v in table.items()} if iids else {}
            for iid in sorted(iids):
                data.blob(field_no, Msg().uint(1, iid).blob(2, text[iid]))
        self._emit(packet(s.seq).uint(P_FLAGS, SEQ_NEEDS_STATE).blob(P_INTERNED, data))
        s.names |= names
        s.keys |= keys
        s.strings |= strings

    def take(self) -> bytes:
        out = bytes(self.pending)
        self.pending.clear()
        return out
