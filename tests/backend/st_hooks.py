"""schemathesis hooks for tests/backend/test_openapi_conformance.py (SCHEMATHESIS_HOOKS):
strategies for the document's custom string formats, drawn from the same field tables the
server parses with (backend.openapi_schemas.FORMATS), so what schemathesis sends as valid is
valid in the grammar each format names."""

from __future__ import annotations

import ast
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st

from backend.openapi_schemas import FORMATS

# CPython 3.11 (gh-106905): ast.parse in two threads at once can fail with "SystemError: AST
# constructor recursion depth mismatch". Hypothesis parses lambdas' source to name filtered
# strategies, and --workers 2 draws in two threads: one parse at a time.
_parse, _parsing = ast.parse, threading.Lock()


def _one_parse_at_a_time(*args: Any, **kwargs: Any) -> Any:
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _one_parse_at_a_time  # type: ignore[assignment]

_WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
_TIME = st.sampled_from(['"2026-01-02T03:04:05Z"', '"2026-06-01T00:00:00.123456Z"'])
_VALUES = {
    "int": st.integers(-(2**31), 2**31).map(str),
    "float": st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    "str": _WORD.map(lambda w: f'"{w}"'),
    "bool": st.sampled_from(["true", "false"]),
    "timestamp": _TIME,
    "duration": st.sampled_from(["1s", "250ms", "5m"]),
    "json": st.integers(0, 1000).map(str),
}
_OPS = {"bool": ["=", "!="], "json": ["=", "<", ">"]}


def _restriction(fields: dict[str, str]) -> st.SearchStrategy[str]:
    names = sorted(fields)

    @st.composite
    def draw(d: st.DrawFn) -> str:
        name = d(st.sampled_from(names))
        kind = fields[name]
        if name.endswith(".*"):
            name = f"{name[:-2]}.{d(_WORD.filter(lambda w: not w[0].isdigit()))}"
        op = d(st.sampled_from(_OPS.get(kind, ["=", "!=", "<", ">="])))
        if name in ("status", "monitor_id") and op not in ("=", "!="):
            op = "="
        if name == "monitor_id":
            return f'{name} {op} "{d(st.uuids())}"'
        return f"{name} {op} {d(_VALUES[kind])}"

    return draw()


def _filter(fields: dict[str, str]) -> st.SearchStrategy[str]:
    one = _restriction(fields)
    joined = st.lists(one, min_size=1, max_size=3).flatmap(
        lambda rs: st.sampled_from([" AND ", " OR "]).map(lambda j: j.join(rs))
    )
    return st.one_of(st.just(""), joined, joined.map(lambda f: f"NOT ({f})"))


def _order_by(fields: dict[str, str]) -> st.SearchStrategy[str]:
    item = st.tuples(st.sampled_from(sorted(fields)), st.sampled_from(["", " asc", " desc"]))
    return st.lists(item, min_size=0, max_size=3, unique_by=lambda i: i[0]).map(
        lambda items: ", ".join(f + d for f, d in items)
    )


def _fields(fields: dict[str, str]) -> st.SearchStrategy[str]:
    name = st.sampled_from(sorted(fields)).map(lambda f: "event_data.ptr" if f.endswith("*") else f)
    return st.lists(name, max_size=4).map(",".join)


def _metrics_filter(_: dict[str, str]) -> st.SearchStrategy[str]:
    part = st.one_of(
        _WORD.map(lambda w: f"machine_id = {w}"),
        st.integers(1, 99999).map(lambda p: f"pid = {p}"),
        st.sampled_from(["time_range = 5m", "time_range = 1h"]),
    )
    return st.lists(part, max_size=3, unique_by=lambda p: p.split()[0]).map(" AND ".join)


def _metrics(fields: dict[str, str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True).map(",".join)


# startTime and endTime: an hour apart, ending an hour ago, so that either alone or both
# make a valid range (the other defaults: endTime now, startTime endTime less 1 h)
_NOW = datetime.now(UTC)
_RANGE_ENDS = [(_NOW - timedelta(hours=h)).isoformat() for h in (2, 1)]


def _rfc3339(_: dict[str, str]) -> st.SearchStrategy[str]:
    return st.sampled_from(_RANGE_ENDS[:1])


def _rfc3339_end(_: dict[str, str]) -> st.SearchStrategy[str]:
    return st.sampled_from(_RANGE_ENDS[1:])


_MAKERS = {
    "rfc3339": _rfc3339,
    "rfc3339_end": _rfc3339_end,
    "filter": _filter,
    "order_by": _order_by,
    "fields": _fields,
    "page_token": lambda _: st.just(""),
    "metrics_filter": _metrics_filter,
    "metrics": _metrics,
}

for fmt, (grammar, table) in FORMATS.items():
    schemathesis.openapi.format(fmt, _MAKERS[grammar](table))
