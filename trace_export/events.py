"""What the exporters take in: stored events as columns, a chunk at a time.

A trace is written from an iterable of ``EventChunk``s in start-time order (the order of
``ORDER BY ts, id``); chunks are a few tens of thousands of events, so memory stays bounded
whatever the trace size. Strings (event type, comm, machine) are small code arrays into
per-chunk tables. Arguments are ``uint64`` columns named as in ``event_data`` (a dim3 is
three columns, ``grid_x``, ``grid_y``, ``grid_z``), except text arguments (an ACL call's
``op_type``, ``model_path``, ``config_path``: ``TEXT_ARGS``), which are code arrays into
tables of their own, so the numeric columns stay plain arrays; an event has only the
arguments its function takes (``args_of``), the others hold 0 (text: "").

``from_rows`` builds a chunk from rows of the ``events`` table; ``from_batches`` from agent
batches (xpucore.abi), which is what the benchmark and the capture-file path use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np

from trace_export import event_data
from trace_export._rows import copy_rows, str_codes
from xpucore import abi
from xpucore.calls import event_class
from xpucore.probes import PROBES, probe_for

__all__ = ["ROW_COLUMNS", "TEXT_ARGS", "EventChunk", "TextColumn", "args_of", "event_class",
           "from_batches", "from_copy", "from_rows"]  # fmt: skip

#: The ``events`` columns from_rows expects, in order.
ROW_COLUMNS = ("ts", "duration_ns", "pid", "tid", "ret", "flags", "event_type", "comm",
               "machine_id", "event_data")  # fmt: skip
_COLUMNS = ("ts", "dur", "pid", "tid", "ret", "flags", "name", "comm", "machine")
#: Per monitor type, the arguments that are text, not integers (its probe's schema).
TEXT_ARGS: Mapping[str, frozenset[str]] = {t: p.text for t, p in PROBES.items() if p.text}


@dataclass(frozen=True)
class TextColumn:
    """A text argument of each event: codes (int32) into a table of distinct strings."""

    codes: np.ndarray
    table: tuple[str, ...]

    def values(self) -> list[str]:
        """The strings themselves, one per event."""
        return [self.table[i] for i in self.codes.tolist()]

    @staticmethod
    def of(values: Sequence[str]) -> TextColumn:
        return TextColumn(*_codes(values))


def _merge(codes: np.ndarray, table: tuple[str, ...], other_codes: np.ndarray,
           other_table: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:  # fmt: skip
    """codes then other_codes, as codes into one table (table, then what other adds)."""
    index = {s: i for i, s in enumerate(table)}
    extra = [s for s in other_table if s not in index]
    index.update({s: len(table) + i for i, s in enumerate(extra)})
    remap = np.array([index[s] for s in other_table], np.int32)
    return np.concatenate([codes, remap[other_codes]]), table + tuple(extra)


@dataclass(frozen=True)
class EventChunk:
    """Events of one monitor type, ordered by start time, as columns of equal length."""

    monitor_type: str  # "CUDA", "ACL", ...
    ts: np.ndarray  # int64: wall clock ns at the call's start
    dur: np.ndarray  # int64 ns
    pid: np.ndarray  # int32
    tid: np.ndarray  # int32
    ret: np.ndarray  # int64: the return code
    flags: np.ndarray  # uint32: abi.EV_* (EV_INCOMPLETE: the call had not returned)
    name: np.ndarray  # int32 codes into names (the event type, i.e. the function)
    names: tuple[str, ...]
    comm: np.ndarray  # int32 codes into comms
    comms: tuple[str, ...]
    machine: np.ndarray  # int32 codes into machines
    machines: tuple[str, ...]
    args: Mapping[str, np.ndarray] = field(default_factory=dict)  # uint64 columns
    texts: Mapping[str, TextColumn] = field(default_factory=dict)  # text arguments

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, rows: slice | np.ndarray) -> EventChunk:
        """The chunk's rows at rows (code tables shared)."""
        cols = {f: getattr(self, f)[rows] for f in _COLUMNS}
        return replace(self, **cols, args={a: v[rows] for a, v in self.args.items()},
                       texts={a: TextColumn(v.codes[rows], v.table)
                              for a, v in self.texts.items()})  # fmt: skip

    def concat(self, other: EventChunk) -> EventChunk:
        """This chunk's rows, then other's (of the same monitor type), tables merged."""
        if not len(self):
            return other
        if not len(other):
            return self
        merged: dict[str, Any] = {}
        for codes, table in (("name", "names"), ("comm", "comms"), ("machine", "machines")):
            mine = getattr(self, codes), getattr(self, table)
            theirs = getattr(other, codes), getattr(other, table)
            merged[codes], merged[table] = _merge(*mine, *theirs)
        for f in ("ts", "dur", "pid", "tid", "ret", "flags"):
            merged[f] = np.concatenate([getattr(self, f), getattr(other, f)])
        zeros = np.zeros
        names = set(self.args) | set(other.args)
        merged["args"] = {a: np.concatenate([self.args.get(a, zeros(len(self), np.uint64)),
                                             other.args.get(a, zeros(len(other), np.uint64))])
                          for a in sorted(names)}  # fmt: skip
        merged["texts"] = {
            a: TextColumn(*_merge(*_text_or_blank(self.texts.get(a), len(self)),
                                  *_text_or_blank(other.texts.get(a), len(other))))
            for a in sorted(set(self.texts) | set(other.texts))}  # fmt: skip
        return replace(self, **merged)


def _text_or_blank(col: TextColumn | None, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """A text column's codes and table; "" for each of n events when there is none."""
    return (col.codes, col.table) if col is not None else (np.zeros(n, np.int32), ("",))


@cache
def args_of(monitor_type: str, event_type: str) -> tuple[str, ...]:
    """Argument columns an event type has, in call order (dim3s as _x, _y, _z)."""
    if monitor_type not in PROBES:
        return ()
    p = PROBES[monitor_type]
    cls = event_class(monitor_type, event_type)
    if not cls and not p.other_args:
        return ()
    out: list[str] = []
    for a in p.call_args(cls):
        out += [f"{a}_x", f"{a}_y", f"{a}_z"] if a in p.dim3 else [a]
    # py_stack is not shown: it names a Python stack (py_frames), not an argument
    return (*out, *(a for a in p.every_call if a != event_data.PY_STACK))


def _numeric(monitor_type: str, names: Iterable[str]) -> list[str]:
    """The numeric argument columns events of these types have."""
    text = TEXT_ARGS.get(monitor_type, frozenset())
    return sorted({a for t in names for a in args_of(monitor_type, t) if a not in text})


def _text_names(monitor_type: str, names: Iterable[str]) -> list[str]:
    """The text argument columns events of these types have."""
    text = TEXT_ARGS.get(monitor_type, frozenset())
    return sorted({a for t in names for a in args_of(monitor_type, t) if a in text})


def _codes(values: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    table: dict[str, int] = {}
    codes = np.empty(len(values), np.int32)
    str_codes(values, table, codes)
    return codes, tuple(table)


def from_rows(rows: Sequence[Sequence[Any]], monitor_type: str = "CUDA") -> EventChunk:
    """A chunk from ``events`` rows with the columns of ROW_COLUMNS (event_data as a dict
    or JSON text), in start-time order."""

    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [()] * len(ROW_COLUMNS)
    name, names = _codes(cols[6])
    comm, comms = _codes(cols[7])
    machine, machines = _codes(cols[8])
    args, texts = _arguments(cols[9], name, names, monitor_type)
    return EventChunk(
        monitor_type=monitor_type,
        ts=np.array(cols[0], np.int64), dur=np.array(cols[1], np.int64),
        pid=np.array(cols[2], np.int32), tid=np.array(cols[3], np.int32),
        ret=np.array(cols[4], np.int64), flags=np.array(cols[5], np.uint32),
        name=name, names=names, comm=comm, comms=comms, machine=machine, machines=machines,
        args=args, texts=texts,
    )  # fmt: skip


def from_copy(data: bytes, n: int, monitor_type: str = "CUDA") -> EventChunk:
    """A chunk from n rows of ``COPY (SELECT <ROW_COLUMNS> ...) TO STDOUT (FORMAT binary)``,
    header and trailer left out (backend.repo.events.copy_events), in start-time order."""
    ints = tuple(np.empty(n, np.int64) for _ in range(6))
    tables: tuple[dict[str, int], ...] = ({}, {}, {})
    codes = tuple(np.empty(n, np.int32) for _ in range(3))
    spans = np.empty(2 * n, np.int64)
    copy_rows(data, n, ints, tables, codes, spans)
    names, comms, machines = (tuple(t) for t in tables)
    args, texts = _arguments(event_data.JsonSpans(data, spans), codes[0], names, monitor_type)
    return EventChunk(
        monitor_type=monitor_type, ts=ints[0], dur=ints[1], pid=ints[2].astype(np.int32),
        tid=ints[3].astype(np.int32), ret=ints[4], flags=ints[5].astype(np.uint32),
        name=codes[0], names=names, comm=codes[1], comms=comms, machine=codes[2],
        machines=machines, args=args, texts=texts,
    )  # fmt: skip


def _arguments(
    raw: Sequence[Any] | event_data.JsonSpans,
    name: np.ndarray,
    names: tuple[str, ...],
    monitor_type: str,
) -> tuple[dict[str, np.ndarray], dict[str, TextColumn]]:
    """The argument columns of events of these types, from their event_data (raw)."""
    n = len(raw)
    args = {a: np.zeros(n, np.uint64) for a in _numeric(monitor_type, names)}
    if event_data.PY_STACK in probe_for(monitor_type).every_call and n:  # not shown
        args[event_data.PY_STACK] = np.zeros(n, np.uint64)
    texts: dict[str, list[str]] = {a: [""] * n for a in _text_names(monitor_type, names)}
    event_data.fill(raw, name, [args_of(monitor_type, t) for t in names], args, texts)
    return args, {a: TextColumn.of(v) for a, v in texts.items()}


#: Monitor types whose events of one function can be named apart (abi.event_type: ACL's
#: aclnn launches are named aclnn<Op>) by their op_type field.
_NAMED_BY_OP = {"ACL"}


def _names_by_op(ev: np.ndarray, mtype: str) -> tuple[np.ndarray, tuple[str, ...],
                                                      np.ndarray, tuple[str, ...]]:  # fmt: skip
    """(name code, names, op_type code, op_types) of each event: the names as
    abi.event_type gives them, the op_type field decoded (codes into distinct strings)."""
    raw, raw_code = np.unique(ev["op_type"], return_inverse=True)
    raw_code = raw_code.reshape(-1)
    op_code, ops = _codes([bytes(r).split(b"\0", 1)[0].decode("utf-8", "replace")
                           for r in raw.tolist()])  # fmt: skip
    op_code = op_code[raw_code] if len(raw_code) else np.zeros(0, np.int32)
    # one key per (function, op_type): a name for each; _codes joins keys of one name
    key = ev["func"].astype(np.int64) * (len(raw) + 1) + raw_code
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    keyed = [abi.event_type(int(ev["func"][i]), mtype, {"op_type": ev["op_type"][i]})
             for i in first.tolist()]  # fmt: skip
    codes, names = _codes(keyed)
    return codes[inv.reshape(-1)], names, op_code, ops


def from_batches(batches: Iterable[abi.Batch], machine_id: str | None = None) -> EventChunk:
    """A chunk from agent batches (all of one monitor type: CUDA when there are none),
    sorted by start time."""
    blist = list(batches)
    types = {b.monitor_type for b in blist} or {abi.MONITOR_TYPES["CUDA"]}
    if len(types) > 1:
        raise ValueError(f"batches of several monitor types: {sorted(types)}")
    mtype = {v: k for k, v in abi.MONITOR_TYPES.items()}[types.pop()]
    field_of = probe_for(mtype).columns()
    ev = np.concatenate([b.events for b in blist]) if blist else abi.empty_events(0, mtype)
    ts = np.concatenate([b.events["ts_ns"].astype(np.int64) + b.mono_to_real_ns
                         for b in blist]) if blist else np.zeros(0, np.int64)  # fmt: skip
    machines_per = [machine_id or b.machine_id for b in blist]
    machine_raw = np.repeat(np.arange(len(blist)), [len(b.events) for b in blist])
    order = np.argsort(ts, kind="stable")
    ev, ts, machine_raw = ev[order], ts[order], machine_raw[order]
    if mtype in _NAMED_BY_OP:
        name_code, names, op_code, ops = _names_by_op(ev, mtype)
    else:
        funcs, name_code = np.unique(ev["func"], return_inverse=True)
        names = tuple(abi.function_name(int(f), mtype) for f in funcs)
        op_code, ops = np.zeros(len(ev), np.int32), ()
    comm_raw, comm_code = np.unique(ev["comm"], return_inverse=True)
    comms = tuple(c.split(b"\0", 1)[0].decode("utf-8", "replace") for c in comm_raw.tolist())
    machine_tab, machine_code = np.unique(np.array(machines_per, dtype=object)[machine_raw]
                                          if blist else np.zeros(0, object),
                                          return_inverse=True)  # fmt: skip
    name_code = name_code.astype(np.int32).reshape(-1)
    arg_names = _numeric(mtype, names)
    args = {a: ev[field_of[a]].astype(np.uint64) for a in arg_names}
    texts: dict[str, TextColumn] = {}
    table = ops if "" in ops else (*ops, "")
    for a in _text_names(mtype, names):  # every text argument is the event's op_type field
        has = np.array([a in args_of(mtype, t) for t in names], dtype=bool)[name_code]
        codes = np.where(has, op_code, table.index("")).astype(np.int32)
        texts[a] = TextColumn(codes, table)
    if "py_stack" in (ev.dtype.names or ()):  # which Python stack made the call, not shown
        args["py_stack"] = ev["py_stack"].astype(np.uint64)
    # zero what a function does not take (the generic fields hold other things there)
    for code, t in enumerate(names):
        mine = set(args_of(mtype, t))
        rows = name_code == code
        for a in arg_names:
            if a not in mine:
                args[a][rows] = 0
    return EventChunk(
        monitor_type=mtype, ts=ts, dur=ev["duration_ns"].astype(np.int64),
        pid=ev["pid"].astype(np.int32), tid=ev["tid"].astype(np.int32),
        ret=ev["ret"].astype(np.int64), flags=ev["flags"].astype(np.uint32),
        name=name_code, names=names, texts=texts,
        comm=comm_code.astype(np.int32).reshape(-1), comms=comms,
        machine=machine_code.astype(np.int32).reshape(-1),
        machines=tuple(str(m) for m in machine_tab.tolist()), args=args,
    )  # fmt: skip
