"""GET /api/v1/events: filter (AIP-160), page_size, page_token, order_by, fields, format
(json, or csv: backend.csv_export)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend import csv_export, request_db
from backend.errors import BadRequest
from backend.handlers.listing import Sorting, every_row, list_query
from backend.paging import OrderBy
from backend.repo.events import EVENT_FIELDS, ORDERABLE, TIEBREAK, query_events

__all__ = ["list_events", "rfc3339_ns"]

_SORTING = Sorting(ORDERABLE, TIEBREAK, default="timestamp")

# an event's fields, in the order of its JSON and of its CSV columns
_TOP = (
    "timestamp",
    "machine_id",
    "monitor_id",
    "pid",
    "tid",
    "cpu",
    "comm",
    "event_type",
    "duration_ns",
    "ret",
    "flags",
    "incomplete",
    "event_data",
    "python_stack",
)


def rfc3339_ns(ns: int) -> str:
    """2026-11-24T10:00:00.123456789Z: nanoseconds kept, which datetime cannot hold."""
    secs, frac = divmod(ns, 1_000_000_000)
    return f"{_second(secs)}.{frac:09d}Z"


@functools.lru_cache(maxsize=1024)  # events come in time order: many share their second
def _second(secs: int) -> str:
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _event(row: dict[str, Any], load: Callable[[str], Any] = json.loads) -> dict[str, Any]:
    """An event's JSON; load: what becomes of event_data or python_stack given as text."""
    data, stack = row["event_data"], row.get("python_stack")
    return {
        "timestamp": rfc3339_ns(row["ts"]),
        "machine_id": row["machine_id"],
        "monitor_id": str(row["monitor_id"]),
        "pid": row["pid"],
        "tid": row["tid"],
        "cpu": row["cpu"],
        "comm": row["comm"],
        "event_type": row["event_type"],
        "duration_ns": row["duration_ns"],
        "ret": row["ret"],
        "flags": row["flags"],
        "incomplete": bool(row["flags"] & 1),
        "event_data": load(data) if isinstance(data, str) else data,
        **({"python_stack": load(stack) if isinstance(stack, str) else stack} if stack else {}),
    }


MAX_FIELDS = 32  # paths in one `fields`
MAX_FIELD_DEPTH = 4  # parts of one path: event_data holds flat arguments (a dim3: 2 levels)


def _paths(fields: str | None) -> list[str]:
    """The requested fields (dotted paths into event_data), checked; every field when none.
    Paths are bounded in number and depth."""
    if not fields:
        return list(_TOP)
    paths = list(dict.fromkeys(f.strip() for f in fields.split(",") if f.strip()))
    if len(paths) > MAX_FIELDS:
        raise BadRequest("fields", f"names {len(paths)} paths; at most {MAX_FIELDS}")
    for p in paths:
        parts = p.split(".")
        if len(parts) > MAX_FIELD_DEPTH:
            raise BadRequest(
                "fields", f"'{p[:64]}…' is {len(parts)} levels deep; at most {MAX_FIELD_DEPTH}"
            )
        if parts[0] not in _TOP or (parts[0] != "event_data" and len(parts) > 1):
            raise BadRequest("fields", f"unknown field '{p}'; known: {', '.join(sorted(_TOP))}")
    return paths


def _projector(fields: str | None) -> Any:
    """A function keeping only the requested fields; a path an event lacks adds nothing to
    it, so the answer is never larger than the events themselves."""
    if not fields:
        return lambda e: e
    split = [p.split(".") for p in _paths(fields)]

    def project(e: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for parts in split:
            src: Any = e
            for part in parts:
                if not isinstance(src, dict) or part not in src:
                    break
                src = src[part]
            else:
                dst = out
                for part in parts[:-1]:
                    dst = dst.setdefault(part, {})
                dst[parts[-1]] = src
        return out

    return project


def _sort_key(order: OrderBy) -> Any:
    return lambda r: tuple(r[col] for col, _ in order)


async def list_events(request: web.Request) -> web.StreamResponse:
    """Stored events matching a filter, a page at a time; or all of them as CSV, a column
    per field asked for."""
    as_csv = csv_export.wanted(request)
    q = list_query(request, EVENT_FIELDS, _SORTING)
    if as_csv:
        columns = _paths(request.query.get("fields"))
        # event_data as its text, unless a column is a path into it
        text = all("." not in c for c in columns)

        async def fetch(conn: Any, after: tuple[object, ...] | None, limit: int) -> list[Any]:
            return await query_events(
                conn, q.where, q.params, q.order, after, limit, json_text=text
            )

        view = functools.partial(_event, load=csv_export.JsonText) if text else _event
        batches = every_row(request, q, fetch, view, _sort_key(q.order))
        return await csv_export.respond(request, "events", columns, batches)
    project = _projector(request.query.get("fields"))
    async with request_db.connection(request) as conn:
        rows = await query_events(conn, q.where, q.params, q.order, q.after, q.size + 1)
    rows, token = q.page(rows, _sort_key(q.order))
    return web.json_response(
        {"events": [project(_event(r)) for r in rows], "next_page_token": token}
    )
