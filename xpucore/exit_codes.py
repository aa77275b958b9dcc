"""xputrace-agent's exit codes: ``enum agent_exit`` of ``include/exit_codes.h``, read with
cffi as xpucore.abi reads the event enums, so the manager keeps no copy of the numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import cffi

from xpucore.headers import HEADER_DIR

__all__ = ["AGENT_EXIT", "agent_exit_codes"]

_ENUM = re.compile(r"enum\s+agent_exit\s*\{.*?\}\s*;", re.S)


def agent_exit_codes(header_dir: Path = HEADER_DIR) -> dict[str, int]:
    """{member name (AGENT_OK, AGENT_INVALID_CONFIG, ...): exit status} of enum agent_exit."""
    m = _ENUM.search((header_dir / "exit_codes.h").read_text())
    if m is None:
        raise ValueError(f"no enum agent_exit in {header_dir / 'exit_codes.h'}")
    ffi = cffi.FFI()
    ffi.cdef(m.group(0))
    members: dict[str, int] = ffi.typeof("enum agent_exit").relements
    return dict(sorted(members.items(), key=lambda kv: kv[1]))


#: enum agent_exit of the package's headers.
AGENT_EXIT: Mapping[str, int] = MappingProxyType(agent_exit_codes())
