"""Markers: the timed things a trace is made of, as columns, before they are encoded.

A marker is a slice's begin or end, an instant on a queue, or a counter point, on one packet
sequence (one track). Begins carry their annotations as (key iid, value) pairs, the value a
uint64 or, where ``arg_str`` says so, an interned string iid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from trace_export.events import EventChunk, args_of
from trace_export.layouts import Layout
from trace_export.tracks import Tracks

__all__ = ["Markers", "counter_markers", "queue_markers", "slice_markers"]

BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4
# at equal times: ends first (a slice closes before the next opens), begins last
_RANK = np.array([0, 3, 0, 2, 1], dtype=np.int64)


@dataclass(frozen=True)
class Markers:
    t: np.ndarray  # int64 ns
    kind: np.ndarray  # uint8: BEGIN, END, INSTANT, COUNTER
    seq: np.ndarray  # int64 packet sequence (track)
    name: np.ndarray  # int64 interned event name iid (begins, instants)
    flow: np.ndarray  # uint64 flow id (0: none)
    value: np.ndarray  # int64 counter value
    tie: np.ndarray  # int64 order among equal (t, kind): begins -dur, ends -start
    args: np.ndarray  # (n, k, 2) uint64: annotation key iid (0: none), value
    arg_str: np.ndarray  # (n, k) bool: the value is a string iid

    @staticmethod
    def empty(n: int = 0, k: int = 0) -> Markers:
        z = np.zeros(n, np.int64)
        return Markers(z, np.zeros(n, np.uint8), z, z, np.zeros(n, np.uint64), z, z,
                       np.zeros((n, k, 2), np.uint64), np.zeros((n, k), bool))  # fmt: skip

    def __len__(self) -> int:
        return len(self.t)

    def concat(self, other: Markers) -> Markers:
        k = max(self.args.shape[1], other.args.shape[1])
        a, b = self._widen(k), other._widen(k)
        return Markers(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in _FIELDS))

    def _widen(self, k: int) -> Markers:
        pad = k - self.args.shape[1]
        if not pad:
            return self
        return replace(self, args=np.pad(self.args, ((0, 0), (0, pad), (0, 0))),
                       arg_str=np.pad(self.arg_str, ((0, 0), (0, pad))))  # fmt: skip

    def take(self, idx: slice | np.ndarray) -> Markers:
        return Markers(*(getattr(self, f)[idx] for f in _FIELDS))

    def sorted(self) -> Markers:
        return self.take(np.lexsort((self.tie, _RANK[self.kind], self.t)))


_FIELDS = ("t", "kind", "seq", "name", "flow", "value", "tie", "args", "arg_str")


def _key(machine: np.ndarray, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """One int64 per (machine code, pid, tid): pids and tids are below 2**22 on Linux."""
    return ((machine.astype(np.int64) << 44) | (pid.astype(np.int64) << 22)
            | tid.astype(np.int64))  # fmt: skip


def slice_markers(c: EventChunk, tracks: Tracks, layout: Layout, flows: np.ndarray) -> Markers:
    """A begin and an end for every call, on its thread's sequence."""
    n, t0 = len(c), int(c.ts[0])
    key = _key(c.machine, c.pid, c.tid)
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    seq_of = np.array([tracks.thread(c.machines[c.machine[i]], int(c.pid[i]), int(c.tid[i]),
                                     c.comms[c.comm[i]], t0).seq
                       for i in first.tolist()], np.int64)  # fmt: skip
    seq = seq_of[inv]
    names = np.array([tracks.name_iid(t) for t in c.names], np.int64)
    # annotation slots: every argument any of these types has, then ret, then incomplete
    slots = sorted({a for t in c.names for a in args_of(c.monitor_type, t)})
    keys = np.array([tracks.key_iid(a) for a in [*slots, "ret", "incomplete"]], np.uint64)
    k = len(slots) + 2
    args = np.zeros((n, k, 2), np.uint64)
    arg_str = np.zeros((n, k), bool)
    for j, a in enumerate(slots):
        has = np.array([a in args_of(c.monitor_type, t) for t in c.names], bool)[c.name]
        args[:, j, 0] = np.where(has, keys[j], 0)
        args[:, j, 1] = c.args[a]
    pair_key = (c.name.astype(np.int64) << 32) | (c.ret.astype(np.int64) & 0xFFFF_FFFF)
    _, pair_first, pair_inv = np.unique(pair_key, return_index=True, return_inverse=True)
    ret_iid = np.array([tracks.string_iid(layout.ret_name(c.names[c.name[i]], int(c.ret[i])))
                        for i in pair_first.tolist()], np.uint64)  # fmt: skip
    args[:, k - 2, 0] = keys[k - 2]
    args[:, k - 2, 1] = ret_iid[pair_inv]
    arg_str[:, k - 2] = True
    incomplete = (c.flags & 1) > 0
    args[:, k - 1, 0] = np.where(incomplete, keys[k - 1], 0)
    args[:, k - 1, 1] = 1
    _intern(tracks, seq, names[c.name], ret_iid[pair_inv],
            [int(x) for x in keys[: k - 1]], keys[k - 1] if incomplete.any() else None)
    begin = Markers(c.ts, np.full(n, BEGIN, np.uint8), seq, names[c.name], flows,
                    np.zeros(n, np.int64), -c.dur, args, arg_str)  # fmt: skip
    end = Markers.empty(n, k)
    end = replace(end, t=c.ts + c.dur, kind=np.full(n, END, np.uint8), seq=seq, tie=-c.ts)
    return begin.concat(end)


def _intern(tracks: Tracks, seq: np.ndarray, name: np.ndarray, ret: np.ndarray,
            keys: list[int], incomplete_key: object) -> None:  # fmt: skip
    """Interns on each sequence the names and strings its begins use."""
    combos = np.unique((seq << 40) | (name << 20) | ret.astype(np.int64))
    extra = {int(incomplete_key)} if incomplete_key is not None else set()  # type: ignore[call-overload]
    by_seq: dict[int, tuple[set[int], set[int]]] = {}
    for combo in combos.tolist():
        s, nm, r = combo >> 40, (combo >> 20) & 0xFFFFF, combo & 0xFFFFF
        names, strings = by_seq.setdefault(s, (set(), set()))
        names.add(nm)
        strings.add(r)
    for s, (names, strings) in by_seq.items():
        tracks.intern(tracks.by_seq[s - 1], names, set(keys) | extra, strings)


def queue_markers(c: EventChunk, tracks: Tracks, layout: Layout, flows: np.ndarray) -> Markers:
    """An instant on its queue's sequence where each call enqueued work (at its end), ending
    the call's flow."""
    rows = np.flatnonzero(flows > 0)
    if not len(rows) or layout.queue_arg is None or layout.queue_arg not in c.args:
        return Markers.empty()
    t0 = int(c.ts[0])
    q = c.args[layout.queue_arg][rows]
    # queue values are pointers: a dict on the few distinct (process, queue) pairs
    proc = _key(c.machine[rows], c.pid[rows], np.zeros(len(rows), np.int32))
    uq, uq_inv = np.unique(q, return_inverse=True)
    up_inv = np.unique(proc, return_inverse=True)[1]
    combo = up_inv.astype(np.int64) * len(uq) + uq_inv
    _, cu_first, cu_inv = np.unique(combo, return_index=True, return_inverse=True)
    seq_of = []
    for i in cu_first.tolist():
        r, qv = int(rows[i]), int(q[i])
        s = tracks.child("queue", c.machines[c.machine[r]], int(c.pid[r]), c.comms[c.comm[r]],
                         layout.queue_label(qv), qv, t0)
        seq_of.append(s.seq)
    seq = np.array(seq_of, np.int64)[cu_inv]
    names = np.array([tracks.name_iid(t) for t in c.names], np.int64)[c.name[rows]]
    for combo_sn in np.unique((seq << 20) | names).tolist():
        tracks.intern(tracks.by_seq[(combo_sn >> 20) - 1], {combo_sn & 0xFFFFF}, set(), set())
    m = Markers.empty(len(rows))
    return replace(m, t=c.ts[rows] + c.dur[rows], kind=np.full(len(rows), INSTANT, np.uint8),
                   seq=seq, name=names, flow=flows[rows])  # fmt: skip


def counter_markers(points: list[tuple[int, int, int]]) -> Markers:
    """Counter values: (time, sequence, value) each."""
    if not points:
        return Markers.empty()
    t, seq, value = (np.array(x, np.int64) for x in zip(*points, strict=True))
    m = Markers.empty(len(points))
    return replace(m, t=t, kind=np.full(len(points), COUNTER, np.uint8), seq=seq, value=value)
