"""Search (issue #15 section 6, seed 000 section 6.2 in the style of seeds/003): GET /search?q=
over machines (hostname), jobs (name, command line, parameters), monitors (display name) and
the caller's traces (name), ranked across kinds (backend.repo.search says how).

Query: q (required, at most 200 characters: backend.search_text says what a query is), kinds
(comma-separated: machine, job, monitor, trace; absent or empty: all), page_size (0 or
absent: 20, at most 100) and page_token. The seed's names are taken too: type (node, job,
all, or one kind; kinds wins over it) and limit (page_size wins over it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from aiohttp import web

from backend import request_db
from backend.errors import BadRequest
from backend.paging import PagingError, decode_token, encode_token, parse_page_size
from backend.repo import search as repo
from backend.search_text import MAX_QUERY_LENGTH, parse_terms, snippet
from backend.typedefs import CALLER, SETTINGS

__all__ = ["BLANK", "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "SEED_TYPES", "search"]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
BLANK = " \t\n\r"  # what a query may not be made of only
SEED_TYPES = {"all": list(repo.KINDS), "node": ["machine"], **{k: [k] for k in repo.KINDS}}
_ORDER_SIGNATURE = "search: score desc, kind, id"


def _query(request: web.Request) -> str:
    q = request.query.get("q")
    if q is None or not q.strip(BLANK):
        raise BadRequest("q", "is required: the words to search for")
    if len(q) > MAX_QUERY_LENGTH:
        raise BadRequest("q", f"longer than {MAX_QUERY_LENGTH} characters")
    if "\x00" in q:
        raise BadRequest("q", "must not contain NUL (U+0000)")
    return q.strip(BLANK)


def _kinds(request: web.Request) -> list[str]:
    """kinds, else the seed's type, else all; both are checked."""
    seed = request.query.get("type")
    if seed is not None and seed not in SEED_TYPES:
        raise BadRequest("type", f"unknown type {seed[:40]!r}; types: {', '.join(SEED_TYPES)}")
    text = request.query.get("kinds")
    if text is None:
        return sorted(SEED_TYPES[seed or "all"])
    names = text.split(",") if text else list(repo.KINDS)
    for name in names:
        if name not in repo.KINDS:
            known = ", ".join(repo.KINDS)
            raise BadRequest("kinds", f"unknown kind {name[:40]!r}; kinds: {known}")
    return sorted(set(names))


def _size(request: web.Request) -> int:
    """page_size, else the seed's limit; both are checked."""
    sizes = {}
    for name in ("limit", "page_size"):
        try:
            sizes[name] = parse_page_size(
                request.query.get(name), default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE
            )
        except PagingError as e:
            raise BadRequest(name, e.problem) from None
    return sizes["page_size"] if "page_size" in request.query else sizes["limit"]


def _url(kind: str, hit: dict[str, Any]) -> str:
    if kind == "machine":
        return f"/api/v1/machines/{hit['id']}"
    if kind == "monitor":
        return f"/api/v1/machines/{hit['machine_id']}/monitors/{hit['id']}"
    if kind == "trace":
        return f"/api/v1/traces/jobs/{hit['id']}"
    return f"/api/v1/jobs/{hit['id']}"


async def search(request: web.Request) -> web.Response:
    """Machines, jobs, monitors and the caller's traces matching q, best first."""
    q, kinds, size = _query(request), _kinds(request), _size(request)
    secret = request.app[SETTINGS].page_token_secret
    bound = json.dumps([q, kinds])  # a page token is for this query and these kinds
    after = None
    if request.query.get("page_token"):
        try:
            after = decode_token(request.query["page_token"], _ORDER_SIGNATURE, bound, secret)
        except PagingError as e:
            raise BadRequest(e.param, e.problem) from None
    terms = parse_terms(q)
    text = q.strip(BLANK + '"') or q  # what a name may hold
    user_id = request[CALLER].user_id
    async with request_db.connection(request) as conn:
        prepared = await repo.prepare(conn, text, terms)
        rows = await repo.search(conn, prepared, kinds, user_id, after, size + 1)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token(rows[-1]["_key"], _ORDER_SIGNATURE, bound, secret)
        ids: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            ids[r["kind"]].append(r["id"])
        fields = {
            kind: await repo.fields_of(conn, kind, kind_ids) for kind, kind_ids in ids.items()
        }
    words = [w for w in prepared.words if w != "or" or None not in terms]
    results = []
    for r in rows:
        where = fields[r["kind"]].get(r["id"]) or [("title", r["title"])]
        field, shown, marks = snippet(where, text, words)
        results.append(
            {
                "kind": r["kind"],
                "id": r["id"],
                "title": r["title"],
                "url": _url(r["kind"], r),
                "machine_id": r["machine_id"],
                "status": r["status"],
                "score": round(r["score"], 4),
                "matched_field": field,
                "snippet": shown,
                "highlights": [list(m) for m in marks],
            }
        )
    return web.json_response({"results": results, "next_page_token": token})
