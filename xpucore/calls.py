"""Each probe's functions by what they do, from its schema (xpucore.probes) and the function
ids of its header (xpucore.abi): the one answer to "does this call copy, allocate or free
device memory, submit to a queue, belong to a group?" for aggregates and traces alike."""

from __future__ import annotations

from functools import cache

import numpy as np

from xpucore import abi
from xpucore.probes import PROBES, probe_for

__all__ = ["KINDS", "event_class", "functions", "is_kind", "lookup"]

#: What a function may do: copy memory, allocate or free device memory, enqueue work on a
#: queue (submit), belong to a group (grouped: a collective on its communicator).
KINDS = ("copy", "alloc", "free", "submit", "grouped")


@cache
def event_class(monitor_type: str, event_type: str) -> str:
    """The argument class of an event type ("" when unknown): its function's."""
    fid = abi.function_of(event_type, monitor_type)
    return abi.arg_class(fid, monitor_type) if fid is not None else ""


def _is(monitor_type: str, kind: str, fid: int, name: str) -> bool:
    p = probe_for(monitor_type)
    cls = abi.arg_class(fid, monitor_type)
    if kind in ("alloc", "free"):
        return p.memory_kind(cls, name) == kind
    classes = {"copy": p.copies, "submit": p.submits, "grouped": p.grouped}[kind]
    return cls in classes


@cache
def _ids(monitor_type: str, kind: str) -> dict[int, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {KINDS}")
    p = probe_for(monitor_type)
    if not (p.copies or p.allocates or p.frees or p.submits or p.grouped):
        return {}
    return {fid: name for fid, name in abi.function_names(monitor_type).items()
            if _is(monitor_type, kind, fid, name)}  # fmt: skip


@cache
def is_kind(monitor_type: str, kind: str, event_type: str) -> bool:
    """Whether an event type (abi.event_type: "aclnnAdd" is ACL's aclnn) is of a kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {KINDS}")
    if monitor_type not in PROBES:
        return False
    fid = abi.function_of(event_type, monitor_type)
    return fid is not None and _is(monitor_type, kind, fid, abi.function_name(fid, monitor_type))


def functions(monitor_type: str, kind: str) -> frozenset[str]:
    """The names of the monitor type's functions of a kind (KINDS)."""
    return frozenset(_ids(monitor_type, kind).values())


@cache
def lookup(monitor_type: str, kind: str) -> np.ndarray:
    """Boolean table over the 16-bit function ids: those of a kind (read-only)."""
    lut = np.zeros(1 << 16, dtype=bool)
    lut[list(_ids(monitor_type, kind))] = True
    lut.flags.writeable = False
    return lut
