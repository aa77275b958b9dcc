"""Agent batches into ``events`` rows: PostgreSQL's binary COPY stream, built with numpy.

A binary COPY row is a field count and, per column, a 4-byte length and the value. When every
variable-length part of a row has a known length, the row is a fixed-size numpy record with
big-endian fields, and thousands of rows are built with a handful of array assignments. So
the rows of a span (a few thousand consecutive events) are grouped by what makes their length
vary: the function (event type text and argument template), the lengths of comm and machine
id, and the number of decimal digits of each argument in ``event_data``. Each group is one
record array, padded to whole 8-byte words with trailing JSON whitespace; then the span's rows
are gathered into time order, a word at a time (PostgreSQL's indexes, which all end in ts,
take rows in key order much faster than rows grouped by function). No Python code runs per
row, only per group and per run of equal comm.

``event_data`` is the JSON text ``xpucore.abi.event_records`` gives as ``args`` (same keys,
same order, same integers), rendered from a template per argument class derived from
``event_records`` itself (one probe event per class), so the two cannot drift apart. Groups
smaller than ``_MIN_GROUP`` rows are merged into one per layout, with their numbers
right-aligned in a common width: JSON allows the leading spaces, and the number of groups
stays bounded whatever the data.

Pure and database-free: backend.event_writer checks the batches and numbers them,
backend.repo.events sends the stream.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np

from xpucore import abi

__all__ = ["COLUMNS", "ID_SHIFT", "MAX_BATCH_EVENTS", "encode_copy", "has_layout"]

#: Columns of ``events`` written by the COPY, in stream order.
COLUMNS = ("ts", "id", "duration_ns", "ret", "monitor_id", "pid", "tid", "cpu", "flags",
           "machine_id", "comm", "event_type", "event_data")  # fmt: skip
#: events.id = (event_batches.id << ID_SHIFT) | index of the event in its batch
ID_SHIFT = 24
MAX_BATCH_EVENTS = 1 << ID_SHIFT

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, no header extension
_TRAILER = b"\xff\xff"
_MIN_GROUP = 64  # rows; smaller exact-width groups are merged into one padded group
_CHUNK = 8192  # rows built at a time: a few MB, so the many passes over them stay in cache
# Rows grouped and put back in order at a time, each span one piece of the COPY stream:
# small at first, so that PostgreSQL has rows to work on early, then larger.
_SPANS = (4096, 16384, 32768, 65536)
_POW10 = np.array([10**k for k in range(1, 20)], dtype=np.uint64)


def has_layout(monitor_type: int) -> bool:
    """Whether events of this monitor type (abi.MONITOR_TYPES value) can be encoded."""
    return _template(monitor_type) is not None


# --- templates ------------------------------------------------------------------------------

# A template is the JSON text of event_data cut at its values: (literal, source field,
# literal, source field, ..., literal), literals as bytes, numeric fields as event dtype
# names, text fields (ACL's op_type) as _Text. Rows are grouped by their text too, so a
# group's template has its text as a literal (_with_text) and numbers only.


@dataclass(frozen=True)
class _Text:
    field: str


_Template = tuple[bytes | str | _Text, ...]


@cache  # one entry per monitor type
def _template(monitor_type: int) -> dict[int, _Template] | None:
    """{argument class: template} for a monitor type, None when it has no event layout.

    Derived from abi.event_records: one probe event per class, every integer field holding
    its own sentinel value and every text field its own name, then each argument value is
    traced back to its field.
    """
    names = {v: k for k, v in abi.MONITOR_TYPES.items()}
    try:
        probe = abi.empty_events(256, monitor_type)
    except ValueError:
        return None
    dt = probe.dtype
    ints = [n for n in dt.names or () if dt[n].kind in "ui" and n != "func"]
    sentinel = {40_000 + 7 * i: n for i, n in enumerate(ints)}
    for value, n in sentinel.items():
        probe[n] = value
    texts = {f"\x01{n}": n for n in dt.names or () if dt[n].kind == "S" and n != "comm"}
    for marker, n in texts.items():
        probe[n] = marker.encode()
    probe["func"] = np.arange(256) << 8
    raw = abi.encode_batch(
        probe, monitor_id="probe", machine_id="probe", monitor_type=names[monitor_type]
    )
    out: dict[int, _Template] = {}
    for cls, rec in enumerate(abi.event_records(abi.decode_batch(raw))):
        parts: list[bytes | str | _Text] = []
        lit = b"{"
        for i, (key, value) in enumerate(rec["args"].items()):
            lit += (b"," if i else b"") + json.dumps(key).encode() + b":"
            if isinstance(value, str):
                if value not in texts:
                    raise TypeError(f"argument {key} of class {cls}: cannot map {value!r}")
                parts += [lit, _Text(texts[value])]
                lit = b""
                continue
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list):
                lit += b"["
            for j, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, int) or v not in sentinel:
                    raise TypeError(f"argument {key} of class {cls}: cannot map {v!r} to a field")
                if dt[sentinel[v]].kind != "u":
                    raise TypeError(f"argument {key} of class {cls}: signed fields are not done")
                if j:
                    lit += b","
                parts += [lit, sentinel[v]]
                lit = b""
            if isinstance(value, list):
                lit += b"]"
        parts.append(lit + b"}")
        out[cls] = tuple(parts)
    return out


@lru_cache(maxsize=4096)
def _with_text(tmpl: _Template, text: str) -> _Template:
    """The template of rows whose text field holds text: that text as JSON, in a literal."""
    parts: list[bytes | str | _Text] = []
    for part in tmpl:
        if isinstance(part, _Text):
            part = json.dumps(text).encode()
        if isinstance(part, bytes) and parts and isinstance(parts[-1], bytes):
            parts[-1] += part
        else:
            parts.append(part)
    return tuple(parts)


# --- encoding -------------------------------------------------------------------------------


def encode_copy(items: Sequence[tuple[abi.Batch, int]]) -> Iterator[memoryview]:
    """The binary COPY stream (header, rows, trailer) of the events of (batch, batch id) pairs.

    Rows come in time order within each piece (of up to _SPANS[-1] rows, consecutive in the
    order of the batches and their events). The batches must have passed the writer's checks.
    Pure and thread-safe; a generator of pieces, small ones first, so that the database
    starts on the rows while the rest of the stream is built.
    """
    yield memoryview(_HEADER)
    span: list[tuple[abi.Batch, int, int, int]] = []  # (batch, batch id, first, end)
    rows, limit, sizes = 0, _SPANS[0], iter(_SPANS[1:])
    for b, bid in items:
        done = 0
        while done < len(b.events):
            if span and (rows == limit or span[0][0].monitor_type != b.monitor_type):
                yield _Encoder(span).encode()
                span, rows, limit = [], 0, next(sizes, limit)
            take = min(len(b.events) - done, limit - rows)
            span.append((b, bid, done, done + take))
            done += take
            rows += take
    if span:
        yield _Encoder(span).encode()
    yield memoryview(_TRAILER)


class _Encoder:
    """The rows of one span: slices of batches of one monitor type, a few thousand rows.

    The rows are grouped by layout and each group is built as one record array (records
    padded to whole 8-byte words with trailing JSON whitespace); then the rows are gathered
    into time order, word by word: PostgreSQL's indexes take rows in the order of their keys
    much faster (their rightmost-leaf fast path) than rows grouped by function.
    """

    def __init__(self, span: list[tuple[abi.Batch, int, int, int]]) -> None:
        monitor_type = span[0][0].monitor_type
        templates = _template(monitor_type)
        assert templates is not None
        self.templates = templates
        self.type_name = {v: k for k, v in abi.MONITOR_TYPES.items()}[monitor_type]
        counts = np.array([end - first for _, _, first, end in span], dtype=np.int64)
        starts = np.cumsum(counts) - counts
        self.ev = np.concatenate([b.events[first:end] for b, _, first, end in span])
        n = len(self.ev)
        self.arange = np.arange(n, dtype=np.int64)
        self.batch = np.repeat(np.arange(len(span)), counts)  # slice of each row
        first_index = np.array([first for _, _, first, _ in span], dtype=np.int64)
        self.index = self.arange - (starts - first_index)[self.batch]  # index in its batch
        self.id_base = np.array([bid << ID_SHIFT for _, bid, _, _ in span], dtype=np.int64)
        m2r = np.array([b.mono_to_real_ns for b, _, _, _ in span], dtype=np.int64)
        self.ts = self.ev["ts_ns"].astype(np.int64) + m2r[self.batch]  # wall clock
        self.monitor = np.array([uuid.UUID(b.monitor_id).bytes for b, _, _, _ in span], "V16")
        machine = [b.machine_id.encode() for b, _, _, _ in span]
        self.machine = np.array(machine, dtype=f"S{max(map(len, machine))}")
        self.machine_len = np.array([len(m) for m in machine], dtype=np.int64)
        self.comm_code, comm_table = _comm_codes(self.ev["comm"])
        self.comm_len = np.array([len(c) for c in comm_table], dtype=np.int64)
        self.comm_arr = np.array(comm_table, dtype=f"S{max(1, *self.comm_len)}")
        # a text field (ACL's op_type) is part of the layout: its text is in the template
        texts = [n for n in self.ev.dtype.names or () if self.ev.dtype[n].kind == "S"
                 and n != "comm"]  # fmt: skip
        assert len(texts) <= 1, "one text field per event at most"
        self.text_field = texts[0] if texts else None
        if self.text_field:
            self.text_code, self.text_table = _comm_codes(self.ev[self.text_field])
        else:
            self.text_code, self.text_table = np.zeros(n, dtype=np.int64), [b""]
        func = self.ev["func"]
        funcs = np.flatnonzero(np.bincount(func, minlength=1 << 16))
        lut = np.zeros(1 << 16, dtype=np.int64)
        lut[funcs] = np.arange(len(funcs))
        # What fixes a row's layout, apart from the digits of its numbers, as a dense label.
        comm_span, machine_span = int(self.comm_len.max()) + 1, int(self.machine_len.max()) + 1
        key = lut[func] * comm_span + self.comm_len[self.comm_code]
        key = key * machine_span + self.machine_len[self.batch]
        key = key * len(self.text_table) + self.text_code
        self.layout, _ = _dense(key, len(funcs) * comm_span * machine_span * len(self.text_table))

    def encode(self) -> memoryview:
        groups = []
        for rows in _split(self.arange, self.layout):
            r0 = int(rows[0])
            func = int(self.ev["func"][r0])
            text = self.text_table[self.text_code[r0]].decode()
            etype = _event_type(func, self.type_name, text)
            tmpl = _with_text(self.templates[func >> 8], text)
            comm_len = int(self.comm_len[self.comm_code[r0]])
            machine_len = int(self.machine_len[self.batch[r0]])
            for sub, values, widths, padded in self._subgroups(rows, tmpl):
                dt, const = _layout(etype, tmpl, comm_len, machine_len, widths)
                groups.append((sub, values, dt, const, widths, padded))
        # Build every group into one buffer of words, then gather rows back into order.
        word_at = np.empty(len(self.ev), dtype=np.int64)  # first word of each row in src
        words = np.empty(len(self.ev), dtype=np.int64)  # words of each row
        total = sum(len(g[0]) * g[2].itemsize for g in groups) // 8
        src = np.empty(total, dtype=np.uint64)
        at = 0
        for rows, values, dt, const, widths, padded in groups:
            w = dt.itemsize // 8
            block = src[at : at + len(rows) * w].view(dt)
            self._build(block, rows, values, const, widths, padded)
            word_at[rows] = self.arange[: len(rows)] * w + at
            words[rows] = w
            at += len(rows) * w
        # Out in time order: batches of several agents overlap in time, and the indexes,
        # all ending in ts, take rows fastest in the order of their keys.
        order = np.argsort(self.ts, kind="stable")
        words = words[order]
        shift = word_at[order] - (np.cumsum(words) - words)  # source minus destination
        idx = np.repeat(shift, words)
        idx += np.arange(total)
        return memoryview(src[idx].view(np.uint8))

    def _subgroups(
        self, rows: np.ndarray, tmpl: _Template
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray], tuple[int, ...], bool]]:
        """Rows split by the digit counts of their numbers: (rows, numbers, widths, padded)."""
        values = [self.ev[f][rows] for f in tmpl if isinstance(f, str)]
        if not values:
            yield rows, values, (), False
            return
        digits = [_ndigits(v) for v in values]
        label = np.zeros(len(rows), dtype=np.int64)
        domain = 1
        for d in digits:
            present = np.flatnonzero(np.bincount(d, minlength=21))
            if len(present) > 1:
                lut = np.zeros(21, dtype=np.int64)
                lut[present] = np.arange(len(present))
                label = label * len(present) + lut[d]
                domain *= len(present)
                if domain > 1 << 15:
                    label, domain = _dense(label, domain)
        counts = np.bincount(label, minlength=domain)
        small = counts < _MIN_GROUP
        if small.any():  # one group, padded to common widths, for all the small ones
            label = np.where(small[label], domain, label)
        for part in _split(self.arange[: len(rows)], label):
            sub = [v[part] for v in values]
            padded = bool(small.any() and label[part[0]] == domain)
            if padded:
                widths = tuple(int(d[part].max()) for d in digits)
            else:
                widths = tuple(int(d[part[0]]) for d in digits)
            yield rows[part], sub, widths, padded

    def _build(
        self,
        block: np.ndarray,
        rows: np.ndarray,
        values: list[np.ndarray],
        const: np.ndarray,
        widths: tuple[int, ...],
        padded: bool,
    ) -> None:
        """Fills block (records of one layout) with rows, a cache-sized chunk at a time."""
        ev = self.ev
        const_bytes = const.reshape(1).view(np.uint8)
        names = block.dtype.names or ()
        for start in range(0, len(rows), _CHUNK):
            end = start + _CHUNK
            r = rows[start:end]
            rec = block[start:end]
            np.copyto(rec.view(np.uint8).reshape(len(r), -1), const_bytes)
            batch = self.batch[r]
            rec["ts"] = self.ts[r]
            rec["id"] = self.id_base[batch] | self.index[r]
            rec["duration_ns"] = ev["duration_ns"][r]
            rec["ret"] = ev["ret"][r]
            rec["monitor_id"] = self.monitor[batch]
            for name in ("pid", "tid", "cpu", "flags"):
                rec[name] = ev[name][r]
            if "machine_id" in names:
                rec["machine_id"] = self.machine[batch]
            if "comm" in names:
                rec["comm"] = self.comm_arr[self.comm_code[r]]
            for slot, v in enumerate(values):
                rec[f"n{slot}"] = _digit_matrix(v[start:end], widths[slot], padded)


def _dense(label: np.ndarray, domain: int) -> tuple[np.ndarray, int]:
    """label (values in [0, domain)) renumbered 0..k-1 in the same order; and k."""
    if domain > 1 << 22:
        values, inverse = np.unique(label, return_inverse=True)
        return inverse.reshape(-1), len(values)
    present = np.flatnonzero(np.bincount(label, minlength=domain))
    lut = np.zeros(domain, dtype=np.int64)
    lut[present] = np.arange(len(present))
    return lut[label], len(present)


def _split(rows: np.ndarray, label: np.ndarray) -> list[np.ndarray]:
    """rows split by label (dense, small), each part in its original order."""
    if len(rows) and (label == label[0]).all():
        return [rows]
    sortable = label.astype(np.uint16) if label.max() < 1 << 16 else label
    order = np.argsort(sortable, kind="stable")  # a radix sort for 16-bit keys
    return np.split(rows[order], np.flatnonzero(np.diff(label[order])) + 1)


@lru_cache(maxsize=4096)
def _event_type(func: int, monitor_type: str, text: str) -> bytes:
    return abi.event_type(func, monitor_type, {"op_type": text.encode()}).encode()


@lru_cache(maxsize=4096)
def _layout(
    etype: bytes, tmpl: _Template, comm_len: int, machine_len: int, widths: tuple[int, ...]
) -> tuple[np.dtype[np.void], np.ndarray]:
    """The record dtype of one layout, and a record with its constant bytes filled in.

    Records are padded to whole 8-byte words with spaces after the JSON (valid JSON).
    """
    fields: list[tuple[Any, ...]] = [("nfields", ">i2")]
    consts: dict[str, Any] = {"nfields": len(COLUMNS)}

    def column(name: str, fmt: Any, size: int) -> None:
        fields.append((f"len_{name}", ">i4"))
        consts[f"len_{name}"] = size
        if size:
            fields.append((name, fmt))

    for name in ("ts", "id", "duration_ns", "ret"):
        column(name, ">i8", 8)
    column("monitor_id", "V16", 16)
    for name in ("pid", "tid", "cpu", "flags"):
        column(name, ">i4", 4)
    column("machine_id", f"S{machine_len}", machine_len)
    column("comm", f"S{comm_len}", comm_len)
    column("event_type", f"S{len(etype)}", len(etype))
    consts["event_type"] = etype
    fields.append(("len_event_data", ">i4"))
    slot = 0
    for i, part in enumerate(tmpl):
        if isinstance(part, bytes):
            if part:
                fields.append((f"lit{i}", f"S{len(part)}"))
                consts[f"lit{i}"] = part
        else:
            fields.append((f"n{slot}", np.uint8, (widths[slot],)))
            slot += 1
    size = np.dtype(fields).itemsize
    if size % 8:
        fields.append(("pad", f"S{8 - size % 8}"))
        consts["pad"] = b" " * (8 - size % 8)
    json_len = sum(len(p) for p in tmpl if isinstance(p, bytes)) + sum(widths)
    consts["len_event_data"] = json_len + (8 - size % 8) % 8
    dt = np.dtype(fields)
    const = np.zeros((), dtype=dt)
    for name, value in consts.items():
        const[name] = value
    return dt, const


def _ndigits(v: np.ndarray) -> np.ndarray:
    """Decimal digits of each unsigned value (1 for 0)."""
    return np.searchsorted(_POW10, v.astype(np.uint64), side="right") + 1


def _digit_matrix(v: np.ndarray, width: int, padded: bool) -> np.ndarray:
    """(len(v), width) ASCII digits, right-aligned; leading zeros become spaces if padded.

    Works in base 10**8 chunks so that the inner loop divides uint32, not uint64.
    """
    v = v.astype(np.uint64)
    chunks = [(v % 10**8).astype(np.uint32)]
    if width > 8:
        rest = v // 10**8
        chunks.append((rest % 10**8).astype(np.uint32))
        if width > 16:
            chunks.append((rest // 10**8).astype(np.uint32))
    out = np.empty((width, len(v)), dtype=np.uint8)
    for k in range(width):
        c = chunks[k // 8]
        q = c // 10
        out[width - 1 - k] = c - q * 10
        chunks[k // 8] = q
    out += 48
    if padded:
        lead = np.arange(width)[:, None] < (width - _ndigits(v))[None, :]
        out[lead] = 32
    return out.T


def _comm_codes(comm: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """A code per row and the sanitised comm (UTF-8, up to the first NUL) of each code.

    Consecutive rows mostly share a comm: only the first row of each run is looked at.
    """
    n = len(comm)
    raw = np.ascontiguousarray(comm)
    words = raw.view(np.uint64 if comm.itemsize % 8 == 0 else np.uint8).reshape(n, -1)
    starts = np.ones(n, dtype=bool)
    starts[1:] = (words[1:] != words[:-1]).any(axis=1)
    first = np.flatnonzero(starts)
    table: list[bytes] = []
    codes: dict[bytes, int] = {}
    run_code = np.empty(len(first), dtype=np.int64)
    for i, value in enumerate(raw[first].tolist()):
        code = codes.get(value)
        if code is None:
            text = value.split(b"\0", 1)[0].decode("utf-8", "replace").encode()
            code = codes[value] = len(table)
            table.append(text)
        run_code[i] = code
    return run_code[np.cumsum(starts) - 1], table
