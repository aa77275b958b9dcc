"""Reading a CSV export back (backend.csv_export's format) to compare it with the JSON list."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

__all__ = ["as_items", "csv_body", "decoded", "json_items", "stream_records"]


def decoded(cell: str, like: Any) -> Any:
    """The JSON value a cell holds, given the value the JSON list has there (its type): an
    empty cell is null, true/false are booleans, objects and lists are JSON text."""
    if like is None:
        assert cell == "", cell
        return None
    if isinstance(like, bool):
        assert cell in ("true", "false"), cell
        return cell == "true"
    if isinstance(like, dict | list):
        return json.loads(cell)
    if isinstance(like, int):
        return int(cell)
    if isinstance(like, float):
        return float(cell)
    return cell


def as_items(header: list[str], records: list[list[str]], like: list[dict[str, Any]]) -> list[Any]:
    """records as the JSON items they stand for, decoded by the types of like's items."""
    assert len(records) == len(like), (len(records), len(like))
    return [
        {c: decoded(v, item.get(c)) for c, v in zip(header, r, strict=True)}
        for r, item in zip(records, like, strict=True)
    ]


async def csv_body(
    client: TestClient, path: str, headers: dict[str, str], **params: str
) -> tuple[ClientResponse, list[str], list[list[str]]]:
    """GET path?format=csv: the response, the header row and the records."""
    r = await client.get(path, params={**params, "format": "csv"}, headers=headers)
    assert r.status == 200, await r.text()
    records = list(csv.reader(io.StringIO((await r.read()).decode(), newline="")))
    return r, records[0], records[1:]


async def json_items(
    client: TestClient, path: str, key: str, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    """Every item of the JSON list, page after page."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        r = await client.get(
            path, params={**params, "page_size": "1000", "page_token": token}, headers=headers
        )
        assert r.status == 200, await r.text()
        body = await r.json()
        items += body[key]
        token = body["next_page_token"]
        if not token:
            return items


async def stream_records(r: ClientResponse) -> AsyncIterator[list[list[str]]]:
    """The records of a CSV body as they arrive, a chunk's worth at a time (records hold no
    line breaks in the exports read this way)."""
    tail = b""
    async for chunk in r.content.iter_chunked(1 << 16):
        lines = (tail + chunk).split(b"\r\n")
        tail = lines.pop()
        yield list(csv.reader([line.decode() for line in lines]))
    if tail:
        yield list(csv.reader([tail.decode()]))
