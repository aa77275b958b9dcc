"""Device memory held: the one ledger Grafana's aggregates (backend.aggregates), the metrics
summary and the traces (trace_export) all count with.

Per process (a key the caller chooses) and device, what the process holds is the sum of the
sizes of its live allocations. A successful allocation (returned 0, completed, non-null
pointer) makes its pointer live with its size, on the device the call ran on; allocating a
pointer that is already live replaces the old entry (the old size leaves, on its own
device). A free takes its pointer out, on the device it was allocated on, whatever the free
returned; a free of a pointer the ledger never saw live changes nothing. Failed or
incomplete allocations count nothing. Calls are applied in start-time order.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from xpucore.abi import EV_INCOMPLETE

__all__ = ["MemoryLedger", "ledger_rows"]


def ledger_rows(alloc: np.ndarray, free: np.ndarray, ret: np.ndarray, flags: np.ndarray,
                ts: np.ndarray) -> np.ndarray:  # fmt: skip
    """The rows of calls the ledger takes (successful, completed allocations and every
    free), in start-time order (ts; ties in row order)."""
    ok = (ret == 0) & ((flags & EV_INCOMPLETE) == 0)
    rows = np.flatnonzero((alloc & ok) | free)
    return rows[np.argsort(ts[rows], kind="stable")]


class MemoryLedger:
    """Live allocations {ptr: (size, device)} per process key, and the bytes held per
    (key, device)."""

    def __init__(self) -> None:
        self.live: dict[Hashable, dict[int, tuple[int, int]]] = {}
        self.held: dict[tuple[Hashable, int], int] = {}

    def apply(self, key: Hashable, alloc: bool, ptr: int, size: int,
              device: int = 0) -> list[tuple[int, int]]:  # fmt: skip
        """Applies a successful allocation (alloc) or a free; (device, bytes held on it
        after) for each device whose total changed: none for a free of an unknown pointer,
        a null pointer, or a pointer allocated again at the same size and device."""
        if alloc and not ptr:
            return []
        live = self.live.setdefault(key, {})
        delta: dict[int, int] = {}
        old = live.pop(ptr, None)
        if old is not None:
            delta[old[1]] = -old[0]
        if alloc:
            live[ptr] = (size, device)
            delta[device] = delta.get(device, 0) + size
        out = []
        for dev, d in delta.items():
            if d:
                held = self.held[(key, dev)] = self.held.get((key, dev), 0) + d
                out.append((dev, held))
        return out
