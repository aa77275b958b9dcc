"""A search query's terms, and the snippet showing where a hit matched (GET /search).

Terms: words apart (all needed), "a quoted phrase" (one term), OR between two terms (either).
A term's punctuation is a space, so a flag (--lr), a key=value (lr=0.1), a path
(/data/cfg.yaml) or a file name (train_llama.py) is the phrase of its words: PostgreSQL reads
each term so (backend.repo.search). A leading '-' is part of a flag, not a negation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MAX_QUERY_LENGTH", "SNIPPET_LENGTH", "Snippet", "parse_terms", "snippet"]

MAX_QUERY_LENGTH = 200
SNIPPET_LENGTH = 160
_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')
_WORD = re.compile(r"[^\W_]+")
_BEFORE = 40  # characters of context kept before the first match

Snippet = tuple[str, str, list[tuple[int, int]]]


def parse_terms(q: str) -> list[str | None]:
    """The terms of q in order; None stands for OR."""
    terms: list[str | None] = []
    for m in _TOKEN.finditer(q):
        phrase, word = m.group(1), m.group(2)
        if phrase is not None:
            if phrase.strip():
                terms.append(phrase)
        elif word.lower() == "or":
            terms.append(None)
        else:
            terms.append(word)
    return terms


def _spans(value: str, text: str, words: set[str]) -> list[tuple[int, int]]:
    low = value.lower()
    spans: list[tuple[int, int]] = []
    at = low.find(text.lower()) if text else -1
    if at >= 0:
        spans.append((at, at + len(text)))
    for m in _WORD.finditer(value):
        if m.group().lower() in words and not any(a <= m.start() < b for a, b in spans):
            spans.append(m.span())
    return sorted(spans)


def snippet(fields: Sequence[tuple[str, str]], text: str, words: Sequence[str]) -> Snippet:
    """(field, snippet, highlights) of the first of fields ((name, value), most telling first)
    that holds text or one of the query's words: up to SNIPPET_LENGTH characters of it from a
    little before the first match ('…' where cut), and the [start, end) character offsets of
    the matches in the snippet. No field matching: the first, without highlights."""
    wanted = {w.lower() for w in words}
    for name, value in fields:
        spans = _spans(value, text, wanted)
        if not spans:
            continue
        start = max(0, spans[0][0] - _BEFORE)
        end = min(len(value), start + SNIPPET_LENGTH)
        head = "…" if start > 0 else ""
        tail = "…" if end < len(value) else ""
        shift = len(head) - start
        marks = [(a + shift, min(b, end) + shift) for a, b in spans if a < end]
        return name, head + value[start:end] + tail, marks
    name, value = fields[0]
    return name, value[:SNIPPET_LENGTH] + ("…" if len(value) > SNIPPET_LENGTH else ""), []
