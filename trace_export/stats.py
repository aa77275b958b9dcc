"""What an export wrote, and the loop every writer runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from trace_export.events import EventChunk

__all__ = ["ExportStats", "write_all"]


@dataclass
class ExportStats:
    events: int = 0  # events read
    slices: int = 0  # slices written (calls; their copies on group rows; frames)
    flows: int = 0  # flow arrows (call -> queue)
    counter_points: int = 0
    bytes: int = 0  # bytes written (after compression)


class _Writer(Protocol):
    stats: ExportStats

    def add(self, chunk: EventChunk) -> None: ...

    def finish(self) -> None: ...


def write_all(w: _Writer, chunks: Iterable[EventChunk],
              progress: Callable[[int], None] | None) -> ExportStats:  # fmt: skip
    """Feeds every non-empty chunk to w, reporting the events consumed so far to progress
    after each chunk; then finishes w."""
    done = 0
    for chunk in chunks:
        if len(chunk):
            w.add(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done)
    w.finish()
    return w.stats
