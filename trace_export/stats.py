"""What an export wrote."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExportStats"]


@dataclass
class ExportStats:
    events: int = 0  # events read
    slices: int = 0  # call slices written
    flows: int = 0  # flow arrows (call -> queue)
    counter_points: int = 0
    bytes: int = 0  # bytes written (after compression)
