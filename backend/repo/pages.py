"""One keyset page of a table's rows (backend.paging): the query every list endpoint's
repository runs, with each row's sort key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.paging import OrderBy, page_clauses

__all__ = ["fetch_page"]


async def fetch_page(
    conn: AsyncConnection[Any],
    columns: str,
    table: str,
    where: str,
    params: Sequence[Any],
    order: OrderBy,
    after: Sequence[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to limit rows (columns of table) matching where, in order, strictly after the sort
    key after; each row's sort key (the values of order's columns or expressions) is its
    "_key"."""
    where_sql, args, order_sql = page_clauses(where, params, order, after)
    keys = ", ".join(f"{col} AS _k{i}" for i, (col, _) in enumerate(order))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {columns}, {keys} FROM {table} WHERE {where_sql} "
            f"ORDER BY {order_sql} LIMIT %s".encode(),
            [*args, limit],
        )
        rows = await cur.fetchall()
    for row in rows:
        row["_key"] = tuple(row.pop(f"_k{i}") for i in range(len(order)))
    return rows
