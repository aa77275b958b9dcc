"""The PYTHON probe (include/python.h): stack samples, garbage collections and calls of the
interpreter. A sample or call names the stack it caught (XPU_BATCH_STACKS batches carry the
stacks); a garbage collection its generation and what it collected, then the stack that ran
it."""

from __future__ import annotations

from xpucore.probes.schema import Probe

__all__ = ["PROBE"]

PROBE = Probe(
    monitor_type="PYTHON",
    fields={a: a for a in ("generation", "collected", "py_stack")},
    args={"GC": ("generation", "collected")},
    every_call=("py_stack",),
)
