"""Keyset paging: page_size, order_by, page tokens (round trip, tampering, wrong filter), and
paging through data with every mix of directions, on SQLite and on a real PostgreSQL with rows
inserted between pages."""

from __future__ import annotations

import base64
import itertools
import operator
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from backend.db.embedded import EmbeddedPostgres
from backend.filters import FieldSpec, compile_filter
from backend.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Direction,
    OrderBy,
    PagingError,
    decode_token,
    encode_token,
    keyset_predicate,
    order_signature,
    parse_order_by,
    parse_page_size,
)
from backend.settings import Settings
from tests.pg_fixtures import new_database

SECRET = b"k" * 32


def perr(param: str, fn: Callable[..., object], *args: Any, **kw: Any) -> PagingError:
    with pytest.raises(PagingError) as info:
        fn(*args, **kw)
    e = info.value
    assert e.param == param and str(e) == f"{param}: {e.problem}" and isinstance(e, ValueError)
    return e


# --- page_size -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (None, DEFAULT_PAGE_SIZE),
        ("0", DEFAULT_PAGE_SIZE),
        (0, DEFAULT_PAGE_SIZE),
        ("1", 1),
        ("20", 20),
        (1000, 1000),
        ("1001", MAX_PAGE_SIZE),
        ("999999999999999999", MAX_PAGE_SIZE),
    ],
)
def test_page_size(value: str | int | None, want: int) -> None:
    assert parse_page_size(value) == want


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("-1", "must not be negative, got -1"),
        (-5, "must not be negative, got -5"),
        ("abc", "must be an integer, got 'abc'"),
        ("", "must be an integer, got ''"),  # the OpenAPI document's integer
        (" 20 ", "must be an integer"),
        ("+20", "must be an integer"),
        ("1.5", "must be an integer"),
        ("1e3", "must be an integer"),
        ("0x10", "must be an integer"),
        ("1" * 40, "must be an integer"),
        (True, "must be an integer, got True"),
        (2.0, "must be an integer, got float"),
    ],
)
def test_page_size_errors(value: Any, needle: str) -> None:
    assert needle in perr("page_size", parse_page_size, value).problem


def test_page_size_custom_bounds() -> None:
    assert parse_page_size(None, default=20, maximum=50) == 20
    assert parse_page_size("70", default=20, maximum=50) == 50


# --- order_by --------------------------------------------------------------------------------

ALLOWED = {"timestamp": "ts_ns", "pid": "pid", "comm": "comm", "event_data.bytes": "bytes"}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("timestamp desc", [("ts_ns", "DESC"), ("id", "DESC")]),
        ("timestamp DESC, pid", [("ts_ns", "DESC"), ("pid", "ASC"), ("id", "ASC")]),
        ("  pid  asc ,timestamp   Desc ", [("pid", "ASC"), ("ts_ns", "DESC"), ("id", "DESC")]),
        ("event_data.bytes", [("bytes", "ASC"), ("id", "ASC")]),
        ("", [("ts_ns", "DESC"), ("id", "DESC")]),
        (None, [("ts_ns", "DESC"), ("id", "DESC")]),
        ("  ", [("ts_ns", "DESC"), ("id", "DESC")]),
    ],
)
def test_order_by(text: str | None, want: OrderBy) -> None:
    assert parse_order_by(text, ALLOWED, ["id"], default="timestamp desc") == want


def test_order_by_tiebreaks() -> None:
    assert parse_order_by("", ALLOWED, ["id"]) == [("id", "ASC")]
    assert parse_order_by("pid desc", ALLOWED, [("machine_id", "ASC"), "id"]) == [
        ("pid", "DESC"),
        ("machine_id", "ASC"),
        ("id", "ASC"),
    ]
    # a tiebreak the user already sorts by is not repeated
    allowed = {**ALLOWED, "id": "id"}
    assert parse_order_by("id desc, pid", allowed, ["id"]) == [("id", "DESC"), ("pid", "ASC")]
    assert parse_order_by("pid", ALLOWED) == [("pid", "ASC")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("foo", "cannot sort by 'foo'; sortable fields: comm, event_data.bytes, pid, timestamp"),
        ("pid, foo desc", "cannot sort by 'foo'"),
        ("ts_ns", "cannot sort by 'ts_ns'"),  # a column name is not an API field
        ("pid; DROP TABLE events", "item 1 'pid; DROP TABLE events' is not 'field [asc|desc]'"),
        ("pid sideways", "unknown direction 'sideways' for field 'pid'; use asc or desc"),
        ("pid desc asc", "is not 'field [asc|desc]'"),
        ("pid,", "item 2 is empty"),
        (",pid", "item 1 is empty"),
        ("pid,,comm", "item 2 is empty"),
        ("pid, pid desc", "field 'pid' appears more than once"),
        ("p" * 1025, "longer than 1024 characters"),
    ],
)
def test_order_by_errors(text: str, needle: str) -> None:
    assert needle in perr("order_by", parse_order_by, text, ALLOWED, ["id"]).problem


def test_order_signature() -> None:
    assert order_signature([("ts_ns", "DESC"), ("id", "DESC")]) == "ts_ns DESC,id DESC"


# --- keyset predicate ------------------------------------------------------------------------


def test_keyset_single_column() -> None:
    assert keyset_predicate([("id", "ASC")], [5]) == ("(id > %s)", [5])
    assert keyset_predicate([("id", "DESC")], [5]) == ("(id < %s)", [5])


def test_keyset_one_direction_is_a_row_comparison() -> None:
    assert keyset_predicate([("a", "ASC"), ("b", "ASC")], (1, 2)) == ("((a, b) > (%s, %s))", [1, 2])
    assert keyset_predicate([("a", "DESC"), ("b", "DESC"), ("c", "DESC")], (1, 2, 3)) == (
        "((a, b, c) < (%s, %s, %s))",
        [1, 2, 3],
    )


def test_keyset_mixed_directions() -> None:
    assert keyset_predicate([("a", "ASC"), ("b", "DESC")], (1, 2)) == (
        "(a >= %s AND ((a > %s) OR (a = %s AND b < %s)))",
        [1, 1, 1, 2],
    )
    assert keyset_predicate([("a", "DESC"), ("b", "ASC"), ("c", "DESC")], ("x", 2, 3)) == (
        "(a <= %s AND ((a < %s) OR (a = %s AND b > %s) OR (a = %s AND b = %s AND c < %s)))",
        ["x", "x", "x", 2, "x", 2, 3],
    )


def test_keyset_misuse() -> None:
    with pytest.raises(ValueError, match="at least one"):
        keyset_predicate([], ())
    with pytest.raises(ValueError, match="2 sort columns but 1 values"):
        keyset_predicate([("a", "ASC"), ("b", "ASC")], (1,))
    with pytest.raises(ValueError, match="NOT NULL"):
        keyset_predicate([("a", "ASC"), ("b", "ASC")], (1, None))


# --- tokens ----------------------------------------------------------------------------------

VALUES: tuple[object, ...] = (
    None,
    True,
    False,
    0,
    -(2**63),
    2**70,
    "",
    "ünï 'quoted' \"x\" \\ \x00",
    1.5,
    -0.0,
    float("inf"),
    0.1 + 0.2,
    Decimal("12345678901234567890.000000001"),
    uuid.UUID("5a4f1c2e-0d4b-4c55-9d0e-7c1f7b7e8a90"),
    datetime(2024, 5, 1, 12, 30, 1, 123456, tzinfo=UTC),
    datetime(2024, 5, 1, 12, 30, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2024, 5, 1, 12, 30),
    date(2024, 2, 29),
    time(23, 59, 59, 999999),
    timedelta(days=-1, seconds=5, microseconds=7),
    b"\x00\xff bytes",
)


def test_token_round_trip() -> None:
    token = encode_token(VALUES, "ts DESC,id DESC", "pid = 1", SECRET)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    back = decode_token(token, "ts DESC,id DESC", "pid = 1", SECRET)
    assert back == VALUES
    assert [type(v) for v in back] == [type(v) for v in VALUES]
    assert isinstance(back[15], datetime) and isinstance(VALUES[15], datetime)
    assert back[15].utcoffset() == VALUES[15].utcoffset()
    assert str(back[9]) == "-0.0"


@pytest.mark.parametrize("values", [(), (1,), (1, "a", 2)])
def test_token_round_trip_small(values: tuple[object, ...]) -> None:
    assert decode_token(encode_token(values, "o", "", SECRET), "o", "", SECRET) == values


def test_token_is_deterministic_and_compact() -> None:
    key = (datetime(2024, 5, 1, tzinfo=UTC), 123456789)
    a = encode_token(key, "o", "f", SECRET)
    assert a == encode_token(key, "o", "f", SECRET)
    assert len(a) < 120


INVALID = "is not a valid page token (altered, truncated or from another server)"


def test_token_from_another_filter_or_order() -> None:
    token = encode_token((1, 2), "ts DESC,id DESC", "pid = 1", SECRET)
    e = perr("page_token", decode_token, token, "ts DESC,id DESC", "pid = 2", SECRET)
    assert e.problem.startswith("was issued for a different filter")
    e = perr("page_token", decode_token, token, "ts ASC,id ASC", "pid = 1", SECRET)
    assert e.problem.startswith("was issued for a different order_by")
    e = perr("page_token", decode_token, token, "ts DESC,id DESC", "", SECRET)
    assert "different filter" in e.problem


def test_token_with_another_secret() -> None:
    token = encode_token((1, 2), "o", "f", SECRET)
    assert perr("page_token", decode_token, token, "o", "f", b"x" * 32).problem == INVALID


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _tok(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_every_altered_byte_is_refused() -> None:
    token = encode_token((datetime(2024, 5, 1, tzinfo=UTC), 42), "o", "f", SECRET)
    raw = _raw(token)
    for i in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[i] ^= flip
            e = perr("page_token", decode_token, _tok(bytes(bad)), "o", "f", SECRET)
            # bytes 1..12 carry the short hashes that only choose the message
            assert e.problem == INVALID or (1 <= i <= 12 and "was issued for" in e.problem)


def test_forged_payload_is_refused() -> None:
    token = encode_token((1,), "o", "f", SECRET)
    raw = _raw(token)
    forged = raw[:13] + b"[999]" + raw[-16:]
    assert perr("page_token", decode_token, _tok(forged), "o", "f", SECRET).problem == INVALID


@pytest.mark.parametrize(
    "token",
    ["", "x", "!!!!", "a b", "abc=", "AAAA", "A" * 40, "A" * 5000, "ü", "eyJ2IjoxfQ"],
)
def test_garbage_tokens(token: str) -> None:
    assert perr("page_token", decode_token, token, "o", "f", SECRET).problem == INVALID


def test_truncated_and_extended_tokens() -> None:
    token = encode_token((1, "abc"), "o", "f", SECRET)
    for n in range(len(token)):
        perr("page_token", decode_token, token[:n], "o", "f", SECRET)
    perr("page_token", decode_token, token + "A", "o", "f", SECRET)
    perr("page_token", decode_token, token + "AAAA", "o", "f", SECRET)


def test_token_misuse() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        encode_token((1,), "o", "f", b"short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        decode_token("x", "o", "f", b"")
    with pytest.raises(TypeError, match="cannot put a object into a page token"):
        encode_token((object(),), "o", "f", SECRET)


# --- paging through data ---------------------------------------------------------------------

Row = dict[str, Any]
Execute = Callable[[str, list[object]], list[tuple[Any, ...]]]


def page_through(
    execute: Execute,
    order: OrderBy,
    page_size: int,
    *,
    filter_sql: str = "TRUE",
    filter_params: Sequence[object] = (),
    filter_text: str = "",
    between_pages: Callable[[], None] = lambda: None,
    placeholder: str = "%s",
) -> list[tuple[Any, ...]]:
    """Every row via page tokens, the way the events handler does it; rows are (id, *key)."""
    sig = order_signature(order)
    columns = ", ".join(col for col, _ in order)
    order_sql = ", ".join(f"{col} {d}" for col, d in order)
    out: list[tuple[Any, ...]] = []
    token: str | None = None
    for _ in range(10_000):
        where, params = f"({filter_sql})", list(filter_params)
        if token is not None:
            last = decode_token(token, sig, filter_text, SECRET)
            keyset, kparams = keyset_predicate(order, last)
            where, params = f"{where} AND {keyset}", params + kparams
        sql = f"SELECT id, {columns} FROM t WHERE {where} ORDER BY {order_sql} LIMIT {page_size}"
        rows = execute(sql.replace("%s", placeholder), params)
        out.extend(rows)
        if len(rows) < page_size:
            return out
        token = encode_token(rows[-1][1:], sig, filter_text, SECRET)
        between_pages()
    raise AssertionError("paging did not end")


def python_order(rows: list[Row], order: list[tuple[str, Direction]]) -> list[int]:
    ordered = list(rows)
    for col, direction in reversed(order):  # stable sorts, least significant key first
        ordered.sort(key=operator.itemgetter(col), reverse=direction == "DESC")
    return [r["id"] for r in ordered]


def random_orders(rng: random.Random, columns: Sequence[str], n: int) -> list[OrderBy]:
    orders: list[OrderBy] = []
    for _ in range(n):
        k = rng.randint(0, len(columns))
        cols = rng.sample(list(columns), k)
        order: OrderBy = [(c, rng.choice(("ASC", "DESC"))) for c in cols]
        orders.append([*order, ("id", rng.choice(("ASC", "DESC")))])
    return orders


def test_keyset_paging_on_sqlite_matches_python_sorting() -> None:
    rng = random.Random(158)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL, d INTEGER)")
    rows = [
        {
            "id": i,
            "a": rng.randint(0, 3),
            "b": rng.choice("xyzXYZ"),
            "c": rng.choice([-1.5, 0.0, 2.25]),
            "d": rng.randint(-2, 2),
        }
        for i in rng.sample(range(10_000), 300)
    ]
    db.executemany("INSERT INTO t VALUES (:id, :a, :b, :c, :d)", rows)

    def execute(sql: str, params: list[object]) -> list[tuple[Any, ...]]:
        return db.execute(sql.replace(" TRUE", " 1"), params).fetchall()

    both: tuple[Direction, Direction] = ("ASC", "DESC")
    every_mix: list[OrderBy] = [
        list(zip(("a", "b", "c", "d", "id"), dirs, strict=True))
        for dirs in itertools.product(both, repeat=5)
    ]
    orders = every_mix + random_orders(rng, ("a", "b", "c", "d"), 40)
    for order in orders:
        want = python_order(rows, order)
        for page_size in (1, 7, 300, 1000):
            got = [r[0] for r in page_through(execute, order, page_size, placeholder="?")]
            assert got == want, (order, page_size)


# --- on a real PostgreSQL --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(pg_server: EmbeddedPostgres) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own on the session's server (tests/pg_fixtures.py)."""
    with new_database(pg_server) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _pg_rows(rng: random.Random, ids: Iterator[int], n: int) -> list[Row]:
    return [
        {
            "id": next(ids),
            "ts": T0 + timedelta(seconds=rng.randint(0, 20)),
            "pid": rng.choice([1, 2, 3]),
            "comm": rng.choice(["a", "B", "b", "ab"]),
            "m": uuid.UUID(int=rng.randint(1, 3)),
        }
        for _ in range(n)
    ]


@pytest.fixture
def pg_table(pg: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    pg.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, ts timestamptz NOT NULL, pid int NOT NULL, "
        "comm text NOT NULL, m uuid NOT NULL)"
    )
    yield pg
    pg.execute("DROP TABLE t")


def _insert(pg: psycopg.Connection[Any], rows: list[Row]) -> None:
    with pg.cursor() as cur:
        cur.executemany(
            "INSERT INTO t (id, ts, pid, comm, m) VALUES (%(id)s, %(ts)s, %(pid)s, %(comm)s, "
            "%(m)s)",
            rows,
        )


def test_paging_on_postgresql_with_concurrent_inserts(
    pg_table: psycopg.Connection[Any],
) -> None:
    pg = pg_table
    rng = random.Random(3)
    ids = itertools.count(1)
    rows = _pg_rows(rng, ids, 250)
    _insert(pg, rows)

    def execute(sql: str, params: list[object]) -> list[tuple[Any, ...]]:
        return pg.execute(sql, params).fetchall()

    allowed = {"timestamp": "ts", "pid": "pid", "comm": "comm", "machine_id": "m"}
    texts = [
        "timestamp desc",
        "timestamp",
        "pid desc, timestamp",
        "comm, pid desc",
        "machine_id desc, comm asc, timestamp desc",
        "pid, comm desc, machine_id",
    ]
    for text in texts:
        order = parse_order_by(text, allowed, ["id"])
        for page_size in (1, 13, 100):
            before = {r[0] for r in pg.execute("SELECT id FROM t").fetchall()}
            budget = [40]  # rows landing after the cursor extend the walk: keep it finite

            def insert_some(budget: list[int] = budget) -> None:
                n = min(budget[0], rng.randint(0, 3))
                budget[0] -= n
                _insert(pg, _pg_rows(rng, ids, n))

            got = page_through(execute, order, page_size, between_pages=insert_some)
            got_ids = [r[0] for r in got]
            assert len(got_ids) == len(set(got_ids)), "a row was served twice"
            assert before <= set(got_ids), "a row that was there was skipped"
            keys = [
                tuple(_cmp_key(v, d) for v, (_, d) in zip(r[1:], order, strict=True)) for r in got
            ]
            assert keys == sorted(keys), "pages are out of order"
        # without inserts, the pages are exactly the ordered table
        everything = pg.execute(
            f"SELECT id FROM t ORDER BY {', '.join(f'{c} {d}' for c, d in order)}"
        ).fetchall()
        assert [r[0] for r in page_through(execute, order, 17)] == [r[0] for r in everything]


class _Desc:
    """Inverts the order of a value, to check mixed directions with one sort."""

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)

    __hash__ = None  # type: ignore[assignment]


def _cmp_key(v: Any, direction: str) -> Any:
    if isinstance(v, str):
        v = v.encode()  # the server's collation is C: byte order
    return _Desc(v) if direction == "DESC" else v


def test_paging_with_a_filter_on_postgresql(pg_table: psycopg.Connection[Any]) -> None:
    pg = pg_table
    rng = random.Random(4)
    rows = _pg_rows(rng, itertools.count(1), 200)
    _insert(pg, rows)
    fields = {
        "pid": FieldSpec("pid", "int"),
        "comm": FieldSpec("comm", "str"),
        "timestamp": FieldSpec("ts", "timestamp"),
    }
    text = "pid = 1 OR comm = 'a*' AND timestamp >= '2024-05-01T00:00:05Z'"
    filter_sql, filter_params = compile_filter(text, fields)
    order = parse_order_by("timestamp desc, comm", {"timestamp": "ts", "comm": "comm"}, ["id"])
    got = page_through(
        lambda sql, params: pg.execute(sql, params).fetchall(),
        order,
        9,
        filter_sql=filter_sql,
        filter_params=filter_params,
        filter_text=text,
    )
    want = [
        r
        for r in rows
        if (r["pid"] == 1 or r["comm"].startswith("a")) and r["ts"] >= T0 + timedelta(0, 5)
    ]
    assert [r[0] for r in got] == python_order(
        want, [("ts", "DESC"), ("comm", "ASC"), ("id", "ASC")]
    )
    assert 9 < len(want) < len(rows)


def test_page_tokens_and_jwts_are_signed_with_separate_keys() -> None:
    s = Settings(jwt_secret="j" * 40)
    key = s.page_token_secret
    assert key != s.jwt_secret.encode() and len(key) == 32
    assert key == Settings(jwt_secret="j" * 40).page_token_secret  # stable across restarts
    assert key != Settings(jwt_secret="k" * 40).page_token_secret
    token = encode_token((42,), "id", "", key)
    assert decode_token(token, "id", "", key) == (42,)
    with pytest.raises(PagingError, match="page_token"):
        decode_token(token, "id", "", s.jwt_secret.encode())
