"""Trace files on disk and as downloads: where one lives, what it is called, its media type.

A trace is ``<traces_dir>/<trace_id>``: the path comes from the trace id alone, never from a
request or the database. The download name is the job's trace_name, sanitised, with the
suffix of its format: ``.pftrace`` (Perfetto protobuf), ``.json`` (Chrome JSON), plus
``.gz`` when gzipped.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from pathlib import Path

__all__ = ["content_disposition", "content_type", "download_name", "trace_path"]

_SUFFIX = {"perfetto": ".pftrace", "chrome": ".json"}
_TYPE = {"perfetto": "application/octet-stream", "chrome": "application/json"}
# Characters no file name should carry: controls, path separators, what Windows refuses.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._ ()+,=@-]")


def trace_path(traces_dir: Path, trace_id: uuid.UUID) -> Path:
    return traces_dir / str(trace_id)


def download_name(trace_name: str, fmt: str, gzip: bool) -> str:
    """``ollama gpu/1`` as perfetto, gzipped: ``ollama gpu_1.pftrace.gz``."""
    stem = _UNSAFE.sub("_", trace_name).strip(" .") or "trace"
    return stem[:200] + _SUFFIX[fmt] + (".gz" if gzip else "")


def content_type(fmt: str, gzip: bool) -> str:
    return "application/gzip" if gzip else _TYPE[fmt]


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and, when it differs, the UTF-8
    ``filename*`` of RFC 6266 (filename as download_name made it: no quotes, no controls)."""
    ascii_name = _NOT_ASCII_SAFE.sub("_", filename)
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        header += f"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"
    return header
