"""Markers: the timed things a trace is made of, as columns, before they are encoded.

A marker is a slice's begin or end, an instant on a queue, or a counter point, on one packet
sequence (one track). A begin refers to its call's row in the chunk being written (``ref``),
where its annotations are read when it is encoded (a call's slice on its thread and its copy
on a group row alike); begins are always written with their chunk, so only ends, instants
and counter points wait for a later one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from trace_export.distinct import distinct
from trace_export.events import EventChunk, args_of
from trace_export.layouts import Layout, group_values, queue_values
from trace_export.tracks import Tracks

__all__ = ["Annotations", "GroupRows", "Markers", "counter_markers", "group_markers",
           "queue_markers", "slice_markers"]  # fmt: skip

BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4
# at equal times: ends first (a slice closes before the next opens), begins last
_RANK = np.array([0, 3, 0, 2, 1], dtype=np.int64)
_ZERO_END_RANK = 4


@dataclass(frozen=True)
class Markers:
    t: np.ndarray  # int64 ns
    kind: np.ndarray  # uint8: BEGIN, END, INSTANT, COUNTER
    seq: np.ndarray  # int64 packet sequence (track)
    name: np.ndarray  # int64 interned event name iid (begins, instants)
    flow: np.ndarray  # uint64 flow id (0: none)
    value: np.ndarray  # int64 counter value
    tie: np.ndarray  # int64 order among equal (t, kind): begins -dur, ends -start
    ref: np.ndarray  # int64 row of a begin's call in the chunk (-1 for the others)
    track: np.ndarray  # uint64 uuid of the track an instant is on, not its sequence's (0)

    @staticmethod
    def empty(n: int = 0) -> Markers:
        z = np.zeros(n, np.int64)
        return Markers(z, np.zeros(n, np.uint8), z, z, np.zeros(n, np.uint64), z, z,
                       np.full(n, -1, np.int64), np.zeros(n, np.uint64))  # fmt: skip

    def __len__(self) -> int:
        return len(self.t)

    def concat(self, other: Markers) -> Markers:
        return Markers.join([self, other])

    @staticmethod
    def join(parts: list[Markers]) -> Markers:
        """The markers of all parts, one after another."""
        return Markers(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def take(self, idx: slice | np.ndarray) -> Markers:
        return Markers(*(getattr(self, f)[idx] for f in _FIELDS))

    def order(self) -> np.ndarray:
        """The markers' indices in time order: by time, then ends, counter points,
        instants and begins; equal begins longest first, equal ends innermost first."""
        rank = _RANK[self.kind]
        # the end of a slice of no duration (its tie is minus its start) after its own begin
        rank[(self.kind == END) & (self.tie == -self.t)] = _ZERO_END_RANK
        if not len(self.t) or int(self.t.max()) - int(self.t.min()) >= 1 << 60:
            return np.lexsort((self.tie, rank, self.t))
        # one key (time since the first, rank): a stable sort of it finds the runs the
        # markers come in (begins in start order, ends nearly so) and merges them
        key = ((self.t - self.t.min()) << 3) | rank
        order = np.argsort(key, kind="stable")
        k = key[order]
        same = np.flatnonzero(k[1:] == k[:-1])
        if len(same):  # equal times and ranks (a call and its copy on a group row): by tie
            at = np.unique(np.concatenate([same, same + 1]))
            run = np.cumsum(np.r_[True, k[at[1:]] != k[at[:-1]]])  # runs in time order
            order[at] = order[at][np.lexsort((self.tie[order[at]], run))]
        return order


_FIELDS = ("t", "kind", "seq", "name", "flow", "value", "tie", "ref", "track")


def _key(machine: np.ndarray, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """One int64 per (machine code, pid, tid): pids and tids are below 2**22 on Linux."""
    return ((machine.astype(np.int64) << 44) | (pid.astype(np.int64) << 22)
            | tid.astype(np.int64))  # fmt: skip


@dataclass(frozen=True)
class Annotations:
    """How the begins of a chunk are annotated: per event type, (key iid, DebugAnnotation
    value field, per-row values) for each annotation, in call order, then "ret"; and the
    key of "incomplete"."""

    by_type: dict[int, list[tuple[int, int, np.ndarray]]]  # name code -> annotations
    incomplete_key: int

    def interned(self, rows: np.ndarray, c: EventChunk) -> tuple[list[np.ndarray], set[int]]:
        """The string iids (per row) and keys the begins of these rows use."""
        strings, keys = [], set()
        for code in np.unique(c.name[rows]).tolist():
            plan = self.by_type[code]
            keys |= {k for k, _, _ in plan}
            strings += [values[rows] for _, f, values in plan if f == _STRING_IID]
        if (c.flags[rows] & 1).any():
            keys.add(self.incomplete_key)
        return strings, keys


_UINT, _STRING_IID, _POINTER = 3, 17, 7  # DebugAnnotation fields


def thread_seqs(c: EventChunk, tracks: Tracks) -> np.ndarray:
    """Each call's thread sequence (int64)."""
    t0 = int(c.ts[0])
    _, first, inv = distinct(_key(c.machine, c.pid, c.tid))
    seq_of = np.array([tracks.thread(c.machines[c.machine[i]], int(c.pid[i]), int(c.tid[i]),
                                     c.comms[c.comm[i]], t0).seq
                       for i in first.tolist()], np.int64)  # fmt: skip
    seqs: np.ndarray = seq_of[inv]
    return seqs


def slice_markers(c: EventChunk, tracks: Tracks, layout: Layout, flows: np.ndarray,
                  seq: np.ndarray) -> tuple[list[Markers], Annotations]:  # fmt: skip
    """A begin and an end for every call, on its thread's sequence (seq: thread_seqs()), as
    two parts (for Markers.join); and how to annotate the begins."""
    n = len(c)
    names = np.array([tracks.name_iid(t) for t in c.names], np.int64)
    ret = _strings(
        tracks,
        [c.name.astype(np.uint64), c.ret.astype(np.uint32)],
        lambda t, r: layout.ret_name(c.names[t], r - (1 << 32) if r >> 31 else r),
    )
    strings = {
        name: _strings(tracks, [c.args[a] for a in cols], fmt)
        for name, cols, fmt in layout.strings
        if all(a in c.args for a in cols)
    }
    texts = {a: np.array([tracks.string_iid(s) for s in col.table], np.uint64)[col.codes]
             for a, col in c.texts.items()}  # fmt: skip
    by_type = {}
    for code, t in enumerate(c.names):
        args = args_of(c.monitor_type, t)
        plan, shown = [], set()
        for a in args:
            if a in shown:
                continue
            joined = [(name, cols) for name, cols, _ in layout.strings
                      if a in cols and name in strings and set(cols) <= set(args)]  # fmt: skip
            if joined:
                name, cols = joined[0]
                plan.append((tracks.key_iid(name), _STRING_IID, strings[name]))
                shown |= set(cols)
            elif a in texts:
                plan.append((tracks.key_iid(a), _STRING_IID, texts[a]))
            else:
                field = _POINTER if a in layout.pointers else _UINT
                plan.append((tracks.key_iid(a), field, c.args[a]))
        plan.append((tracks.key_iid("ret"), _STRING_IID, ret))
        by_type[code] = plan
    ann = Annotations(by_type, tracks.key_iid("incomplete"))
    keys = {k for plan in by_type.values() for k, _, _ in plan}
    if (c.flags & 1).any():
        keys.add(ann.incomplete_key)
    used = [values for plan in by_type.values() for _, f, values in plan if f == _STRING_IID]
    _intern(tracks, seq, names[c.name], used, keys)
    begin = replace(Markers.empty(n), t=c.ts, kind=np.full(n, BEGIN, np.uint8), seq=seq,
                    name=names[c.name], flow=flows, tie=-c.dur,
                    ref=np.arange(n, dtype=np.int64))  # fmt: skip
    end = replace(Markers.empty(n), t=c.ts + c.dur, kind=np.full(n, END, np.uint8), seq=seq,
                  tie=-c.ts)  # fmt: skip
    return [begin, end], ann


def _strings(tracks: Tracks, cols: list[np.ndarray], fmt: Callable[..., str]) -> np.ndarray:
    """The interned string iid of fmt(*values) for each row's values of cols."""
    bits = [max(int(col.max()).bit_length(), 1) if len(col) else 1 for col in cols]
    if sum(bits) <= 63:  # the columns packed into one key: one unique instead of several
        codes = np.zeros(len(cols[0]), np.int64)
        for col, b in zip(cols, bits, strict=True):
            codes = (codes << b) | col.astype(np.int64)
    else:
        codes = np.zeros(len(cols[0]), np.int64)
        for col in cols:
            uniq, _, inv = distinct(col)
            codes = codes * len(uniq) + inv
    _, first, inv = distinct(codes)
    iids = [tracks.string_iid(fmt(*(int(col[i]) for col in cols))) for i in first.tolist()]
    per_row: np.ndarray = np.array(iids, np.uint64)[inv]
    return per_row


def _intern(tracks: Tracks, seq: np.ndarray, name: np.ndarray, strings: list[np.ndarray],
            keys: set[int]) -> None:  # fmt: skip
    """Interns on each sequence the names, keys and strings its begins use."""
    by_seq: dict[int, tuple[set[int], set[int]]] = {}
    for values in [name, *{id(v): v for v in strings}.values()]:
        is_name = values is name
        for combo in distinct((seq << 32) | values.astype(np.int64)).values.tolist():
            names, strs = by_seq.setdefault(combo >> 32, (set(), set()))
            (names if is_name else strs).add(combo & 0xFFFF_FFFF)
    for s, (names, strs) in by_seq.items():
        tracks.intern(tracks.by_seq[s - 1], names, keys, strs)


def queue_markers(c: EventChunk, tracks: Tracks, layout: Layout, flows: np.ndarray,
                  thread_seq: np.ndarray) -> Markers:  # fmt: skip
    """An instant on its queue's track where each call enqueued work (at its end), ending
    the call's flow. The instant is a packet of the call's own thread sequence (thread_seq:
    thread_seqs()) that names the queue's track: right after the call's end there, its
    timestamp costs nothing (a packet of the queue's own sequence: ~3 bytes a slice)."""
    rows = np.flatnonzero(flows > 0)
    queues = queue_values(layout, c.args)
    if not len(rows) or queues is None:
        return Markers.empty()
    t0 = int(c.ts[0])
    q = queues[rows]
    # queue values are pointers: a dict on the few distinct (process, queue) pairs
    proc = _key(c.machine[rows], c.pid[rows], np.zeros(len(rows), np.int32))
    uq, _, uq_inv = distinct(q)
    up_inv = distinct(proc).inverse
    _, cu_first, cu_inv = distinct(up_inv * len(uq) + uq_inv)
    track_of = []
    for i in cu_first.tolist():
        r, qv = int(rows[i]), int(q[i])
        s = tracks.child(
            "queue",
            c.machines[c.machine[r]],
            int(c.pid[r]),
            c.comms[c.comm[r]],
            layout.queue_label(qv),
            qv,
            t0,
        )
        track_of.append(s.track)
    seq = thread_seq[rows]
    names = np.array([tracks.name_iid(t) for t in c.names], np.int64)[c.name[rows]]
    m = Markers.empty(len(rows))
    return replace(m, t=c.ts[rows] + c.dur[rows], kind=np.full(len(rows), INSTANT, np.uint8),
                   seq=seq, name=names, flow=flows[rows],
                   track=np.array(track_of, np.uint64)[cu_inv])  # fmt: skip


class GroupRows:
    """The slices still open on each group row (their ends), so that a call overlapping the
    last one on its row without ending inside it is cut at that end: a row's slices nest."""

    def __init__(self) -> None:
        self.open: dict[int, list[int]] = {}  # sequence -> ends, outermost first

    def end(self, row: int, start: int, end: int) -> int:
        """Where a slice from start to end ends on its row (slices come in start order)."""
        stack = self.open.setdefault(row, [])
        while stack and stack[-1] <= start:
            stack.pop()
        if stack and end > stack[-1]:
            end = stack[-1]
        stack.append(end)
        return end

    def ends(self, row: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """end() of each slice (in start order, longest first at a tie)."""
        return np.array([self.end(*x) for x in zip(row.tolist(), start.tolist(), end.tolist(),
                                                   strict=True)], np.int64)  # fmt: skip


def group_markers(c: EventChunk, tracks: Tracks, layout: Layout, ann: Annotations,
                  rows_open: GroupRows) -> Markers:  # fmt: skip
    """A copy of each grouped call's slice (same name and annotations) on its group's row."""
    grouped = np.array([layout.grouped(t) for t in c.names], dtype=bool)[c.name]
    values = group_values(layout, c.args)
    rows = np.flatnonzero(grouped)
    if not len(rows) or values is None:
        return Markers.empty()
    rows = rows[np.lexsort((-c.dur[rows], c.ts[rows]))]
    t0, v = int(c.ts[0]), values[rows]
    seq_of: dict[tuple[int, int, int], int] = {}
    seq = np.empty(len(rows), np.int64)
    for j, (r, g) in enumerate(zip(rows.tolist(), v.tolist(), strict=True)):
        key = (int(c.machine[r]), int(c.pid[r]), g)
        if key not in seq_of:
            seq_of[key] = tracks.child("group", c.machines[key[0]], key[1], c.comms[c.comm[r]],
                                       layout.group_label(g), g, t0).seq  # fmt: skip
        seq[j] = seq_of[key]
    ts = c.ts[rows]
    end = rows_open.ends(seq, ts, ts + c.dur[rows])
    names = np.array([tracks.name_iid(t) for t in c.names], np.int64)[c.name[rows]]
    strings, keys = ann.interned(rows, c)
    _intern(tracks, seq, names, strings, keys)
    n = len(rows)
    begin = replace(Markers.empty(n), t=ts, kind=np.full(n, BEGIN, np.uint8), seq=seq,
                    name=names, tie=ts - end, ref=rows.astype(np.int64))  # fmt: skip
    finish = replace(Markers.empty(n), t=end, kind=np.full(n, END, np.uint8), seq=seq, tie=-ts)
    return begin.concat(finish)


def counter_markers(points: list[tuple[int, int, int]]) -> Markers:
    """Counter values: (time, sequence, value) each."""
    if not points:
        return Markers.empty()
    t, seq, value = (np.array(x, np.int64) for x in zip(*points, strict=True))
    m = Markers.empty(len(points))
    return replace(m, t=t, kind=np.full(len(points), COUNTER, np.uint8), seq=seq, value=value)
