"""Python frames as slices above the calls they made (Python attribution).

Each call that carries a Python stack (``args["py_stack"]``, resolved by a ``StackFrames``
function to frame labels, outermost first) is drawn inside the slices of its frames, on its
thread's track: a frame opens at the first call made under it and closes at the end of the
last one, so consecutive calls from the same frame share its slice, as in a flame chart over
time. Frames are told apart by their label (function and file), so calls made from one
function in a row share its slice: call-site attribution and sampling cannot see where one
Python call ended and the next began.

Other monitors on the same thread (a syscall, a CUDA call without stacks) share its track,
so frames and their calls nest: a call without a stack that begins while frames are open is
drawn inside them, and they last until it ends; a frame never outlasts the call it began in;
and a frame ends before any later marker of its thread is written (``PythonFrames.settle``),
since a sequence's clock cannot go back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from trace_export.events import EventChunk
from trace_export.markers import BEGIN, END, Markers
from trace_export.tracks import Sequence as TrackSequence
from trace_export.tracks import Tracks
from xpucore import abi

__all__ = ["CALL", "FrameTracker", "PythonFrames", "StackFrames", "frame_label"]

#: Stack ids -> each stack's frames as labels, outermost first (ids it does not know: none).
StackFrames = Callable[[Sequence[int]], Mapping[int, Sequence[str]]]
CALL = "call"  # the PYTHON monitor's exact calls (xpucore/include/python.h PYTHON_FN_call)

_BEFORE_CALLS = -(1 << 62)  # a frame's begin sorts before every call begin at its time


def frame_label(function: str, file: str, line: int | None = None) -> str:
    """A frame's slice name: the function and its file. Not the line: the innermost
    frame's line moves as it runs (every sample would open a new slice), and a caller's
    line would split it between the calls it makes; the events API has the lines."""
    return f"{function} ({os.path.basename(file)})"


_NEVER = 1 << 63  # the limit of a frame that no call encloses


@dataclass
class _Thread:
    labels: list[str] = field(default_factory=list)  # open frames, outermost first
    begins: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # the end of the last call made in each
    # for a frame that an exact call's slice draws (no markers of its own): its end
    drawn: list[int | None] = field(default_factory=list)
    # the end of the innermost call (of any monitor) the frame began in: it ends by then
    limits: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)  # ends of the calls open, innermost last

    def enclosing(self, ts: int) -> int:
        """The end of the innermost call still open at ts (_NEVER: none)."""
        while self.calls and self.calls[-1] <= ts:
            self.calls.pop()
        return self.calls[-1] if self.calls else _NEVER

    def first_to_leave(self, ts: int) -> int:
        """The outermost frame whose enclosing call has ended by ts (len: none)."""
        return next((j for j, lim in enumerate(self.limits) if lim <= ts), len(self.limits))


ThreadKey = tuple[str, int, int]  # machine, pid, tid
# (thread, row of the call in its chunk, label, begin, depth): a frame the call entered
Opened = tuple[ThreadKey, int, str, int, int]
# (thread, label, begin, end, depth): a frame left (ended after the last call made in it)
Closed = tuple[ThreadKey, str, int, int, int]


class FrameTracker:
    """Which Python frames each thread is in, call after call: the format-neutral part."""

    def __init__(self, frames_of: StackFrames) -> None:
        self.frames_of = frames_of
        self.known: dict[int, Sequence[str]] = {0: ()}
        self.threads: dict[ThreadKey, _Thread] = {}

    def resolve(self, stack: np.ndarray) -> None:
        """Makes every stack id in stack known (frames_of asked once for the new ones)."""
        missing = [int(s) for s in np.unique(stack) if int(s) not in self.known]
        if missing:
            found = self.frames_of(missing)
            for s in missing:
                self.known[s] = tuple(found.get(s, ()))

    def name_calls(self, c: EventChunk) -> EventChunk:
        """A PYTHON monitor's exact calls (event type "call") named by their function, the
        innermost frame of their stack: the call is that frame's slice, exactly."""
        stack = c.args.get("py_stack")
        if c.monitor_type != "PYTHON" or CALL not in c.names or stack is None:
            return c
        rows = np.flatnonzero(c.name == c.names.index(CALL))
        self.resolve(stack[rows])
        names = list(c.names)
        codes = {n: i for i, n in enumerate(names)}
        name = c.name.copy()
        for i in rows.tolist():
            labels = self.known[int(stack[i])]
            label = labels[-1] if labels else CALL
            name[i] = codes.setdefault(label, len(names))
            if name[i] == len(names):
                names.append(label)
        return replace(c, name=name, names=tuple(names))

    def feed(self, c: EventChunk) -> tuple[list[Opened], list[Closed]]:
        """The frames c's calls enter and leave. A PYTHON exact call is drawn inside the
        frames of its callers only: it is its function's frame itself (name_calls). Calls
        without a stack (another monitor's) are drawn inside the frames open (_inside)."""
        stack = c.args.get("py_stack")
        if stack is None or not stack.any():
            return [], self._inside(c)
        opened: list[Opened] = []
        closed: list[Closed] = []
        self.resolve(stack)
        exact = np.zeros(len(c), bool)
        if c.monitor_type == "PYTHON":  # "call", or renamed by name_calls: no other type
            others = set(abi.function_names("PYTHON").values()) - {CALL}
            exact = ~np.isin(c.name, [i for i, n in enumerate(c.names) if n in others])
        for i, (ts, dur, pid, tid, s) in enumerate(zip(
                c.ts.tolist(), c.dur.tolist(), c.pid.tolist(), c.tid.tolist(), stack.tolist(),
                strict=True)):  # fmt: skip
            key = (c.machines[c.machine[i]], pid, tid)
            th = self.threads.setdefault(key, _Thread())
            around = th.enclosing(ts)
            th.calls.append(ts + dur)
            labels = self.known[s]
            mine = labels[:-1] if exact[i] else labels
            k = 0
            while k < min(len(mine), len(th.labels)) and mine[k] == th.labels[k]:
                k += 1
            # a frame drawn by an exact call that has ended is left, with what it holds;
            # so is a frame whose enclosing call has ended (it cannot outlast that call)
            k = min(
                [
                    k,
                    th.first_to_leave(ts),
                    *(j for j, e in enumerate(th.drawn) if e is not None and e <= ts),
                ]
            )
            closed += self._close(key, th, k)
            for j in range(k, len(mine)):
                opened.append((key, i, mine[j], ts, j))
                self._open(th, mine[j], ts, ts, None, around)
            if exact[i] and labels:  # the call's own frame: its slice, open until its end
                self._open(th, labels[-1], ts, ts + dur, ts + dur, around)
            th.ends[:] = [max(e, ts + dur) for e in th.ends]
        return opened, closed

    @staticmethod
    def _open(th: _Thread, label: str, ts: int, end: int, drawn: int | None,
              limit: int) -> None:  # fmt: skip
        th.labels.append(label)
        th.begins.append(ts)
        th.ends.append(end)
        th.drawn.append(drawn)
        th.limits.append(limit)

    def _inside(self, c: EventChunk) -> list[Closed]:
        """Calls without a stack (a syscall; a CUDA call of a monitor without stacks).
        On a thread with frames open, each is drawn inside them (its begin is written while
        they are open), so they last until it ends; a frame whose enclosing call has ended
        is left first. Calls still open at the chunk's last start are kept as enclosing
        calls of frames to come. One pass of numpy, but over threads with frames open."""
        closed: list[Closed] = []
        if not len(c):
            return closed
        end = c.ts + c.dur
        keys = [(c.machines[c.machine[i]], int(c.pid[i]), int(c.tid[i]))
                for i in np.flatnonzero(end > c.ts[-1]).tolist()]  # fmt: skip
        for key, th in list(self.threads.items()):
            if not th.labels:
                continue
            machine, pid, tid = key
            rows = np.flatnonzero((c.pid == pid) & (c.tid == tid)
                                  & (c.machine == _code(c.machines, machine)))  # fmt: skip
            if not len(rows):
                continue
            ts, ends = c.ts[rows], end[rows]
            k = th.first_to_leave(int(ts[-1]))
            if k < len(th.labels):  # left at the first call past its limit: ends so far
                before = ends[ts < th.limits[k]]
                if len(before):
                    th.ends[:] = [max(e, int(before.max())) for e in th.ends]
                closed += self._close(key, th, k)
            th.ends[:] = [max(e, int(ends.max())) for e in th.ends]
        for i, key in zip(np.flatnonzero(end > c.ts[-1]).tolist(), keys, strict=True):
            th = self.threads.setdefault(key, _Thread())
            th.enclosing(int(c.ts[i]))
            th.calls.append(int(end[i]))
        return closed

    def close_before(self, key: ThreadKey, t: int) -> list[Closed]:
        """The frames of key's thread whose last call ended before t, innermost first: a
        marker at t on the thread (the end of a call that began before them) is about to be
        written, so they end where they are. Inner frames end no later than outer ones."""
        th = self.threads.get(key)
        if th is None:
            return []
        k = next((j for j, e in enumerate(th.ends) if e < t), len(th.ends))
        return self._close(key, th, k)

    def close(self) -> list[Closed]:
        """Every frame still open, ended at the end of its thread's last call."""
        return [f for key, th in self.threads.items() for f in self._close(key, th, 0)]

    @staticmethod
    def _close(key: ThreadKey, th: _Thread, keep: int) -> list[Closed]:
        """The frames above the first keep, innermost first, each ended with the last call
        made in it (not those an exact call's slice draws: that slice is the frame)."""
        out = [
            (key, th.labels[j], th.begins[j], th.ends[j], j)
            for j in range(len(th.labels) - 1, keep - 1, -1)
            if th.drawn[j] is None
        ]
        del th.labels[keep:], th.begins[keep:], th.ends[keep:], th.drawn[keep:]
        del th.limits[keep:]
        return out


class PythonFrames:
    """Frames as Perfetto markers on their threads' sequences."""

    def __init__(self, frames_of: StackFrames) -> None:
        self.tracker = FrameTracker(frames_of)
        self.seqs: dict[ThreadKey, TrackSequence] = {}

    def markers(self, c: EventChunk, tracks: Tracks) -> Markers:
        """Begins and ends of the frames c's calls enter and leave."""
        opened, closed = self.tracker.feed(c)
        out = []
        for key, row, label, ts, depth in opened:
            seq = self.seqs.get(key)
            if seq is None:
                seq = self.seqs[key] = tracks.thread(*key, c.comms[c.comm[row]], int(c.ts[0]))
            iid = tracks.name_iid(label)
            tracks.intern(seq, {iid}, set(), set())
            out.append((ts, BEGIN, seq.seq, iid, _BEFORE_CALLS + depth))
        return _markers(out + self._ends(closed))  # (their seqs exist now: opened first)

    def settle(self, m: Markers, horizon: int | None) -> Markers:
        """Ends of the frames that markers about to be written (m's before horizon) pass on
        their thread: a frame's end is known only at the next call with a stack, and a
        sequence's clock cannot go back, so a frame ends before anything later on its
        thread is written (another monitor's call that began before the frame did)."""
        closed: list[Closed] = []
        for key, seq in self.seqs.items():
            mine = m.seq == seq.seq
            if horizon is not None:
                mine &= m.t < horizon
            if mine.any():
                closed += self.tracker.close_before(key, int(m.t[mine].max()))
        return _markers(self._ends(closed))

    def close(self) -> Markers:
        return _markers(self._ends(self.tracker.close()))

    def _ends(self, closed: list[Closed]) -> list[tuple[int, int, int, int, int]]:
        """Ends after the calls in them, inner before outer at one time: an end's tie is
        minus its begin, plus its distance from the bottom (never minus its own time, which
        would mark an end of no duration)."""
        return [
            (end, END, self.seqs[key].seq, 0, -begin + 64 - depth)
            for key, _, begin, end, depth in closed
        ]


def _code(table: tuple[str, ...], value: str) -> int:
    return table.index(value) if value in table else -1


def _markers(rows: list[tuple[int, int, int, int, int]]) -> Markers:
    if not rows:
        return Markers.empty()
    t, kind, seq, name, tie = (np.array(x, np.int64) for x in zip(*rows, strict=True))
    return replace(
        Markers.empty(len(rows)), t=t, kind=kind.astype(np.uint8), seq=seq, name=name, tie=tie
    )
