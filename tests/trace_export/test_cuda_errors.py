"""xpucore.probes.cuda_errors against the CUDA 12.9 headers of the nvidia-cuda-runtime-cu12
wheel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xpucore.probes.cuda_errors import DRIVER, NCCL, RUNTIME, error_name


def header_enum(path: Path, name: str) -> dict[int, str]:
    """{value: first name} of a C enum in a header."""
    text = path.read_text()
    m = re.search(r"enum\s+(?:__device_builtin__\s+)?" + name + r"\s*\{(.*?)\}", text, re.S)
    assert m, f"enum {name} not in {path}"
    body = re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S))
    out: dict[int, str] = {}
    for item in filter(None, (i.strip() for i in body.split(","))):
        key, _, value = item.partition("=")
        out.setdefault(int(value.strip(), 0), key.strip())
    return out


@pytest.fixture(scope="module")
def include() -> Path:
    nvidia = pytest.importorskip("nvidia.cuda_runtime")
    return Path(next(iter(nvidia.__path__))) / "include"


def test_runtime_table_matches_driver_types_h(include: Path) -> None:
    assert header_enum(include / "driver_types.h", "cudaError") == RUNTIME


def test_driver_table_matches_cuda_h(include: Path) -> None:
    assert header_enum(include / "cuda.h", "cudaError_enum") == DRIVER


def test_nccl_table_matches_nccl_h() -> None:
    nccl = pytest.importorskip("nvidia.nccl")
    text = (Path(next(iter(nccl.__path__))) / "include/nccl.h").read_text()
    m = re.search(r"typedef enum \{(.*?)\} ncclResult_t;", text, re.S)
    assert m
    items = [i.split("=") for i in m.group(1).split(",")]
    assert {int(v): k.strip() for k, v in items if k.strip() != "ncclNumResults"} == NCCL


def test_names() -> None:
    assert error_name("ncclAllReduce", 4) == "ncclInvalidArgument (4)"
    assert error_name("cudaMemcpy", 35) == "cudaErrorInsufficientDriver (35)"
    assert error_name("cuMemAlloc_v2", 100) == "CUDA_ERROR_NO_DEVICE (100)"
    assert error_name("cudaLaunchKernel", 987654) == "987654"
