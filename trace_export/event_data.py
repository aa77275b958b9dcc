"""The arguments in each stored event's ``event_data``, as columns (for from_rows).

``event_data`` comes from the database as JSON text (``{"func":139887353538176,
"grid":[8,1,1],...}``); trace_export._rows reads the unsigned integers straight into the
columns, in C. Rows it does not read (anything but unsigned integers, arrays of them and
strings without escapes), and rows of types with text arguments (ACL's op_type), are parsed
with json.loads and read here, as are chunks given as dicts: every row reads the same
either way. A value that is not an unsigned 64-bit integer reads as 0.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from trace_export._rows import json_uints

__all__ = ["DIM3", "JsonSpans", "fill"]

DIM3 = ("grid", "block")  # JSON arrays of three: columns <name>_x, _y, _z
PY_STACK = "py_stack"  # every call's Python stack id, where the monitor type records one


class JsonSpans:
    """The event_data texts of rows read by trace_export._rows.copy_rows: spans (offset,
    length) of one buffer."""

    def __init__(self, data: bytes, spans: np.ndarray) -> None:
        self.data, self.spans = data, spans

    def __len__(self) -> int:
        return len(self.spans) // 2

    def text(self, i: int) -> str:
        at, n = int(self.spans[2 * i]), int(self.spans[2 * i + 1])
        return self.data[at : at + n].decode()


def fill(raw: Sequence[Any] | JsonSpans, name: np.ndarray,
         columns_of: Sequence[tuple[str, ...]], args: dict[str, np.ndarray],
         texts: dict[str, list[str]]) -> None:  # fmt: skip
    """Fills args (uint64 columns) and texts (lists of str) from each row's event_data (raw:
    JSON text or dicts); row i is an event of type name[i], whose columns are
    columns_of[name[i]] (py_stack: of every type, when args has it)."""
    if not len(raw):
        return
    # dicts: every row falls back
    fell = _fill_from_json(raw if isinstance(raw, JsonSpans) else list(raw), name, columns_of,
                           args)  # fmt: skip
    textual = np.array([any(a in texts for a in cols) for cols in columns_of], bool)
    todo = np.flatnonzero(fell | textual[name])
    if not len(todo):
        return
    item = raw.text if isinstance(raw, JsonSpans) else raw.__getitem__
    datas = [json.loads(d) if isinstance(d, str) else d for d in map(item, todo.tolist())]
    _fill_from_dicts(datas, todo, name[todo], fell[todo], columns_of, args, texts)


def _json_key(column: str) -> str:
    return column[:-2] if column[:-2] in DIM3 else column


def _fill_from_json(raw: list[str] | JsonSpans, name: np.ndarray,
                    columns_of: Sequence[tuple[str, ...]],
                    args: dict[str, np.ndarray]) -> np.ndarray:  # fmt: skip
    """Reads what trace_export._rows can; returns which rows it could not (bool)."""
    keys = list(dict.fromkeys(_json_key(a) for a in args))
    out: list[np.ndarray] = []
    first, dims = [], []
    for k in keys:
        first.append(len(out))
        dims.append(3 if k in DIM3 else 1)
        out += [args[f"{k}_{axis}"] for axis in "xyz"] if k in DIM3 else [args[k]]
    allowed = np.zeros((len(columns_of), len(keys)), np.uint8)
    for t, cols in enumerate(columns_of):
        mine = {_json_key(a) for a in cols}
        allowed[t] = [k in mine or k == PY_STACK for k in keys]
    fell = np.zeros(len(raw), np.uint8)
    texts = (raw.data, raw.spans) if isinstance(raw, JsonSpans) else raw
    json_uints(
        texts,
        tuple(keys),
        np.array(dims, np.uint8),
        np.array(first, np.int32),
        np.ascontiguousarray(name, np.int32),
        allowed,
        tuple(out),
        fell,
    )
    return fell.astype(bool)


def _fill_from_dicts(datas: list[Any], rows: np.ndarray, name: np.ndarray, fell: np.ndarray,
                     columns_of: Sequence[tuple[str, ...]], args: dict[str, np.ndarray],
                     texts: dict[str, list[str]]) -> None:  # fmt: skip
    """Reads datas, the parsed event_data of rows (of types name), into texts, and into args
    where the C reader could not (fell)."""
    for code in np.unique(name).tolist():
        at = np.flatnonzero(name == code)
        cols = columns_of[code]
        for a in (a for a in cols if a in texts):
            _fill_text(texts[a], [datas[i] for i in at.tolist()], rows[at], a)
        at = at[fell[at]]
        _fill_args(args, [datas[i] for i in at.tolist()], rows[at],
                   tuple(a for a in cols if a in args))  # fmt: skip
    if PY_STACK in args:
        for i in np.flatnonzero(fell).tolist():
            v = datas[i].get(PY_STACK, 0) if isinstance(datas[i], dict) else 0
            args[PY_STACK][rows[i]] = v if isinstance(v, int) and 0 <= v < 1 << 64 else 0


def _fill_text(out: list[str], datas: list[Any], rows: np.ndarray, key: str) -> None:
    """Sets out at rows to each event_data's text argument key ("" when it has none)."""
    for i, d in zip(rows.tolist(), datas, strict=True):
        v = d.get(key, "") if isinstance(d, dict) else ""
        out[i] = v if isinstance(v, str) else ""


def _fill_args(args: dict[str, np.ndarray], datas: list[Any], rows: np.ndarray,
               columns: tuple[str, ...]) -> None:  # fmt: skip
    """Fills args at rows from the event_data of events of one type (columns: its args).

    Events of one type have the same keys, so one itemgetter call per row reads them all;
    anything unexpected (a missing key, a value that is not a uint64) falls back to reading
    value by value, where such a value reads as 0.
    """
    keys = list(dict.fromkeys(_json_key(c) for c in columns))
    if not keys:
        return
    try:
        get = operator.itemgetter(*keys)
        table = [get(d) for d in datas]
        if len(keys) == 1:
            table = [(v,) for v in table]
        for at, k in enumerate(keys):
            if k in DIM3:
                dims = np.array([t[at] for t in table], dtype=np.uint64).reshape(len(datas), 3)
                for axis, c in enumerate("xyz"):
                    args[f"{k}_{c}"][rows] = dims[:, axis]
            else:
                args[k][rows] = np.array([t[at] for t in table], dtype=np.uint64)
    except (KeyError, TypeError, ValueError, OverflowError):
        for i, data in zip(rows.tolist(), datas, strict=True):
            _fill_row(args, i, data, columns)


def _fill_row(args: dict[str, np.ndarray], i: int, data: Any, columns: tuple[str, ...]) -> None:
    """Row i's values of columns, each a uint64 or 0."""
    for k, v in data.items() if isinstance(data, dict) else ():
        if k in DIM3 and isinstance(v, list) and len(v) == 3:
            for axis, x in zip("xyz", v, strict=True):
                if f"{k}_{axis}" in columns and isinstance(x, int) and 0 <= x < 1 << 64:
                    args[f"{k}_{axis}"][i] = x
        elif k in columns and isinstance(v, int) and 0 <= v < 1 << 64:
            args[k][i] = v
