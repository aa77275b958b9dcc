"""Reads a Chrome trace-event JSON trace back and checks it loads as meant.

Each event must have what its phase needs (``ts`` and ``dur`` as numbers); then, in time
order (the viewers sort by ``ts``), "B"/"E" must balance per (pid, tid) and each flow
("s" → "t"* → "f", matched by (cat, name, id) as trace processor does) must start before
its steps and end. The first thing wrong raises ``TraceInvalid`` naming the event's index.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from tests.trace_tools.validate import TraceInvalid, read_trace

__all__ = ["ChromeInstant", "ChromeSlice", "ChromeSummary", "validate_chrome_json"]

_NEEDS = {
    "X": ("name", "ts", "dur", "pid", "tid"),
    "B": ("name", "ts", "pid", "tid"),
    "E": ("ts", "pid", "tid"),
    "i": ("name", "ts", "pid", "tid"),
    "I": ("name", "ts", "pid", "tid"),
    "s": ("name", "id", "ts", "pid", "tid"),
    "t": ("name", "id", "ts", "pid", "tid"),
    "f": ("name", "id", "ts", "pid", "tid"),
    "C": ("name", "ts", "pid", "args"),
    "M": ("name", "pid", "args"),
    "b": ("name", "id", "ts", "pid"),
    "e": ("id", "ts", "pid"),
    "n": ("name", "id", "ts", "pid"),
}
_NUMBERS = ("ts", "dur", "tts", "tdur")


@dataclass(frozen=True)
class ChromeSlice:
    pid: Any
    tid: Any
    name: str
    ts: float  # in the file's unit (µs)
    dur: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChromeInstant:
    pid: Any
    tid: Any
    name: str
    ts: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChromeSummary:
    slices: list[ChromeSlice]  # "X" events and matched "B"/"E" pairs, by (ts, pid, tid)
    instants: list[ChromeInstant]
    flows: dict[tuple[str, str, str], list[tuple[Any, Any, float]]]  # -> (pid, tid, ts)
    counters: dict[tuple[Any, str], list[tuple[float, dict[str, float]]]]  # (pid, name)
    process_names: dict[Any, str]
    thread_names: dict[tuple[Any, Any], str]
    event_count: int
    display_time_unit: str | None


def validate_chrome_json(src: str | os.PathLike[str] | bytes) -> ChromeSummary:
    """Check a Chrome JSON trace (a path or its bytes, maybe gzipped); raise TraceInvalid."""
    try:
        doc = json.loads(read_trace(src))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TraceInvalid(f"not JSON: {e}") from e
    unit = None
    if isinstance(doc, dict):
        unit = doc.get("displayTimeUnit")
        if unit not in (None, "ms", "ns"):
            raise TraceInvalid(f"displayTimeUnit {unit!r} is neither 'ms' nor 'ns'")
        doc = doc.get("traceEvents")
    if not isinstance(doc, list):
        raise TraceInvalid("no traceEvents array")
    summary = ChromeSummary([], [], {}, {}, {}, {}, len(doc), unit)
    for i, ev in enumerate(doc):
        _check_event(i, ev)
    order = sorted(range(len(doc)), key=lambda i: doc[i].get("ts", 0))
    _Replay(summary).run(doc, order)
    return summary


def _check_event(i: int, ev: Any) -> None:
    if not isinstance(ev, dict):
        raise TraceInvalid(f"event {i}: not an object")
    ph = ev.get("ph")
    if ph not in _NEEDS:
        raise TraceInvalid(f"event {i}: unknown phase {ph!r}")
    missing = [k for k in _NEEDS[ph] if k not in ev]
    if missing:
        raise TraceInvalid(f"event {i} (ph {ph!r}): missing {', '.join(missing)}")
    for k in _NUMBERS:
        v = ev.get(k)
        if k in ev and (isinstance(v, bool) or not isinstance(v, int | float)
                        or not math.isfinite(v)):  # fmt: skip
            raise TraceInvalid(f"event {i} (ph {ph!r}): {k} {v!r} is not a number")
    if ev.get("dur", 0) < 0:
        raise TraceInvalid(f"event {i} (ph {ph!r}): negative dur {ev['dur']}")
    if "args" in ev and not isinstance(ev["args"], dict):
        raise TraceInvalid(f"event {i} (ph {ph!r}): args is not an object")
    if ph == "C" and not all(isinstance(v, int | float) and not isinstance(v, bool)
                             for v in ev["args"].values()):  # fmt: skip
        raise TraceInvalid(f"event {i} (ph 'C'): counter values must be numbers")
    if ph in "iI" and ev.get("s", "t") not in ("g", "p", "t"):
        raise TraceInvalid(f"event {i} (ph {ph!r}): scope {ev['s']!r} is not g, p or t")


class _Replay:
    """Replays the checked events in time order into the summary."""

    def __init__(self, summary: ChromeSummary) -> None:
        self.s = summary
        self.stacks: dict[tuple[Any, Any], list[tuple[int, dict[str, Any]]]] = {}
        self.open_flows: dict[tuple[str, str, str], int] = {}  # -> index of its last step

    def run(self, events: list[dict[str, Any]], order: list[int]) -> None:
        for i in order:
            self.event(i, events[i])
        for (pid, tid), stack in self.stacks.items():
            if stack:
                j, b = stack[-1]
                raise TraceInvalid(f"event {j} (ph 'B'): {b['name']!r} on pid {pid} tid {tid} "
                                   "never ends")  # fmt: skip
        for key, j in self.open_flows.items():
            raise TraceInvalid(f"flow {key} never terminates (last step: event {j})")
        self.s.slices.sort(key=lambda x: (x.ts, str(x.pid), str(x.tid)))

    def event(self, i: int, ev: dict[str, Any]) -> None:
        ph, args = ev["ph"], ev.get("args", {})
        s = self.s
        if ph == "X":
            s.slices.append(ChromeSlice(ev["pid"], ev["tid"], ev["name"], ev["ts"], ev["dur"],
                                        args))  # fmt: skip
        elif ph == "B":
            self.stacks.setdefault((ev["pid"], ev["tid"]), []).append((i, ev))
        elif ph == "E":
            stack = self.stacks.get((ev["pid"], ev["tid"]))
            if not stack:
                raise TraceInvalid(f"event {i} (ph 'E'): no open 'B' on pid {ev['pid']} "
                                   f"tid {ev['tid']}")  # fmt: skip
            _, b = stack.pop()
            both = {**b.get("args", {}), **args}
            s.slices.append(ChromeSlice(b["pid"], b["tid"], b["name"], b["ts"],
                                        ev["ts"] - b["ts"], both))  # fmt: skip
        elif ph in "iI":
            s.instants.append(ChromeInstant(ev["pid"], ev.get("tid"), ev["name"], ev["ts"], args))
        elif ph in "stf":
            self.flow(i, ev)
        elif ph == "C":
            s.counters.setdefault((ev["pid"], ev["name"]), []).append((ev["ts"], args))
        elif ph == "M":
            if ev["name"] == "process_name":
                s.process_names[ev["pid"]] = str(args.get("name", ""))
            elif ev["name"] == "thread_name":
                s.thread_names[(ev["pid"], ev.get("tid"))] = str(args.get("name", ""))

    def flow(self, i: int, ev: dict[str, Any]) -> None:
        key = (str(ev.get("cat", "")), str(ev["name"]), str(ev["id"]))
        if ev["ph"] != "s" and key not in self.open_flows:
            raise TraceInvalid(f"event {i} (ph {ev['ph']!r}): flow {key} was never started")
        self.s.flows.setdefault(key, []).append((ev["pid"], ev["tid"], ev["ts"]))
        if ev["ph"] == "f":
            del self.open_flows[key]
        else:
            self.open_flows[key] = i
