"""xpucore.probes against the headers: every argument class a schema names is one of its
header's, every argument has an event field, and what the kinds resolve to."""

from __future__ import annotations

import pytest

from xpucore import abi, calls
from xpucore.probes import PROBES


@pytest.mark.parametrize("monitor_type", sorted(PROBES))
def test_schema_names_only_header_classes_and_fields(monitor_type: str) -> None:
    p = PROBES[monitor_type]
    headers = abi.Abi()
    header = set(headers.enum(f"{monitor_type.lower()}_arg_class", f"{monitor_type}_ARGS_"))
    named = set(p.args) | p.copies | p.allocates | p.frees | p.submits | p.grouped
    assert named <= header
    if monitor_type in ("CUDA", "ACL"):
        assert set(p.args) == header  # every class has its arguments named
    fields = set(headers.event_dtype(monitor_type).names or ())
    columns = p.columns()
    for cls in header:
        for a in (*p.call_args(cls), *p.every_call):
            cols = [f"{a}_{x}" for x in "xyz"] if a in p.dim3 else [a]
            assert all(columns[c] in fields for c in cols), (cls, a)
    assert p.text <= set(p.fields)
    assert all(n in abi.function_names(monitor_type).values() for n in p.host_memory)


def test_kinds_resolve_to_functions() -> None:
    assert calls.functions("CUDA", "alloc") >= {
        "cudaMalloc",
        "cudaMallocAsync",
        "cudaMallocManaged",
        "cuMemAlloc_v2",
    }
    assert "cudaFree" in calls.functions("CUDA", "free")
    assert "ncclAllReduce" in calls.functions("CUDA", "grouped")
    assert "ncclAllReduce" in calls.functions("CUDA", "submit")
    assert calls.functions("SYSCALL", "alloc") == frozenset()
    # an aclnn launch is named by its op: of the kind of the one aclnn function
    assert calls.is_kind("ACL", "submit", "aclnnAdd")
    assert not calls.is_kind("PYTHON", "submit", "sample")
    assert calls.lookup("CUDA", "copy")[abi.function_of("cudaMemcpy", "CUDA")]
