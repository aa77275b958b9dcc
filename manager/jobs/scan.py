"""The processes running now, from one pass over /proc: where discovery starts."""

from __future__ import annotations

import os
from pathlib import Path

from manager.jobs.procfs import Stat, parse_stat

__all__ = ["scan"]


def scan(proc_root: Path = Path("/proc")) -> list[Stat]:
    """Stat of every process (not thread) in proc_root; those that exit meanwhile are left out."""
    out: list[Stat] = []
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            with open(proc_root / name / "stat", "rb") as f:
                out.append(parse_stat(f.read()))
        except (OSError, ValueError, IndexError):
            continue
    return out
