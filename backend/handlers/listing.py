"""The query of a list endpoint in a fixed order: filter, page_size and page_token, read and
checked once (a 400 naming the parameter)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from backend.errors import BadRequest
from backend.filters import FieldSpec, FilterError, compile_filter
from backend.paging import PagingError, decode_token, parse_page_size
from backend.typedefs import SETTINGS

__all__ = ["ListQuery", "list_query"]


@dataclass(frozen=True)
class ListQuery:
    filter: str  # as given: a page token is bound to it
    where: str
    params: list[Any]
    size: int
    after: tuple[object, ...] | None  # the sort key the page token carries
    secret: bytes  # what the next page token is signed with


def list_query(request: web.Request, fields: Mapping[str, FieldSpec], order: str) -> ListQuery:
    q = request.query
    text, secret = q.get("filter", ""), request.app[SETTINGS].page_token_secret
    try:
        where, params = compile_filter(text, fields)
        size = parse_page_size(q.get("page_size"))
        after = decode_token(q["page_token"], order, text, secret) if q.get("page_token") else None
    except (FilterError, PagingError) as e:
        raise BadRequest(e.param, e.problem) from None
    return ListQuery(text, where, params, size, after, secret)
