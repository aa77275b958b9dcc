"""Perfetto's own trace processor on our traces: the cross-check the validator cannot make
by itself (that the UI's importer reads what we meant to write).

The WebAssembly build runs under Node (``trace_processor.cjs`` next to this file); its assets
are fetched by ``scripts/fetch-trace-processor`` into ``build/trace_processor`` (or the folder
named by ``XPUTRACE_TRACE_PROCESSOR_WASM``). ``make test`` fetches them and sets
``XPUTRACE_REQUIRE_TRACE_PROCESSOR=1``, so the cross-checks cannot be skipped there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ASSETS_ENV", "REQUIRE_ENV", "TraceCounts", "assets", "counts", "query"]

ASSETS_ENV = "XPUTRACE_TRACE_PROCESSOR_WASM"
REQUIRE_ENV = "XPUTRACE_REQUIRE_TRACE_PROCESSOR"
_RUNNER = Path(__file__).with_name("trace_processor.cjs")
_DEFAULT = Path(__file__).resolve().parents[2] / "build" / "trace_processor"


def assets() -> Path | None:
    """The folder of the WebAssembly trace processor, None when it or Node is missing."""
    folder = Path(os.environ.get(ASSETS_ENV) or _DEFAULT)
    if not (folder / "trace_processor.wasm").is_file() or shutil.which("node") is None:
        return None
    return folder


def query(
    path: str | os.PathLike[str], *sql: str, folder: Path | None = None, timeout: float = 600.0
) -> list[list[list[Any]]]:
    """The rows of each query over the trace at path. Raises RuntimeError naming what failed
    (the trace did not load, a query did not run) and FileNotFoundError without assets."""
    folder = folder or assets()
    if folder is None:
        raise FileNotFoundError(
            f"no trace processor: run scripts/fetch-trace-processor "
            f"build/trace_processor, or set {ASSETS_ENV}"
        )
    done = subprocess.run(["node", str(_RUNNER), os.fspath(path), *sql], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, "TP_ASSETS": str(folder)})  # fmt: skip
    if done.returncode not in (0, 1):
        raise RuntimeError(
            f"trace processor exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    out = json.loads(done.stdout)
    failed = [f"{r['sql']}: {r['error']}" for r in out["results"] if r["error"]]
    if failed:
        raise RuntimeError("trace processor: " + "; ".join(failed))
    return [r["rows"] for r in out["results"]]


@dataclass(frozen=True)
class TraceCounts:
    slices: int  # rows of the slice table: complete slices and instants
    instants: int  # of which zero-duration (instants)
    flows: int
    counter_values: int
    thread_tracks: int  # threads with at least one slice


def counts(path: str | os.PathLike[str], folder: Path | None = None) -> TraceCounts:
    rows = query(path,
                 "select count(*) from slice",
                 "select count(*) from slice where dur = 0",
                 "select count(*) from flow",
                 "select count(*) from counter",
                 "select count(distinct utid) from thread_track join slice"
                 " on slice.track_id = thread_track.id",
                 folder=folder)  # fmt: skip
    return TraceCounts(*(int(r[0][0]) for r in rows))
