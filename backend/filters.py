"""AIP-160 filter strings compiled to parameterised PostgreSQL WHERE fragments.

``compile_filter(text, fields)`` turns ``pid = 42 AND (comm = "python*" OR ret < 0)`` into
``("((pid = %s) AND ((comm LIKE %s) OR (ret < %s)))", [42, "python%", 0])``: every value
the user wrote travels as a psycopg parameter; the SQL text holds only the column expressions
the caller put in the allow-list, operators and ``%s`` placeholders.

Grammar (the EBNF of https://google.aip.dev/160, minus functions and global literals)::

    filter      := [expression]
    expression  := sequence {"AND" sequence}
    sequence    := factor {factor}              (juxtaposition: a fuzzy AND, compiled as AND)
    factor      := term {"OR" term}
    term        := ["NOT" | "-"] simple
    simple      := restriction | "(" expression ")"
    restriction := field comparator value
    comparator  := "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | ":"

As AIP-160 says, OR binds tighter than AND: ``a AND b OR c`` is ``a AND (b OR c)``.
NOT and ``-`` bind tightest: ``NOT a OR b`` is ``(NOT a) OR b``. Keywords are upper case.
``==`` is accepted as ``=`` because seeds/003 writes it.

Values are quoted strings (``'…'`` or ``"…"``, escapes ``\\\\ \\" \\' \\n \\r \\t \\*``) or
bare words (``RUNNING``, ``42``, ``-1.5e3``, ``true``, ``20s``); the field's type decides how
a value is read. On ``str`` fields an unescaped ``*`` is a wildcard (``comm = "py*"``), and
``field:*`` on any field means "is present" (not NULL). ``:`` on a ``str`` field means
"contains"; on a ``json`` field it means "has key / has element"; elsewhere it is ``=``.

A comparison against a missing value (SQL NULL) is false, and NOT of it is true, so
``NOT ret = 0`` matches rows without a ``ret`` and ``a != 42`` is "true unless a equals 42"
(AIP-160). Fields declared ``nullable`` (and every ``json`` field) compile ``!=`` to
``IS DISTINCT FROM`` and NOT to ``IS NOT TRUE``; others keep the plain, index-friendly forms.

Errors raise FilterError; its message starts with ``filter:`` and names the field and/or the
1-based character position, e.g. ``filter: unknown field 'foo' at position 12; known fields:
comm, pid``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NoReturn

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_RESTRICTIONS",
    "OPERATORS",
    "FieldSpec",
    "FieldType",
    "FilterError",
    "as_datetime",
    "as_epoch_ns",
    "compile_filter",
]

FieldType = Literal["int", "float", "str", "bool", "timestamp", "duration", "json"]

MAX_LENGTH = 4096
MAX_DEPTH = 32
MAX_RESTRICTIONS = 256

OPERATORS: frozenset[str] = frozenset({"=", "!=", "<", "<=", ">", ">=", ":"})
_ORDERING = frozenset({"<", "<=", ">", ">="})
_TYPE_OPS: dict[str, frozenset[str]] = {
    "int": OPERATORS,
    "float": OPERATORS,
    "str": OPERATORS,
    "timestamp": OPERATORS,
    "duration": OPERATORS,
    "json": OPERATORS,
    # AIP-160: ordering operators are not provided for booleans.
    "bool": frozenset({"=", "!=", ":"}),
}
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean (true or false)",
    "timestamp": "an RFC 3339 timestamp (e.g. '2024-05-01T12:00:00.5Z')",
    "duration": "a duration (e.g. 2m, 20s, 1.5ms, 300us, 42ns; h: hours, m: minutes; a bare "
    "integer is nanoseconds)",
    "json": "a JSON value",
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FilterError(ValueError):
    """A filter that cannot be compiled. ``str(e)`` is ``"filter: <problem>"``.

    ``param`` is the query parameter to blame (``"filter"``), ``problem`` the message without
    it (for ``BadRequest(e.param, e.problem)``), ``position`` the 1-based character position
    when there is one, and ``field`` the field name when one is involved.
    """

    def __init__(
        self, problem: str, *, position: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(f"filter: {problem}")
        self.param = "filter"
        self.problem = problem
        self.position = position
        self.field = field


def as_epoch_ns(ns: int) -> int:
    """Timestamp converter for ``bigint`` columns holding nanoseconds since the Unix epoch."""
    return ns


def as_datetime(ns: int) -> datetime:
    """Timestamp converter for ``timestamptz`` columns (the default): an aware UTC datetime.

    PostgreSQL keeps microseconds; a literal with a non-zero sub-microsecond part is refused
    rather than silently rounded (rounding would change what ``<`` and ``>=`` match).
    """
    us, rest = divmod(ns, 1000)
    if rest:
        raise ValueError("this field keeps microseconds; the timestamp has a finer fraction")
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One filterable field: how to reach it in SQL, its type and the operators it allows.

    column:   a trusted SQL expression (``pid``, ``e.comm``, ``(event_data->>'bytes')::bigint``);
              written into the SQL as is, so it never comes from a request. A literal ``%``
              must be written ``%%`` (psycopg placeholders).
    type:     how values are read. ``timestamp`` values reach ``convert`` as int nanoseconds
              since the epoch, ``duration`` values as int nanoseconds. ``json``: ``column`` is
              a ``jsonb`` expression; registered under ``"name.*"`` it also serves every
              ``name.a.b`` path below it (the key path is passed as a parameter).
    ops:      allowed operators; None means every operator the type supports.
    nullable: the column can be NULL (see the module doc for what that changes).
    convert:  maps the typed value to the SQL parameter; ValueError/TypeError from it become a
              FilterError naming the field. Timestamps default to ``as_datetime``
              (timestamptz); pass ``as_epoch_ns`` for bigint nanosecond columns.
    """

    column: str
    type: FieldType
    ops: frozenset[str] | None = None
    nullable: bool = False
    convert: Callable[[Any], object] | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPE_OPS:
            raise ValueError(f"unknown field type {self.type!r}")
        if "%" in self.column.replace("%%", ""):
            raise ValueError(f"column {self.column!r}: write a literal % as %% (psycopg)")
        if self.ops is not None and not self.ops <= _TYPE_OPS[self.type]:
            bad = ", ".join(sorted(self.ops - _TYPE_OPS[self.type]))
            raise ValueError(f"operators {bad} are not available for {self.type} fields")

    @property
    def allowed_ops(self) -> frozenset[str]:
        return self.ops if self.ops is not None else _TYPE_OPS[self.type]


def compile_filter(
    text: str,
    fields: Mapping[str, FieldSpec],
    *,
    max_length: int = MAX_LENGTH,
    max_depth: int = MAX_DEPTH,
    max_restrictions: int = MAX_RESTRICTIONS,
) -> tuple[str, list[object]]:
    """Compiles an AIP-160 filter to ``(sql_fragment, params)`` for psycopg ``%s`` placeholders.

    An empty (or blank) filter gives ``("TRUE", [])``. Raises FilterError.
    """
    if not isinstance(text, str):
        raise FilterError("must be a string")
    if len(text) > max_length:
        raise FilterError(f"longer than {max_length} characters ({len(text)})")
    tokens = _lex(text)
    if len(tokens) == 1:  # only EOF
        return "TRUE", []
    parser = _Parser(tokens, fields, max_depth, max_restrictions)
    node = parser.parse()
    params: list[object] = []
    sql = node.emit(params)
    return sql, params


# --- lexer -----------------------------------------------------------------------------------

_KEYWORDS = frozenset({"AND", "OR", "NOT"})
_COMPARATORS = ("<=", ">=", "!=", "==", "=", "<", ">", ":")
_TEXT_STOP = frozenset(" \t\r\n\f\v()\"'=!<>:\\")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "*": "*"}
# Marks an unescaped '*' inside a decoded string value (never a character a user can type
# through the lexer: control characters outside \t\n\r are refused).
_STAR = "\x00"


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: Literal["(", ")", "CMP", "AND", "OR", "NOT", "-", "STRING", "TEXT", "EOF"]
    value: str  # the comparator, or the decoded value (unescaped '*' as _STAR)
    pos: int  # 1-based
    raw: str  # the source text, for messages


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        pos = i + 1
        if c in " \t\r\n\f\v":
            i += 1
            continue
        if ord(c) < 32 or ord(c) == 127:
            _fail(f"control character {c!r} at position {pos}", pos)
        if c in "()":
            toks.append(_Tok(c, c, pos, c))  # type: ignore[arg-type]
            i += 1
            continue
        cmp = next((op for op in _COMPARATORS if text.startswith(op, i)), None)
        if cmp is not None:
            toks.append(_Tok("CMP", "=" if cmp == "==" else cmp, pos, cmp))
            i += len(cmp)
            continue
        if c == "!":
            _fail(f"unexpected '!' at position {pos} (did you mean '!=' or NOT?)", pos)
        if c in "\"'":
            value, i = _lex_string(text, i)
            toks.append(_Tok("STRING", value, pos, text[pos - 1 : i]))
            continue
        if c == "\\":
            _fail(f"unexpected '\\' at position {pos}; escapes only work inside quotes", pos)
        after_cmp = bool(toks) and toks[-1].kind == "CMP"
        if c == "-" and not after_cmp:
            toks.append(_Tok("-", "-", pos, "-"))
            i += 1
            continue
        j = i
        while j < n and text[j] not in _TEXT_STOP and ord(text[j]) >= 32:
            j += 1
        word = text[i:j]
        if word in _KEYWORDS:  # reserved, as in the AIP-160 EBNF: quote them to match them
            toks.append(_Tok(word, word, pos, word))  # type: ignore[arg-type]
        else:
            toks.append(_Tok("TEXT", word.replace("*", _STAR), pos, word))
        i = j
    toks.append(_Tok("EOF", "", n + 1, "end of filter"))
    return toks


def _lex_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt not in _ESCAPES:
                shown = f"'\\{nxt}'" if nxt else "'\\' at the end"
                _fail(f"unknown escape {shown} at position {i + 1}", i + 1)
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127:
            _fail(f"control character {c!r} at position {i + 1}", i + 1)
        out.append(_STAR if c == "*" else c)
        i += 1
    _fail(f"unterminated string starting at position {start + 1}", start + 1)


def _fail(problem: str, position: int | None = None, field: str | None = None) -> NoReturn:
    raise FilterError(problem, position=position, field=field)


# --- syntax tree -----------------------------------------------------------------------------


class _Node:
    nullable: bool

    def emit(self, params: list[object]) -> str:
        raise NotImplementedError


@dataclass(slots=True)
class _Bool(_Node):
    op: Literal["AND", "OR"]
    children: list[_Node]
    nullable: bool = False

    def emit(self, params: list[object]) -> str:
        return "(" + f" {self.op} ".join(c.emit(params) for c in self.children) + ")"


@dataclass(slots=True)
class _Not(_Node):
    child: _Node
    nullable: bool = False

    def emit(self, params: list[object]) -> str:
        inner = self.child.emit(params)
        # NULL (a comparison with a missing value) counts as false, so NOT of it is true.
        return f"({inner} IS NOT TRUE)" if self.child.nullable else f"(NOT {inner})"


@dataclass(slots=True)
class _Cmp(_Node):
    """A finished comparison: SQL with %s placeholders and the params for them, in order."""

    sql: str
    params: list[object]
    nullable: bool = False

    def emit(self, params: list[object]) -> str:
        params.extend(self.params)
        return f"({self.sql})"

    def negated(self) -> _Cmp:
        if self.nullable:
            return _Cmp(f"({self.sql}) IS NOT TRUE", self.params, nullable=True)
        return _Cmp(f"NOT ({self.sql})", self.params)


# --- parser ----------------------------------------------------------------------------------

_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_]*|"[^"]+")'
_SIMPLE_COLUMN_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*")


class _Parser:
    def __init__(
        self,
        toks: list[_Tok],
        fields: Mapping[str, FieldSpec],
        max_depth: int,
        max_restrictions: int,
    ) -> None:
        self.toks = toks
        self.i = 0
        self.fields = fields
        self.max_depth = max_depth
        self.max_restrictions = max_restrictions
        self.restrictions = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def parse(self) -> _Node:
        node = self.expression(0)
        tok = self.peek()
        if tok.kind != "EOF":
            if tok.kind == ")":
                _fail(f"unexpected ')' at position {tok.pos} (no matching '(')", tok.pos)
            hint = (
                " (quote values that contain ':', '=', '<', '>' or spaces)"
                if tok.kind == "CMP"
                else ""
            )
            _fail(f"unexpected {tok.raw!r} at position {tok.pos}{hint}", tok.pos)
        return node

    def expression(self, depth: int) -> _Node:
        parts = [self.sequence(depth)]
        while self.peek().kind == "AND":
            self.take()
            parts.append(self.sequence(depth))
        return _combine("AND", parts)

    def sequence(self, depth: int) -> _Node:
        parts = [self.factor(depth)]
        while self.peek().kind in ("TEXT", "STRING", "(", "NOT", "-"):
            parts.append(self.factor(depth))
        return _combine("AND", parts)

    def factor(self, depth: int) -> _Node:
        parts = [self.term(depth)]
        while self.peek().kind == "OR":
            self.take()
            parts.append(self.term(depth))
        return _combine("OR", parts)

    def term(self, depth: int) -> _Node:
        tok = self.peek()
        if tok.kind in ("NOT", "-"):
            self.take()
            self._check_depth(depth + 1, tok)
            nxt = self.peek()
            if nxt.kind in ("NOT", "-"):
                _fail(
                    f"unexpected {nxt.raw!r} at position {nxt.pos}: use parentheses to "
                    f"negate twice",
                    nxt.pos,
                )
            child = self.simple(depth + 1, after=tok)
            return _Not(child, nullable=child.nullable)
        return self.simple(depth, after=None)

    def simple(self, depth: int, after: _Tok | None) -> _Node:
        tok = self.peek()
        if tok.kind == "(":
            self.take()
            self._check_depth(depth + 1, tok)
            if self.peek().kind == ")":
                _fail(f"empty parentheses at position {tok.pos}", tok.pos)
            node = self.expression(depth + 1)
            close = self.peek()
            if close.kind != ")":
                if close.kind == "EOF":
                    _fail(f"missing ')' for the '(' at position {tok.pos}", tok.pos)
                _fail(
                    f"expected ')' for the '(' at position {tok.pos}, found {close.raw!r} "
                    f"at position {close.pos}",
                    close.pos,
                )
            self.take()
            return node
        if tok.kind == "TEXT":
            return self.restriction()
        where = f" after {after.raw!r}" if after is not None else ""
        if tok.kind == "EOF":
            prev = after or self.toks[self.i - 1]
            _fail(
                f"expected a comparison after {prev.raw!r} at position {prev.pos}, found the "
                f"end of the filter",
                prev.pos,
            )
        if tok.kind == "STRING":
            _fail(
                f"expected a field name at position {tok.pos}, found the string {tok.raw}; "
                f"a comparison is 'field OP value'",
                tok.pos,
            )
        if tok.kind == ")":
            _fail(f"expected a comparison{where} at position {tok.pos}, found ')'", tok.pos)
        _fail(f"expected a comparison{where} at position {tok.pos}, found {tok.raw!r}", tok.pos)

    def restriction(self) -> _Node:
        ftok = self.take()
        name = ftok.raw
        op_tok = self.peek()
        if op_tok.kind != "CMP":
            if name in ("and", "or", "not"):
                _fail(
                    f"unexpected {name!r} at position {ftok.pos}: the operators AND, OR and "
                    f"NOT are upper case",
                    ftok.pos,
                )
            found = "the end of the filter" if op_tok.kind == "EOF" else repr(op_tok.raw)
            _fail(
                f"expected a comparison operator (=, !=, <, <=, >, >=, :) after field "
                f"{name!r} at position {ftok.pos}, found {found}",
                ftok.pos,
                name,
            )
        self.take()
        spec, path = self._resolve(ftok)
        op = op_tok.value
        if op not in spec.allowed_ops:
            allowed = ", ".join(
                o for o in ("=", "!=", "<", "<=", ">", ">=", ":") if o in spec.allowed_ops
            )
            _fail(
                f"operator {op_tok.raw!r} is not supported for field {name!r} at position "
                f"{op_tok.pos} (supported: {allowed})",
                op_tok.pos,
                name,
            )
        vtok = self.peek()
        if vtok.kind not in ("TEXT", "STRING"):
            found = "the end of the filter" if vtok.kind == "EOF" else repr(vtok.raw)
            _fail(
                f"missing value after {name} {op_tok.raw} at position {vtok.pos}, found {found}",
                vtok.pos,
                name,
            )
        self.take()
        nxt = self.peek()
        if vtok.kind == "TEXT" and nxt.kind == "CMP":
            _fail(
                f"the value {vtok.raw!r} for field {name!r} at position {vtok.pos} is followed "
                f"by {nxt.raw!r}: quote values that contain ':', '=', '<', '>' or spaces",
                vtok.pos,
                name,
            )
        self.restrictions += 1
        if self.restrictions > self.max_restrictions:
            _fail(
                f"more than {self.max_restrictions} comparisons at position {ftok.pos}",
                ftok.pos,
            )
        return _compare(name, spec, path, op, vtok)

    def _resolve(self, ftok: _Tok) -> tuple[FieldSpec, list[str]]:
        name = ftok.raw
        if not _FIELD_RE.fullmatch(name):
            _fail(f"invalid field name {name!r} at position {ftok.pos}", ftok.pos, name)
        spec = self.fields.get(name)
        if spec is not None:
            return spec, []
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            spec = self.fields.get(".".join(parts[:cut]) + ".*")
            if spec is not None and spec.type == "json":
                keys = parts[cut:]
                if all(_KEY_RE.fullmatch(k) for k in keys):
                    return spec, keys
        known = ", ".join(sorted(self.fields))
        _fail(
            f"unknown field {name!r} at position {ftok.pos}; known fields: {known}", ftok.pos, name
        )

    def _check_depth(self, depth: int, tok: _Tok) -> None:
        if depth > self.max_depth:
            _fail(f"nested deeper than {self.max_depth} levels at position {tok.pos}", tok.pos)


def _combine(op: Literal["AND", "OR"], parts: list[_Node]) -> _Node:
    if len(parts) == 1:
        return parts[0]
    flat: list[_Node] = []
    for p in parts:
        flat.extend(p.children if isinstance(p, _Bool) and p.op == op else [p])
    return _Bool(op, flat, nullable=any(p.nullable for p in flat))


# --- comparisons -----------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DURATION_RE = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(h|m|s|ms|us|µs|ns)?")
_DURATION_NS = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,
    "ns": 1,
}
_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _compare(name: str, spec: FieldSpec, path: list[str], op: str, vtok: _Tok) -> _Cmp:
    col = spec.column if _SIMPLE_COLUMN_RE.fullmatch(spec.column) else f"({spec.column})"
    raw = vtok.value
    if op == ":" and raw == _STAR:  # presence: field:*
        if spec.type == "json":
            expr, eparams = _json_expr(col, path)
            return _Cmp(f"{expr} IS NOT NULL", eparams)
        return _Cmp(f"{col} IS NOT NULL", [])
    if spec.type == "json":
        return _compare_json(name, col, path, op, vtok)
    if spec.type == "str":
        return _compare_str(name, spec, col, op, vtok)
    value = _convert(name, spec, vtok, _typed(name, spec.type, vtok))
    sql_op = "=" if op == ":" else _SQL_OPS[op]
    if op == "!=" and spec.nullable:
        return _Cmp(f"{col} IS DISTINCT FROM %s", [value], nullable=True)
    return _Cmp(f"{col} {sql_op} %s", [value], nullable=spec.nullable)


def _compare_str(name: str, spec: FieldSpec, col: str, op: str, vtok: _Tok) -> _Cmp:
    raw = vtok.value
    wild = _STAR in raw
    if op == ":" or (wild and op in ("=", "!=")):
        pattern = "%" + _like_escape(raw) + "%" if op == ":" else _like_escape(raw)
        value = _convert(name, spec, vtok, pattern)
        if op == "!=":
            return _Cmp(f"{col} LIKE %s", [value], nullable=spec.nullable).negated()
        return _Cmp(f"{col} LIKE %s", [value], nullable=spec.nullable)
    text = raw.replace(_STAR, "*")
    value = _convert(name, spec, vtok, text)
    if op == "!=" and spec.nullable:
        return _Cmp(f"{col} IS DISTINCT FROM %s", [value], nullable=True)
    return _Cmp(f"{col} {_SQL_OPS[op]} %s", [value], nullable=spec.nullable)


def _like_escape(raw: str) -> str:
    """A LIKE pattern (default escape character backslash) with '*' wildcards as '%'."""
    out = []
    for ch in raw:
        if ch == _STAR:
            out.append("%")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _json_expr(col: str, path: list[str]) -> tuple[str, list[object]]:
    if not path:
        return col, []
    return f"({col} #> %s::text[])", [list(path)]


def _compare_json(name: str, col: str, path: list[str], op: str, vtok: _Tok) -> _Cmp:
    expr, eparams = _json_expr(col, path)
    value = _json_value(vtok)
    if op == ":":
        if isinstance(value, str):
            # object key, array element or the string itself
            return _Cmp(f"{expr} ? %s", [*eparams, value], nullable=True)
        return _Cmp(f"{expr} @> %s::jsonb", [*eparams, json.dumps(value)], nullable=True)
    if op in ("=", "!="):
        sql_op = "=" if op == "=" else "IS DISTINCT FROM"
        return _Cmp(f"{expr} {sql_op} %s::jsonb", [*eparams, json.dumps(value)], nullable=True)
    # ordering: compare numbers with numbers and strings with strings; anything else is NULL
    sql_op = _SQL_OPS[op]
    if isinstance(value, bool) or value is None:
        _fail(
            f"operator {op!r} needs a number or a string for field {name!r} at position "
            f"{vtok.pos}, got {vtok.raw}",
            vtok.pos,
            name,
        )
    if isinstance(value, str):
        sql = f"(CASE WHEN jsonb_typeof({expr}) = 'string' THEN {expr} #>> '{{}}' END) {sql_op} %s"
        return _Cmp(sql, [*eparams, *eparams, value], nullable=True)
    sql = f"(CASE WHEN jsonb_typeof({expr}) = 'number' THEN ({expr})::numeric END) {sql_op} %s"
    return _Cmp(sql, [*eparams, *eparams, value], nullable=True)


def _json_value(vtok: _Tok) -> object:
    raw = vtok.value.replace(_STAR, "*")
    if vtok.kind == "STRING":
        return raw
    if _INT_RE.fullmatch(raw):
        return int(raw)
    if _FLOAT_RE.fullmatch(raw):
        return float(raw)
    return {"true": True, "false": False, "null": None}.get(raw, raw)


def _typed(name: str, ftype: str, vtok: _Tok) -> object:
    raw = vtok.value.replace(_STAR, "*")

    def bad(extra: str = "") -> NoReturn:
        _fail(
            f"field {name!r} expects {_TYPE_WORDS[ftype]}; {vtok.raw} at position {vtok.pos} "
            f"is not one{extra}",
            vtok.pos,
            name,
        )

    if ftype == "int":
        if not _INT_RE.fullmatch(raw):
            bad()
        value = int(raw)
        if not _INT64_MIN <= value <= _INT64_MAX:
            bad(" (out of the 64-bit range)")
        return value
    if ftype == "float":
        if not _FLOAT_RE.fullmatch(raw):
            bad()
        number = float(raw)
        if number in (float("inf"), float("-inf")):
            bad(" (out of range)")
        return number
    if ftype == "bool":
        lowered = raw.lower()
        if lowered not in ("true", "false"):
            bad()
        return lowered == "true"
    if ftype == "timestamp":
        ns = _parse_rfc3339(raw)
        if ns is None:
            bad()
        return ns
    if ftype == "duration":
        m = _DURATION_RE.fullmatch(raw)
        if m is None or (m.group(2) is None and not _INT_RE.fullmatch(m.group(1))):
            bad()
        try:
            ns_dec = Decimal(m.group(1)) * _DURATION_NS[m.group(2) or "ns"]
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            bad()
        if ns_dec != ns_dec.to_integral_value():
            bad(" (finer than a nanosecond)")
        value = int(ns_dec)
        if not _INT64_MIN <= value <= _INT64_MAX:
            bad(" (out of the 64-bit range)")
        return value
    raise AssertionError(ftype)  # pragma: no cover


def _parse_rfc3339(raw: str) -> int | None:
    """RFC 3339 → integer nanoseconds since the epoch, exactly; None when malformed."""
    m = _RFC3339_RE.fullmatch(raw)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(k)) for k in range(1, 7))
    frac = (m.group(7) or "").ljust(9, "0")
    if m.group(8):
        tz = UTC
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        sign = -1 if m.group(9) == "-" else 1
        tz = timezone(sign * timedelta(hours=oh, minutes=om))
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**9 + int(frac)


def _convert(name: str, spec: FieldSpec, vtok: _Tok, value: object) -> object:
    if spec.convert is None and spec.type != "timestamp":
        return value
    convert: Callable[[Any], object] = spec.convert or as_datetime
    try:
        return convert(value)
    except (ValueError, TypeError, OverflowError) as e:
        _fail(
            f"invalid value {vtok.raw} for field {name!r} at position {vtok.pos}: {e}",
            vtok.pos,
            name,
        )
