"""The query of a list endpoint in a fixed order: filter, page_size, order_by (where the
endpoint lets the caller sort) and page_token, read and checked once (a 400 naming the
parameter); and the page it answers with, with the token of the next one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from backend import request_db
from backend.errors import BadRequest
from backend.filters import FieldSpec, FilterError, compile_filter
from backend.paging import (
    MAX_PAGE_SIZE,
    OrderBy,
    PagingError,
    decode_token,
    encode_token,
    order_signature,
    parse_order_by,
    parse_page_size,
)
from backend.typedefs import SETTINGS

__all__ = ["ListQuery", "Sorting", "every_row", "list_query"]

Row = TypeVar("Row")
Fetch = Callable[[Any, tuple[object, ...] | None, int], Awaitable[list[Row]]]


@dataclass(frozen=True)
class Sorting:
    """What order_by may name (API field: SQL column), the tiebreak that makes the order
    total, and the order when order_by is absent."""

    orderable: Mapping[str, str]
    tiebreak: Sequence[str]
    default: str


@dataclass(frozen=True)
class ListQuery:
    filter: str  # as given: a page token is bound to it
    where: str
    params: list[Any]
    size: int
    after: tuple[object, ...] | None  # the sort key the page token carries
    secret: bytes  # what the next page token is signed with
    signature: str  # the order a page token is bound to
    order: OrderBy = field(default_factory=list)  # with Sorting: the order asked for

    def page(
        self,
        rows: list[Row],
        key: Callable[[Row], Sequence[object]],
    ) -> tuple[list[Row], str]:
        """The page of rows (up to size + 1 fetched, the last only telling that there are
        more) and the token of the next page ('' at the end); key: a row's sort key."""
        if len(rows) <= self.size:
            return rows, ""
        rows = rows[: self.size]
        return rows, encode_token(key(rows[-1]), self.signature, self.filter, self.secret)


def list_query(
    request: web.Request, fields: Mapping[str, FieldSpec], order: str | Sorting
) -> ListQuery:
    """order: the endpoint's one order (the signature its tokens are bound to), or what the
    caller may sort by with order_by."""
    q = request.query
    text, secret = q.get("filter", ""), request.app[SETTINGS].page_token_secret
    try:
        where, params = compile_filter(text, fields)
        size = parse_page_size(q.get("page_size"))
        if isinstance(order, Sorting):
            sort = parse_order_by(
                q.get("order_by"), order.orderable, order.tiebreak, default=order.default
            )
            sig = order_signature(sort)
        else:
            sort, sig = [], order
        after = decode_token(q["page_token"], sig, text, secret) if q.get("page_token") else None
    except (FilterError, PagingError) as e:
        raise BadRequest(e.param, e.problem) from None
    return ListQuery(text, where, params, size, after, secret, sig, sort)


async def every_row(
    request: web.Request,
    q: ListQuery,
    fetch: Fetch[Row],
    view: Callable[[Row], dict[str, Any]],
    key: Callable[[Row], Sequence[object]] = lambda r: r["_key"],  # type: ignore[index]
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every row matching q's filter in q's order (from q's page token, if any; page_size
    ignored), viewed, in batches: for an export (backend.csv_export).

    fetch(conn, after, limit): up to limit rows strictly after the sort key after, as the
    JSON list fetches its page. Each batch is one such page of MAX_PAGE_SIZE rows on a
    connection of its own, taken for that statement only: every statement is a page's,
    bounded by the requests' statement timeout however long the export, and a client slow
    to read holds no connection meanwhile. Pages follow each other by keyset, as a client
    paging through would: rows that are there throughout are each served once."""
    after = q.after
    while True:
        async with request_db.connection(request) as conn:
            rows = await fetch(conn, after, MAX_PAGE_SIZE)
        if rows:
            yield [view(r) for r in rows]
        if len(rows) < MAX_PAGE_SIZE:
            return
        after = tuple(key(rows[-1]))
