"""What every resource's JSON view shares."""

from __future__ import annotations

from typing import Any

__all__ = ["iso"]


def iso(t: Any) -> str | None:
    """A stored timestamp as ISO 8601 (with its offset), or None."""
    return t.isoformat() if t is not None else None
