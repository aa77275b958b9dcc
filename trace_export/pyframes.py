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
from dataclasses import dataclass, field

import numpy as np

from trace_export.events import EventChunk
from trace_export.markers import BEGIN, END, Markers
from trace_export.tracks import Sequence as TrackSequence
from trace_export.tracks import Tracks

__all__ = ["PythonFrames", "StackFrames", "frame_label"]

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
    seq: TrackSequence
    labels: list[str] = field(default_factory=list)  # open frames, outermost first
    begins: list[int] = field(default_factory=list)
    last_end: int = 0


class PythonFrames:
    def __init__(self, frames_of: StackFrames) -> None:
        self.frames_of = frames_of
        self.known: dict[int, Sequence[str]] = {0: ()}
        self.threads: dict[tuple[str, int, int], _Thread] = {}
        self.slices = 0

    def markers(self, c: EventChunk, tracks: Tracks) -> Markers:
        """Begins and ends of the frames c's calls enter and leave."""
        stack = c.args.get("py_stack")
        if stack is None or (not stack.any() and not self.threads):
            return Markers.empty()
        missing = [int(s) for s in np.unique(stack) if int(s) not in self.known]
        if missing:
            found = self.frames_of(missing)
            for s in missing:
                self.known[s] = tuple(found.get(s, ()))
        out: list[tuple[int, int, int, int, int]] = []  # (t, kind, seq, name, tie)
        t0 = int(c.ts[0])
        for i, (ts, dur, pid, tid, s) in enumerate(zip(
                c.ts.tolist(), c.dur.tolist(), c.pid.tolist(), c.tid.tolist(), stack.tolist(),
                strict=True)):  # fmt: skip
            machine = c.machines[c.machine[i]]
            th = self.threads.get((machine, pid, tid))
            labels = self.known[s]
            if th is None:
                if not labels:
                    continue
                seq = tracks.thread(machine, pid, tid, c.comms[c.comm[i]], t0)
                th = self.threads[(machine, pid, tid)] = _Thread(seq)
            k = 0
            while k < min(len(labels), len(th.labels)) and labels[k] == th.labels[k]:
                k += 1
            out += self._close(th, k)
            for j in range(k, len(labels)):
                iid = tracks.name_iid(labels[j])
                tracks.intern(th.seq, {iid}, set(), set())
                out.append((ts, BEGIN, th.seq.seq, iid, _BEFORE_CALLS + j))
                th.labels.append(labels[j])
                th.begins.append(ts)
                self.slices += 1
            th.last_end = max(th.last_end, ts + dur)
        return _markers(out)

    def close(self) -> Markers:
        """The ends of every frame still open (at the end of its thread's last call)."""
        out = [m for th in self.threads.values() for m in self._close(th, 0)]
        return _markers(out)

    @staticmethod
    def _close(th: _Thread, keep: int) -> list[tuple[int, int, int, int, int]]:
        """Ends the frames above the first keep, innermost first, after the calls in them
        (an end's tie is minus its begin, plus its distance from the bottom)."""
        out = [(th.last_end, END, th.seq.seq, 0, -th.begins[j] + 64 - j)
               for j in range(len(th.labels) - 1, keep - 1, -1)]
        del th.labels[keep:], th.begins[keep:]
        return out


def _markers(rows: list[tuple[int, int, int, int, int]]) -> Markers:
    if not rows:
        return Markers.empty()
    t, kind, seq, name, tie = (np.array(x, np.int64) for x in zip(*rows, strict=True))
    m = Markers.empty(len(rows))
    return Markers(t, kind.astype(np.uint8), seq, name, m.flow, m.value, tie, m.ref)
