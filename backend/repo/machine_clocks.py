"""Each machine's clock against the backend's (stub until the clock helper's lands)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

__all__ = ["MachineClock", "clocks"]


@dataclass(frozen=True)
class MachineClock:
    offset_ns: int  # added to a timestamp stamped on the machine: the backend's clock
    error_ns: int | None  # the bound of that correction; None: never measured


async def clocks(conn: AsyncConnection[Any], machine_ids: Sequence[str]) -> dict[str, MachineClock]:
    """The measured machines' clocks; absent: unmeasured."""
    return {}
