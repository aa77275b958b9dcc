"""Search over machines, jobs, monitors and traces (migration 0021), ranked across kinds.

A query is its terms (backend.search_text.parse_terms): each term is the phrase of its words
(punctuation is a space, as in the indexed text: search_words), terms are all needed unless
OR stands between them. A row matches when its name is the query (any case), or its
search_doc matches, or its name holds the query (trigram index; a query of 1 or 2 characters:
a name starting with it). A kind with at most EXHAUSTIVE matches has them all ranked; one with
more has its CANDIDATES newest matches ranked, and its newest with the exact name besides:
a query that every job matches costs what a rare one does, and a name asked for exactly is
never left out (bench/search.py).

Score: a tier (3 the name exactly, 2 the name starts with the query, 1 the name holds it, 0
another field matches) plus less than one from the text rank (ts_rank, normalised rank /
(rank + 1), the name weighing most) and the name's trigram similarity: a tier is never beaten
by a lower one. The order is score desc, kind, id: total, so pages are keyset pages.

Visibility: a caller sees every machine, job and monitor (as the lists do) and only the
traces they generated (as GET /traces/jobs/{id} does).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.paging import OrderBy, page_clauses

__all__ = [
    "CANDIDATES",
    "EXHAUSTIVE",
    "KINDS",
    "ORDER",
    "Prepared",
    "fields_of",
    "prepare",
    "search",
]

Conn = AsyncConnection[Any]
EXHAUSTIVE = 2000
CANDIDATES = 500
ORDER: OrderBy = [("score", "DESC"), ("kind", "ASC"), ("id", "ASC")]


@dataclass(frozen=True)
class _Kind:
    table: str
    id_type: str  # of its id column, "id"
    title: str  # the name column
    newest: str  # what "newest" orders by
    where: str  # rows anyone may find ('true'), or those of the caller (%(user)s)
    machine: str  # the machine column, or NULL
    status: str  # the status column, or NULL
    # the searched fields as the snippet shows them: (API name, SQL text)
    fields: tuple[tuple[str, str], ...]


KINDS: dict[str, _Kind] = {
    "machine": _Kind(
        "machines",
        "text",
        "hostname",
        "created_at",
        "true",
        "id",
        "agent_manager_status",
        (("hostname", "hostname"), ("id", "id")),
    ),
    "job": _Kind(
        "jobs",
        "uuid",
        "job_name",
        "start_time",
        # each process job and each distributed job once, as GET /jobs lists them
        "group_id IS NULL",
        "machine_id",
        "status",
        (
            ("name", "job_name"),
            ("command_line", "command_line"),
            ("parameters", "search_job_parameters(parameters)"),
        ),
    ),
    "monitor": _Kind(
        "monitors",
        "uuid",
        "display_name",
        "create_time",
        "true",
        "machine_id",
        "status",
        (("display_name", "display_name"), ("monitor_type", "monitor_type")),
    ),
    "trace": _Kind(
        "trace_jobs",
        "uuid",
        "trace_name",
        "create_time",
        "user_id = %s",
        "NULL",
        "status",
        (("trace_name", "trace_name"),),
    ),
}


@dataclass(frozen=True)
class Prepared:
    """A query as PostgreSQL reads it: its tsquery ('' when it has no words), the words to
    show in snippets, the query lower-cased, and the LIKE pattern a name must match."""

    text: str
    tsquery: str
    words: list[str]
    lower: str
    like: str
    prefix: str


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def prepare(conn: Conn, text: str, terms: Sequence[str | None]) -> Prepared:
    """terms: a term's text, or None for OR between the terms either side."""
    cur = await conn.execute(
        "SELECT websearch_to_tsquery('simple', (SELECT string_agg(CASE WHEN t IS NULL THEN "
        "'or' ELSE '\"' || search_words(t) || '\"' END, ' ') FROM unnest(%s::text[]) AS t))"
        "::text, tsvector_to_array(to_tsvector('simple', search_words(%s))), lower(%s)",
        (list(terms), text, text),
    )
    row = await cur.fetchone()
    assert row is not None
    tsquery, words, lower = row
    escaped = _like_escape(text)
    prefix = escaped + "%"
    like = "%" + escaped + "%" if len(text) >= 3 else prefix
    return Prepared(text, tsquery, list(words or []), lower, like, prefix)


async def _ids(conn: Conn, sql: str, args: Sequence[Any], plan: str) -> list[Any]:
    """The ids sql selects, planned as plan says: "bitmap" (the indexes of the match, then the
    rows) or "ordered" (the rows newest first, each checked)."""
    off = ("enable_seqscan", "enable_indexscan") if plan == "bitmap" else ("enable_bitmapscan",)
    async with conn.transaction():
        for name in off:
            await conn.execute("SELECT set_config(%s, 'off', true)", (name,))
        cur = await conn.execute(sql.encode(), args)
        return [row[0] for row in await cur.fetchall()]


async def _candidates(conn: Conn, kind: str, p: Prepared, user_id: uuid.UUID) -> list[Any]:
    """The rows of a kind to rank: every match when there are at most EXHAUSTIVE (found
    through the indexes, whatever the planner guesses), else the CANDIDATES newest matches
    and the CANDIDATES newest with the exact name (the matches are then dense enough that
    walking the rows newest first finds them soon)."""
    k = KINDS[kind]
    where, where_args = k.where, ([user_id] if "%s" in k.where else [])
    match, match_args = f"{k.title} ILIKE %s", [p.like]
    if p.tsquery:
        match, match_args = f"(search_doc @@ %s::tsquery OR {match})", [p.tsquery, *match_args]
    exact = f"lower({k.title}) = %s"
    ids = await _ids(
        conn,
        f"SELECT id FROM {k.table} WHERE {where} AND ({match} OR {exact}) LIMIT %s",
        [*where_args, *match_args, p.lower, EXHAUSTIVE + 1],
        "bitmap",
    )
    if len(ids) <= EXHAUSTIVE:
        return ids
    return await _ids(
        conn,
        f"(SELECT id FROM {k.table} WHERE {where} AND {exact} ORDER BY {k.newest} DESC "
        f"LIMIT %s) UNION (SELECT id FROM {k.table} WHERE {where} AND {match} "
        f"ORDER BY {k.newest} DESC LIMIT %s)",
        [*where_args, p.lower, CANDIDATES, *where_args, *match_args, CANDIDATES],
        "ordered",
    )


def _ranked(kind: str, p: Prepared, ids: list[Any]) -> tuple[str, list[Any]]:
    """The candidates of a kind with their score."""
    k = KINDS[kind]
    rank, rank_args = "0", []
    if p.tsquery:
        rank, rank_args = "ts_rank(search_doc, %s::tsquery, 32)", [p.tsquery]
    sql = f"""
    SELECT %s::text AS kind, id::text AS id, {k.title} AS title,
           {k.machine}::text AS machine_id, {k.status}::text AS status,
           (CASE WHEN lower({k.title}) = %s THEN 3 WHEN {k.title} ILIKE %s THEN 2
                 WHEN {k.title} ILIKE %s THEN 1 ELSE 0 END
            + 0.5 * {rank} + 0.5 * similarity({k.title}, %s))::float8 AS score
    FROM {k.table} WHERE id = ANY(%s::{k.id_type}[])"""
    return sql, [kind, p.lower, p.prefix, p.like, *rank_args, p.text, ids]


async def search(
    conn: Conn,
    p: Prepared,
    kinds: Sequence[str],
    user_id: uuid.UUID,
    after: Sequence[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to limit hits of the kinds, best first, strictly after the sort key after; each
    with kind, id, title, machine_id, status, score and its sort key as "_key"."""
    parts = []
    for kind in kinds:
        ids = await _candidates(conn, kind, p, user_id)
        if ids:
            parts.append(_ranked(kind, p, ids))
    if not parts:
        return []
    union = " UNION ALL ".join(f"({sql})" for sql, _ in parts)
    where, args, order = page_clauses("true", [], ORDER, after)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT * FROM ({union}) AS hits WHERE {where} ORDER BY {order} LIMIT %s".encode(),
            [*(a for _, part_args in parts for a in part_args), *args, limit],
        )
        rows = await cur.fetchall()
    for row in rows:
        row["_key"] = (row["score"], row["kind"], row["id"])
    return rows


async def fields_of(conn: Conn, kind: str, ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """The searched fields of these rows of a kind, in the order a snippet looks at them:
    {id: [(field, text)]}."""
    k = KINDS[kind]
    cols = ", ".join(f"coalesce({sql}, '')" for _, sql in k.fields)
    cur = await conn.execute(
        f"SELECT id::text, {cols} FROM {k.table} WHERE id = ANY(%s::{k.id_type}[])".encode(),
        (list(ids),),
    )
    return {
        str(row[0]): [(name, str(v)) for (name, _), v in zip(k.fields, row[1:], strict=True)]
        for row in await cur.fetchall()
    }
