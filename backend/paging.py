"""Keyset pagination: ``order_by`` and ``page_size`` parsing, opaque page tokens, the WHERE.

A page token carries the sort key of the last row served. The next page is the rows strictly
after it in the (total) order, so rows inserted meanwhile never shift a page: no row is served
twice and none that was there is skipped. The order is total because ``parse_order_by`` always
appends the caller's unique tiebreak columns (e.g. the primary key).

Tokens are ``urlsafe_b64(payload || HMAC-SHA256(secret, payload || H(order) || H(filter))[:16])``
with ``payload = version || H(order)[:6] || H(filter)[:6] || JSON(sort key)``: they cannot be
forged or altered, and a token used with another ``filter`` or ``order_by`` than the one it
was issued for is refused with a message that says which.

Every error is a PagingError: ``str(e)`` is ``"<param>: <problem>"`` where param is
``page_token``, ``order_by`` or ``page_size``.

Sort columns must be NOT NULL (``keyset_predicate`` refuses None): SQL row comparisons with
NULLs skip rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Direction",
    "OrderBy",
    "PagingError",
    "decode_token",
    "encode_token",
    "keyset_predicate",
    "order_signature",
    "page_clauses",
    "parse_order_by",
    "parse_page_size",
]

Direction = Literal["ASC", "DESC"]
OrderBy = list[tuple[str, Direction]]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_ORDER_BY_LENGTH = 1024
MAX_TOKEN_LENGTH = 4096

_VERSION = 1
_HASH_LEN = 6
_MAC_LEN = 16
_HEADER_LEN = 1 + 2 * _HASH_LEN


class PagingError(ValueError):
    """A bad ``page_token``, ``order_by`` or ``page_size``; ``param`` says which."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param
        self.problem = problem


# --- page_size -------------------------------------------------------------------------------


def parse_page_size(
    value: str | int | None,
    *,
    default: int = DEFAULT_PAGE_SIZE,
    maximum: int = MAX_PAGE_SIZE,
) -> int:
    """The page size to use. As AIP-158 says: missing or 0 → ``default``; above ``maximum`` →
    ``maximum``; negative or not an integer → PagingError naming ``page_size``. A string
    is decimal digits, nothing else (as the OpenAPI document's integer says)."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise PagingError("page_size", f"must be an integer, got {value!r}")
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]{1,18}", value):
            raise PagingError("page_size", f"must be an integer, got {value[:40]!r}")
        value = int(value)
    if not isinstance(value, int):
        raise PagingError("page_size", f"must be an integer, got {type(value).__name__}")
    if value < 0:
        raise PagingError("page_size", f"must not be negative, got {value}")
    if value == 0:
        return default
    return min(value, maximum)


# --- order_by --------------------------------------------------------------------------------


def parse_order_by(
    text: str | None,
    allowed: Mapping[str, str],
    tiebreak: Sequence[str | tuple[str, Direction]] = (),
    *,
    default: str = "",
) -> OrderBy:
    """``"timestamp desc, pid"`` → ``[(column, "DESC"), (column, "ASC"), *tiebreak]``.

    ``allowed`` maps the API field names a user may sort by to trusted SQL column expressions.
    Each item is ``field [asc|desc]`` (case-insensitive direction, ascending by default, as
    AIP-132). An empty ``text`` means ``default`` (same syntax). The ``tiebreak`` columns (SQL
    expressions that together with the rest make the order total, e.g. the primary key) are
    appended unless already present; a bare column takes the direction of the key before it,
    so an index on ``(timestamp, id)`` serves ``timestamp desc`` scanned backwards.
    """
    if text is not None and len(text) > MAX_ORDER_BY_LENGTH:
        raise PagingError("order_by", f"longer than {MAX_ORDER_BY_LENGTH} characters")
    source = text if text and text.strip() else default
    order: OrderBy = []
    seen_fields: set[str] = set()
    if source.strip():
        for index, item in enumerate(source.split(","), start=1):
            words = item.split()
            if not words:
                raise PagingError("order_by", f"item {index} is empty in {source!r}")
            if len(words) > 2:
                raise PagingError(
                    "order_by", f"item {index} {item.strip()!r} is not 'field [asc|desc]'"
                )
            name = words[0]
            direction = words[1].upper() if len(words) == 2 else "ASC"
            if direction not in ("ASC", "DESC"):
                raise PagingError(
                    "order_by",
                    f"unknown direction {words[1]!r} for field {name!r}; use asc or desc",
                )
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                raise PagingError("order_by", f"cannot sort by {name!r}; sortable fields: {known}")
            if name in seen_fields:
                raise PagingError("order_by", f"field {name!r} appears more than once")
            seen_fields.add(name)
            order.append((allowed[name], "DESC" if direction == "DESC" else "ASC"))
    columns = {col for col, _ in order}
    for tb in tiebreak:
        if isinstance(tb, tuple):
            col, tb_dir = tb
        else:
            col, tb_dir = tb, (order[-1][1] if order else "ASC")
        if col not in columns:
            order.append((col, tb_dir))
            columns.add(col)
    return order


def order_signature(order: OrderBy) -> str:
    """A canonical text for an order, to bind page tokens to it."""
    return ",".join(f"{col} {direction}" for col, direction in order)


# --- keyset predicate ------------------------------------------------------------------------


def keyset_predicate(order: OrderBy, last_values: Sequence[object]) -> tuple[str, list[object]]:
    """The WHERE fragment selecting the rows strictly after ``last_values`` in ``order``.

    One direction: a row comparison, ``(a, b) > (%s, %s)`` (``<`` for DESC), which PostgreSQL
    turns into a single index range. Mixed directions: the lexicographic expansion behind a
    bound on the first column, ``(a >= %s AND ((a > %s) OR (a = %s AND b < %s)))``.
    """
    if not order:
        raise ValueError("keyset_predicate needs at least one sort column")
    if len(order) != len(last_values):
        raise ValueError(f"{len(order)} sort columns but {len(last_values)} values")
    if any(v is None for v in last_values):
        raise ValueError("sort columns must be NOT NULL for keyset pagination")
    values = list(last_values)
    directions = {d for _, d in order}
    if len(directions) == 1:
        op = ">" if directions == {"ASC"} else "<"
        if len(order) == 1:
            return f"({order[0][0]} {op} %s)", values
        cols = ", ".join(col for col, _ in order)
        marks = ", ".join("%s" for _ in order)
        return f"(({cols}) {op} ({marks}))", values
    params: list[object] = []
    disjuncts: list[str] = []
    for i, (col, direction) in enumerate(order):
        terms = []
        for prev_col, _ in order[:i]:
            terms.append(f"{prev_col} = %s")
        terms.append(f"{col} {'>' if direction == 'ASC' else '<'} %s")
        params.extend(values[: i + 1])
        disjuncts.append("(" + " AND ".join(terms) + ")")
    first_col, first_dir = order[0]
    bound = f"{first_col} {'>=' if first_dir == 'ASC' else '<='} %s"
    return f"({bound} AND ({' OR '.join(disjuncts)}))", [values[0], *params]


def page_clauses(
    where: str, params: Sequence[object], order: OrderBy, after: Sequence[object] | None
) -> tuple[str, list[object], str]:
    """(WHERE, its parameters, ORDER BY) of one page: the rows matching where, strictly
    after the sort key after (None: from the first), in order."""
    clauses, args = [f"({where})"], list(params)
    if after is not None:
        pred, pred_args = keyset_predicate(order, after)
        clauses.append(pred)
        args += pred_args
    return " AND ".join(clauses), args, ", ".join(f"{col} {d}" for col, d in order)


# --- tokens ----------------------------------------------------------------------------------


def encode_token(
    sort_key_values: Sequence[object],
    order_by_signature: str,
    filter_signature: str,
    secret: bytes,
) -> str:
    """The opaque ``next_page_token`` for the row whose sort key is ``sort_key_values``.

    Values may be None, bool, int, float, str, Decimal, UUID, datetime, date, time, timedelta
    or bytes (what psycopg returns for the usual column types); they come back as the same
    types from ``decode_token``.
    """
    _check_secret(secret)
    body = json.dumps(
        [_dump(v) for v in sort_key_values], separators=(",", ":"), allow_nan=False
    ).encode()
    payload = (
        bytes([_VERSION])
        + _sig_hash(order_by_signature)[:_HASH_LEN]
        + _sig_hash(filter_signature)[:_HASH_LEN]
        + body
    )
    mac = _mac(secret, payload, order_by_signature, filter_signature)
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def decode_token(
    token: str,
    order_by_signature: str,
    filter_signature: str,
    secret: bytes,
) -> tuple[object, ...]:
    """The sort key a token from ``encode_token`` carries; PagingError naming ``page_token``
    when it is malformed, altered, signed with another secret, or was issued for another
    ``filter`` or ``order_by``."""
    _check_secret(secret)
    invalid = PagingError(
        "page_token", "is not a valid page token (altered, truncated or from another server)"
    )
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise invalid
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    if len(raw) < _HEADER_LEN + _MAC_LEN or raw[0] != _VERSION:
        raise invalid
    payload, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
    order_hash = payload[1 : 1 + _HASH_LEN]
    filter_hash = payload[1 + _HASH_LEN : _HEADER_LEN]
    # The short hashes only pick the message; the MAC below decides.
    if not hmac.compare_digest(order_hash, _sig_hash(order_by_signature)[:_HASH_LEN]):
        raise PagingError(
            "page_token",
            "was issued for a different order_by; repeat the request with the order_by of the "
            "first page, or start again without page_token",
        )
    if not hmac.compare_digest(filter_hash, _sig_hash(filter_signature)[:_HASH_LEN]):
        raise PagingError(
            "page_token",
            "was issued for a different filter; repeat the request with the filter of the "
            "first page, or start again without page_token",
        )
    if not hmac.compare_digest(mac, _mac(secret, payload, order_by_signature, filter_signature)):
        raise invalid
    try:
        items = json.loads(payload[_HEADER_LEN:].decode("utf-8"))
        if not isinstance(items, list):
            raise ValueError("not a list")
        return tuple(_load(v) for v in items)
    except (ValueError, TypeError, KeyError):  # signed by us, so only after a secret leak
        raise invalid from None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
        raise ValueError("the page token secret must be at least 16 bytes")


def _sig_hash(signature: str) -> bytes:
    return hashlib.sha256(signature.encode("utf-8", "surrogatepass")).digest()


def _mac(secret: bytes, payload: bytes, order_sig: str, filter_sig: str) -> bytes:
    msg = payload + _sig_hash(order_sig) + _sig_hash(filter_sig)
    return hmac.new(bytes(secret), msg, hashlib.sha256).digest()[:_MAC_LEN]


def _dump(v: object) -> object:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return {"f": repr(v)}  # keeps the exact value, and nan/inf
    if isinstance(v, Decimal):
        return {"n": str(v)}
    if isinstance(v, uuid.UUID):
        return {"u": str(v)}
    if isinstance(v, datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, date):
        return {"d": v.isoformat()}
    if isinstance(v, time):
        return {"t": v.isoformat()}
    if isinstance(v, timedelta):
        return {"td": [v.days, v.seconds, v.microseconds]}
    if isinstance(v, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(bytes(v)).decode("ascii")}
    raise TypeError(f"cannot put a {type(v).__name__} into a page token")


def _load(v: object) -> object:
    if v is None or isinstance(v, bool | int | str):
        return v
    if not isinstance(v, dict) or len(v) != 1:
        raise ValueError("bad value")
    ((tag, x),) = v.items()
    if tag == "td":
        days, seconds, micros = x
        return timedelta(days=days, seconds=seconds, microseconds=micros)
    if not isinstance(x, str):
        raise ValueError("bad value")
    loaders: dict[str, Callable[[str], object]] = {
        "f": float,
        "n": Decimal,
        "u": uuid.UUID,
        "dt": datetime.fromisoformat,
        "d": date.fromisoformat,
        "t": time.fromisoformat,
        "b": base64.b64decode,
    }
    return loaders[tag](x)
