"""How full the database's volume is; new monitors are refused when it nearly is.

Measured on settings.database_data_dir (the file system holding the database's files, when
they are on this host: the embedded server's data dir) or, for a server elsewhere, as
pg_database_size against settings.database_volume_bytes. Neither set: not measured, and the
backend says so once at start (describe()).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from backend.errors import InsufficientStorage
from backend.repo import partitions
from backend.settings import Settings

__all__ = ["Fullness", "check_room", "describe", "fullness"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fullness:
    used_bytes: int
    total_bytes: int
    how: str  # what was measured

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes > 0 else 100.0


def describe(settings: Settings) -> str:
    """How the database volume is measured, for the log at start."""
    if settings.database_full_percent <= 0:
        return "database volume: not checked (XPUTRACE_DATABASE_FULL_PERCENT is 0)"
    if settings.database_data_dir is not None:
        return (
            f"database volume: the file system of {settings.database_data_dir}; new "
            f"monitors are refused at {settings.database_full_percent:g}% used"
        )
    if settings.database_volume_bytes > 0:
        return (
            f"database volume: pg_database_size against XPUTRACE_DATABASE_VOLUME_BYTES="
            f"{settings.database_volume_bytes}; new monitors are refused at "
            f"{settings.database_full_percent:g}% used"
        )
    return (
        "database volume: NOT checked: the database is not on this host and "
        "XPUTRACE_DATABASE_VOLUME_BYTES is not set (set it, or XPUTRACE_DATABASE_DATA_DIR "
        "where its files are mounted here), so new monitors are never refused for a full "
        "disk"
    )


async def fullness(settings: Settings, conn: AsyncConnection[Any]) -> Fullness | None:
    """How full the database volume is; None when it is not measured or cannot be."""
    if settings.database_data_dir is not None:
        path = settings.database_data_dir
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, path)
        except OSError as e:
            log.warning("database volume not measured: %s", e)
            return None
        return Fullness(usage.total - usage.free, usage.total, f"the file system of {path}")
    if settings.database_volume_bytes > 0:
        return Fullness(
            await partitions.database_size(conn),
            settings.database_volume_bytes,
            "the database's size against XPUTRACE_DATABASE_VOLUME_BYTES",
        )
    return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


async def check_room(settings: Settings, conn: AsyncConnection[Any]) -> None:
    """Raises InsufficientStorage (507) when the database volume is at or over
    settings.database_full_percent, saying how full and what to do."""
    limit = settings.database_full_percent
    if limit <= 0:
        return
    full = await fullness(settings, conn)
    if full is None or full.percent < limit:
        return
    keep = (
        f"XPUTRACE_RETENTION_DAYS={settings.retention_days}"
        if settings.retention_days
        else "XPUTRACE_RETENTION_DAYS (0: events are kept forever)"
    )
    raise InsufficientStorage(
        f"the database volume is {full.percent:.1f}% full ({_gb(full.used_bytes)} of "
        f"{_gb(full.total_bytes)}, {full.how}); no new monitor starts at or over "
        f"XPUTRACE_DATABASE_FULL_PERCENT={limit:g}. Make room: stop monitors that store "
        f"much, keep events for fewer days ({keep}, per type XPUTRACE_RETENTION_DAYS_<TYPE>; "
        f"old days are dropped every {settings.retention_interval_s:g} s), or grow the volume"
    )
