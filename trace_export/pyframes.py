"""Python frames as slices above the calls they made (Python attribution).

Each call that carries a Python stack (``args["py_stack"]``, resolved by a ``StackFrames``
function to frame labels, outermost first) is drawn inside the slices of its frames, on its
thread's track: a frame opens at the first call made under it and closes at the end of the
last one, so consecutive calls from the same frame share its slice, as in a flame chart over
time. Frames are told apart by their label (function and file), so calls made from one
function in a row share its slice: call-site attribution and sampling cannot see where one
Python call ended and the next began.
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

__all__ = ["FrameTracker", "PythonFrames", "StackFrames", "frame_label"]

#: Stack ids -> each stack's frames as labels, outermost first (ids it does not know: none).
StackFrames = Callable[[Sequence[int]], Mapping[int, Sequence[str]]]

_BEFORE_CALLS = -(1 << 62)  # a frame's begin sorts before every call begin at its time


def frame_label(function: str, file: str, line: int | None = None) -> str:
    """A frame's slice name: the function and its file. Not the line: the innermost
    frame's line moves as it runs (every sample would open a new slice), and a caller's
    line would split it between the calls it makes; the events API has the lines."""
    return f"{function} ({os.path.basename(file)})"


@dataclass
class _Thread:
    labels: list[str] = field(default_factory=list)  # open frames, outermost first
    begins: list[int] = field(default_factory=list)
    last_end: int = 0


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

    def feed(self, c: EventChunk) -> tuple[list[Opened], list[Closed]]:
        stack = c.args.get("py_stack")
        opened: list[Opened] = []
        closed: list[Closed] = []
        if stack is None or (not stack.any() and not self.threads):
            return opened, closed
        missing = [int(s) for s in np.unique(stack) if int(s) not in self.known]
        if missing:
            found = self.frames_of(missing)
            for s in missing:
                self.known[s] = tuple(found.get(s, ()))
        for i, (ts, dur, pid, tid, s) in enumerate(zip(
                c.ts.tolist(), c.dur.tolist(), c.pid.tolist(), c.tid.tolist(), stack.tolist(),
                strict=True)):  # fmt: skip
            key = (c.machines[c.machine[i]], pid, tid)
            th = self.threads.get(key)
            labels = self.known[s]
            if th is None:
                if not labels:
                    continue
                th = self.threads[key] = _Thread()
            k = 0
            while k < min(len(labels), len(th.labels)) and labels[k] == th.labels[k]:
                k += 1
            closed += self._close(key, th, k)
            for j in range(k, len(labels)):
                opened.append((key, i, labels[j], ts, j))
                th.labels.append(labels[j])
                th.begins.append(ts)
            th.last_end = max(th.last_end, ts + dur)
        return opened, closed

    def close(self) -> list[Closed]:
        """Every frame still open, ended at the end of its thread's last call."""
        return [f for key, th in self.threads.items() for f in self._close(key, th, 0)]

    @staticmethod
    def _close(key: ThreadKey, th: _Thread, keep: int) -> list[Closed]:
        """The frames above the first keep, innermost first."""
        out = [(key, th.labels[j], th.begins[j], th.last_end, j)
               for j in range(len(th.labels) - 1, keep - 1, -1)]
        del th.labels[keep:], th.begins[keep:]
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

    def close(self) -> Markers:
        return _markers(self._ends(self.tracker.close()))

    def _ends(self, closed: list[Closed]) -> list[tuple[int, int, int, int, int]]:
        """Ends after the calls in them, inner before outer at one time: an end's tie is
        minus its begin, plus its distance from the bottom (never minus its own time, which
        would mark an end of no duration)."""
        return [(end, END, self.seqs[key].seq, 0, -begin + 64 - depth)
                for key, _, begin, end, depth in closed]


def _markers(rows: list[tuple[int, int, int, int, int]]) -> Markers:
    if not rows:
        return Markers.empty()
    t, kind, seq, name, tie = (np.array(x, np.int64) for x in zip(*rows, strict=True))
    return replace(Markers.empty(len(rows)), t=t, kind=kind.astype(np.uint8), seq=seq,
                   name=name, tie=tie)
