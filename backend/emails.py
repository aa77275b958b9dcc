# ruff: noqa: RUF001, RUF002 (the look-alike letters are the point)
"""E-mail addresses of accounts: one spelling each, and a skeleton to find look-alikes.

``normalise`` is what is stored and looked up: Unicode NFKC (full-width and compatibility
forms become their plain letters: ``ａｄａ`` is ``ada``), then lower case. ``skeleton`` goes
further, for comparison only: NFKC, case folded, and the Cyrillic and Greek letters (and the
digits) that look like Latin ones replaced by those (after UTS #39's confusables, for the
homoglyphs a Latin address is usually forged with). An account whose skeleton equals a new
address's makes the new one a look-alike: ``аdmin@example.com`` with a Cyrillic ``а``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["normalise", "skeleton"]

# Lower-case (case-folded) look-alikes -> the Latin letter they pass for.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "с": "c",
        "ԁ": "d",
        "е": "e",
        "ё": "e",
        "һ": "h",
        "н": "h",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "к": "k",
        "ӏ": "l",
        "м": "m",
        "п": "n",
        "о": "o",
        "р": "p",
        "ԛ": "q",
        "г": "r",
        "ѕ": "s",
        "т": "t",
        "ц": "u",
        "ѵ": "v",
        "ԝ": "w",
        "х": "x",
        "у": "y",
        "ү": "y",
        "з": "3",
        "ь": "b",
        # Greek
        "α": "a",
        "β": "b",
        "ϲ": "c",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "ϳ": "j",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "γ": "y",
        "ζ": "z",
        "μ": "u",
        "ω": "w",
        "σ": "o",
        # Latin and digits that pass for other Latin letters
        "ı": "i",
        "ɡ": "g",
        "ɑ": "a",
        "0": "o",
        "1": "l",
        "|": "l",
        "!": "l",
    }
)
# Two letters that pass for one (after the table above): "rn" reads as "m", "vv" as "w".
_PAIRS = (("rn", "m"), ("vv", "w"))


def normalise(email: str) -> str:
    """The stored spelling of an address: NFKC, lower case."""
    return unicodedata.normalize("NFKC", email).lower()


def skeleton(email: str) -> str:
    """What an address looks like: two addresses with one skeleton are look-alikes."""
    out = unicodedata.normalize("NFKC", email).casefold().translate(_CONFUSABLES)
    for pair, one in _PAIRS:
        out = out.replace(pair, one)
    return out
