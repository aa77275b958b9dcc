"""CSV export of a list endpoint (issue #15 section 5): the format asked for, and the
streamed answer.

A list answers CSV when asked with ``?format=csv`` or ``Accept: text/csv`` (``format`` wins:
``format=json`` answers JSON whatever Accept says; another ``format`` is 400 naming it). The
answer holds every row matching the filter, in the order asked for, page_size ignored (a
page_token, when given, is where the export starts): the endpoint hands ``respond`` an async
iterator of row batches, and each batch is written as it comes (chunked), so memory stays
bounded whatever the number of rows.

The body (RFC 4180, ``\\r\\n`` line ends, quoted by the csv module):

- a header row: the JSON's field names (``event_data.x`` style paths where a list lets the
  caller pick fields inside an object);
- one row per item: a string as itself, a number as its JSON text, true/false, null as an
  empty cell, an object or a list as JSON text (compact, or as PostgreSQL stored it: a
  JsonText); timestamps as in the JSON.

Errors before the first byte are the usual error body. An error after it is logged and ends
the body with one last record ``#ERROR,<code>,<status>,<message>`` (the fields of the error
body). A client must look at the last record: the body ends as a complete one does (closing
the connection instead would lose the record in clients that, like aiohttp's, raise on the
truncated body before handing over what they hold). No data row starts with ``#ERROR``: the
first column of every list is an id or a timestamp.

An endpoint adopts it with (batches: an AsyncIterator of lists of its JSON items)::

    if csv_export.wanted(request):
        return await csv_export.respond(request, "device-metrics", COLUMNS, batches)
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from backend.errors import ApiError, BadRequest

__all__ = ["ERROR_MARK", "JsonText", "respond", "wanted"]

log = logging.getLogger(__name__)

ERROR_MARK = "#ERROR"
_FORMATS = ("json", "csv")
_CSV = "text/csv"


def _quality(accept: str, media: str) -> float:
    """The q the Accept header gives media exactly (0 when absent)."""
    best = 0.0
    for part in accept.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name.lower() != media:
            continue
        q = 1.0
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def wanted(request: web.Request) -> bool:
    """Whether the list is to be answered as CSV: format=csv, or no format and an Accept
    header naming text/csv at least as high as application/json."""
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in _FORMATS:
            raise BadRequest("format", f"must be json or csv, got {fmt[:40]!r}")
        return fmt == "csv"
    accept = request.headers.get("Accept", "")
    csv_q = _quality(accept, _CSV)
    return csv_q > 0 and csv_q >= _quality(accept, "application/json")


class JsonText(str):
    """A value already as its JSON text (as PostgreSQL gives a json column): written as it
    is, where a str would be written as a JSON string."""


_PLAIN = frozenset({str, int, float, JsonText})  # written as they are


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return v


def _at(item: Mapping[str, Any], path: list[str]) -> Any:
    v: Any = item
    for part in path:
        if not isinstance(v, dict):
            return None
        v = v.get(part)
    return v


def _row_of(columns: Sequence[str]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A function from an item to its cells (one per column)."""
    if all("." not in c for c in columns):
        names = list(columns)

        def flat(item: Mapping[str, Any]) -> list[Any]:
            get = item.get
            return [v if type(v) in _PLAIN else _cell(v) for v in [get(c) for c in names]]

        return flat
    paths = [c.split(".") for c in columns]

    def nested(item: Mapping[str, Any]) -> list[Any]:
        return [_cell(_at(item, p)) for p in paths]

    return nested


class _Rows:
    """Items to CSV text, a batch at a time."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.row = _row_of(columns)
        self.buf = io.StringIO()
        self.out = csv.writer(self.buf)

    def _take(self) -> bytes:
        text = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return text.encode()

    def header(self, columns: Sequence[str]) -> bytes:
        self.out.writerow(columns)
        return self._take()

    def batch(self, items: Iterable[Mapping[str, Any]]) -> bytes:
        self.out.writerows(map(self.row, items))
        return self._take()

    def error(self, code: int, status: str, message: str) -> bytes:
        self.out.writerow([ERROR_MARK, code, status, message])
        return self._take()


async def respond(
    request: web.Request,
    resource: str,
    columns: Sequence[str],
    batches: AsyncIterator[Iterable[Mapping[str, Any]]],
) -> web.StreamResponse:
    """Streams the items of batches as resource.csv (module doc). The first batch is
    fetched before anything is sent, so an error there is the usual error answer."""
    first = await anext(batches, None)
    rows = _Rows(columns)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8; header=present",
            "Content-Disposition": f'attachment; filename="{resource}.csv"',
        }
    )
    await resp.prepare(request)
    sent = 0
    try:
        await resp.write(rows.header(columns))
        batch = first
        while batch is not None:
            items = batch if isinstance(batch, list) else list(batch)
            await resp.write(rows.batch(items))
            sent += len(items)
            batch = await anext(batches, None)
    except ConnectionError:  # the client went away: nobody to tell
        log.info("%s.csv: the client left after %d rows", resource, sent)
        return resp
    except ApiError as e:
        log.warning("%s.csv: ended after %d rows: %s", resource, sent, e.message)
        await _end(resp, rows.error(e.http_status, e.status, e.message))
        return resp
    except Exception:
        log.exception("%s.csv: failed after %d rows", resource, sent)
        message = f"the export failed after {sent} rows; the backend's log says why"
        await _end(resp, rows.error(500, "INTERNAL", message))
        return resp
    await resp.write_eof()
    return resp


async def _end(resp: web.StreamResponse, last: bytes) -> None:
    """Sends the last record and ends the body."""
    try:
        await resp.write(last)
        await resp.write_eof()
    except ConnectionError:
        pass
