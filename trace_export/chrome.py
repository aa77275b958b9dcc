"""Events to a Chrome trace-event JSON file: the fallback for tools without Perfetto protos.

The same layout as the Perfetto writer: a complete ("X") event per call on its thread with
every argument and the named return code, an instant ("i") per enqueued piece of work on a
row per queue with a flow ("s" → "f") from the call, a copy of each grouped call's slice on
its group's row (an HCCL communicator), and the device memory counter ("C").
Timestamps are microseconds from the first event (small floats keep the nanoseconds; the
first event's wall-clock time is in ``otherData.trace_start_unix_ns``). Rows are written as
they are made, a chunk at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from trace_export.events import EventChunk, args_of
from trace_export.layouts import MemoryHeld, display_args, group_values, layout_for, queue_values
from trace_export.markers import GroupRows
from trace_export.pyframes import Closed, FrameTracker, StackFrames
from trace_export.stats import ExportStats, write_all
from trace_export.tracks import Processes

__all__ = ["write_chrome_json"]

_QUEUE_TID_BASE = 1 << 30  # queue rows get tids above any real one


def write_chrome_json(chunks: Iterable[EventChunk], out: BinaryIO, *,
                      progress: Callable[[int], None] | None = None,
                      stacks: StackFrames | None = None,
                      processes: Processes | None = None) -> ExportStats:  # fmt: skip
    """Writes the events as Chrome JSON; returns what was written. With stacks, calls that
    carry a Python stack are drawn inside slices of its frames, as in the Perfetto trace;
    processes: how some processes are named and labelled (tracks.ProcessInfo)."""
    return write_all(_ChromeWriter(out, stacks, processes), chunks, progress)


class _ChromeWriter:
    def __init__(self, out: BinaryIO, stacks: StackFrames | None,
                 processes: Processes | None) -> None:  # fmt: skip
        self.out = out
        self.shown: Processes = processes or {}
        self.frames = FrameTracker(stacks) if stacks is not None else None
        self.stats = ExportStats()
        self.first = True
        self.named: set[tuple[Any, ...]] = set()
        self.queues: dict[tuple[object, ...], int] = {}  # (pid, queue) -> row tid
        self.groups = GroupRows()  # keyed by row tid
        self.memory = MemoryHeld()
        self.flow = 0
        self.t0: int | None = None
        self._write(b'{"displayTimeUnit":"ns","traceEvents":[\n')

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.stats.bytes += len(data)

    def _emit(self, event: dict[str, Any]) -> None:
        self._write((b"" if self.first else b",\n") + json.dumps(event).encode())
        self.first = False

    def _us(self, ns: int) -> float:
        if self.t0 is None:
            self.t0 = ns
        return (ns - self.t0) / 1000

    def _meta(self, kind: str, pid: int, tid: int | None, name: str) -> None:
        key = (kind, pid, tid)
        if key not in self.named:
            self.named.add(key)
            event: dict[str, Any] = {"ph": "M", "name": kind, "pid": pid, "args": {"name": name}}
            if tid is not None:
                event["tid"] = tid
            self._emit(event)

    def _process(self, machine: str, pid: int, comm: str) -> None:
        """The process's name (and labels: Chrome's process_labels metadata)."""
        info = self.shown.get((machine, pid))
        self._meta("process_name", pid, None, info.name if info else f"{comm} ({machine[:12]})")
        if info and info.labels:
            self._emit({"ph": "M", "name": "process_labels", "pid": pid,
                        "args": {"labels": ", ".join(info.labels)}})  # fmt: skip
        self.named.add(("process_name", pid, None))

    def add(self, c: EventChunk) -> None:
        if self.frames is not None:
            c = self.frames.name_calls(c)
        layout = layout_for(c.monitor_type)
        arg_names = {t: args_of(c.monitor_type, t) for t in c.names}
        cols: dict[str, list[Any]] = {a: v.tolist() for a, v in c.args.items()}
        cols.update((a, v.values()) for a, v in c.texts.items())
        queues = queue_values(layout, c.args)
        queue = queues.tolist() if queues is not None else []
        groups = group_values(layout, c.args)
        group = groups.tolist() if groups is not None else []
        for i, (ts, dur, pid, tid, ret, flags, name, comm, machine) in enumerate(zip(
                c.ts.tolist(), c.dur.tolist(), c.pid.tolist(), c.tid.tolist(), c.ret.tolist(),
                c.flags.tolist(), c.name.tolist(), c.comm.tolist(), c.machine.tolist(),
                strict=True)):  # fmt: skip
            etype, comm_s = c.names[name], c.comms[comm]
            start = self._us(ts)
            if ("process_name", pid, None) not in self.named:
                self._process(c.machines[machine], pid, comm_s)
            self._meta("thread_name", pid, tid, comm_s)
            names = arg_names[etype]
            args = display_args(layout, names, {a: cols[a][i] for a in names})
            args["ret"] = layout.ret_name(etype, ret)
            if flags & 1:
                args["incomplete"] = True
            self._emit(
                {
                    "ph": "X",
                    "name": etype,
                    "cat": c.monitor_type,
                    "pid": pid,
                    "tid": tid,
                    "ts": start,
                    "dur": dur / 1000,
                    "args": args,
                }
            )
            self.stats.slices += 1
            if layout.submits(etype) and queue:
                self._queue(layout.queue_label(queue[i]), pid, tid, queue[i], etype, ts, dur)
            if layout.grouped(etype) and group:
                row = self._row(pid, ("group", group[i]), layout.group_label(group[i]))
                end = self.groups.end(row, ts, ts + dur)
                self._emit({"ph": "X", "name": etype, "cat": c.monitor_type, "pid": pid,
                            "tid": row, "ts": start, "dur": (end - ts) / 1000,
                            "args": args})  # fmt: skip
                self.stats.slices += 1
        if self.frames is not None:
            self._frames(self.frames.feed(c)[1])
        for t, _machine, pid, _comm, device, held in self.memory.update(c, layout):
            self._emit(
                {
                    "ph": "C",
                    "name": layout.memory_track(device),
                    "pid": pid,
                    "ts": self._us(t),
                    "args": {"bytes": held},
                }
            )
            self.stats.counter_points += 1
        self.stats.events += len(c)

    def _queue(self, label: str, pid: int, tid: int, q: int, etype: str, ts: int,
               dur: int) -> None:  # fmt: skip
        row = self._row(pid, ("queue", q), label)
        self.flow += 1
        end = self._us(ts + dur)
        self._emit(
            {
                "ph": "s",
                "id": self.flow,
                "name": "enqueue",
                "cat": "flow",
                "pid": pid,
                "tid": tid,
                "ts": self._us(ts),
            }
        )
        self._emit({"ph": "i", "s": "t", "name": etype, "pid": pid, "tid": row, "ts": end})
        self._emit(
            {
                "ph": "f",
                "bp": "e",
                "id": self.flow,
                "name": "enqueue",
                "cat": "flow",
                "pid": pid,
                "tid": row,
                "ts": end,
            }
        )
        self.stats.flows += 1

    def _row(self, pid: int, ident: tuple[str, int], label: str) -> int:
        """The tid of the process's row for a queue or group, named when new."""
        row = self.queues.setdefault((pid, *ident), _QUEUE_TID_BASE + len(self.queues))
        self._meta("thread_name", pid, row, label)
        return row

    def _frames(self, closed: list[Closed]) -> None:
        """A complete event per Python frame left (written when it ends: viewers sort)."""
        for (_, pid, tid), label, begin, end, _ in closed:
            self._emit(
                {
                    "ph": "X",
                    "name": label,
                    "cat": "python",
                    "pid": pid,
                    "tid": tid,
                    "ts": self._us(begin),
                    "dur": (end - begin) / 1000,
                }
            )
            self.stats.slices += 1

    def finish(self) -> None:
        if self.frames is not None:
            self._frames(self.frames.close())
        other = json.dumps({"trace_start_unix_ns": self.t0 or 0}).encode()
        self._write(b'\n],"otherData":' + other + b"}\n")
