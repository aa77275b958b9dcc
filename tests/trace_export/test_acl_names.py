"""xpucore.probes.acl_names against the CANN headers of the torch-npu wheel, as the build
fetches them (tests/workloads/ascend/fetch-cann-headers into <build>/.../cann-include)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from xpucore.probes import acl_names
from xpucore.probes.acl_names import policy_name, ret_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def include() -> Path:
    build = Path(os.environ.get("XPUTRACE_BUILD_DIR", ROOT / "build"))
    folder = build / "tests" / "workloads" / "ascend" / "cann-include" / "third_party"
    if not (folder / "hccl" / "inc" / "hccl" / "hccl_types.h").is_file():
        pytest.skip(f"no CANN headers in {folder} (the build fetches them)")
    return folder


def header_enum(path: Path, name: str) -> dict[int, str]:
    """{value: first name} of ``typedef enum [tag] {...} name;`` (values count up from the
    last one given, as in C)."""
    m = re.search(r"\{([^{}]*)\}\s*" + name + r"\s*;", path.read_text())
    assert m, f"enum {name} not in {path}"
    body = re.sub(r"//[^\n]*|#[^\n]*", "", re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S))
    out: dict[int, str] = {}
    value = 0
    for item in filter(None, (i.strip() for i in body.split(","))):
        key, _, given = item.partition("=")
        value = int(given.strip(), 0) if given.strip() else value
        out.setdefault(value, key.strip())
        value += 1
    return out


def test_acl_errors_match_the_headers(include: Path) -> None:
    acl = include / "acl" / "inc" / "acl"
    want = {0: "ACL_SUCCESS"}
    for name, pattern in (
        ("acl_base_rt.h", r"static const int (ACL_ERROR_\w+) = (\d+);"),
        ("error_codes/ge_error_codes.h", r"static const uint32_t (ACL_ERROR_\w+) = (\d+)U;"),
        ("error_codes/rt_error_codes.h", r"#define\s+(ACL_ERROR_\w+)\s+(\d+)"),
    ):
        for m in re.finditer(pattern, (acl / name).read_text()):
            want.setdefault(int(m[2]), m[1])
    assert want == acl_names.ACL_ERRORS
    assert len(want) > 200


@pytest.mark.parametrize(
    ("table", "header", "enum"),
    [
        ("HCCL_RESULTS", "hccl/inc/hccl/hccl_types.h", "HcclResult"),
        ("DATA_TYPES", "hccl/inc/hccl/hccl_types.h", "HcclDataType"),
        ("REDUCE_OPS", "hccl/inc/hccl/hccl_types.h", "HcclReduceOp"),
        ("MEMCPY_KINDS", "acl/inc/acl/acl_rt.h", "aclrtMemcpyKind"),
        ("MALLOC_POLICIES", "acl/inc/acl/acl_rt.h", "aclrtMemMallocPolicy"),
        ("ENGINE_TYPES", "acl/inc/acl/acl_op.h", "aclopEngineType"),
        ("COMPILE_TYPES", "acl/inc/acl/acl_op_compiler.h", "aclopCompileType"),
    ],
)
def test_enum_tables_match_the_headers(include: Path, table: str, header: str,
                                       enum: str) -> None:  # fmt: skip
    assert getattr(acl_names, table) == header_enum(include / header, enum)


def test_names() -> None:
    assert ret_name("aclrtMalloc", 0) == "ACL_SUCCESS (0)"
    assert ret_name("aclrtSetDevice", 100000) == "ACL_ERROR_INVALID_PARAM (100000)"
    assert ret_name("aclrtMemcpy", 107002) == "ACL_ERROR_RT_CONTEXT_NULL (107002)"
    assert ret_name("aclmdlExecute", 145003) == "ACL_ERROR_GE_EXEC_MODEL_ID_INVALID (145003)"
    assert ret_name("HcclAllReduce", 9) == "HCCL_E_TIMEOUT (9)"
    assert ret_name("aclnnAdd", 161002) == "ACLNN_ERR_PARAM_INVALID (161002)"
    assert ret_name("aclrtFree", 424242) == "424242"
    assert policy_name(2) == "ACL_MEM_MALLOC_NORMAL_ONLY"
    assert policy_name(0x1001) == "ACL_MEM_MALLOC_HUGE_ONLY | ACL_MEM_TYPE_HIGH_BAND_WIDTH"
    assert policy_name(0x20_0000) == "ACL_MEM_MALLOC_HUGE_FIRST | 0x200000"
