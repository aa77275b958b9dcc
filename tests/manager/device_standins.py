"""The device library stand-ins (tests/workloads/devices): where they are built, how a test
steers them, and the values they report, computed here as their C code does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MIB = 1 << 20
GPUS = 4
NPUS = 8
NVML_STATE = "XPUTRACE_NVML_STANDIN_STATE"
DCMI_STATE = "XPUTRACE_DCMI_STANDIN_STATE"


def libraries(build_dir: Path) -> tuple[Path, Path]:
    """(the folder holding libnvidia-ml.so.1, the path of libdcmi.so)."""
    root = build_dir / "tests/workloads/devices"
    nvml, dcmi = root / "nvml", root / "dcmi/libdcmi.so"
    assert (nvml / "libnvidia-ml.so.1").exists() and dcmi.exists(), f"stand-ins not in {root}"
    return nvml, dcmi


def probe_env(nvml_dir: Path | None, nvml_state: Path, dcmi_state: Path) -> dict[str, str]:
    """This process's environment with the NVML stand-in first on the loader's path (or, with
    nvml_dir None, none) and both stand-ins reading their state files."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    if nvml_dir is not None:
        env["LD_LIBRARY_PATH"] = str(nvml_dir)
    env[NVML_STATE] = str(nvml_state)
    env[DCMI_STATE] = str(dcmi_state)
    return env


def gpu(i: int, g: int, pid0: int | None = None) -> dict[str, Any]:
    """GPU i at generation g; pid0: the pid the state file names for GPU 0's compute
    process (the state "g pid0")."""
    pid = pid0 if i == 0 and pid0 else 1000 + i
    procs = [{"pid": pid, "memory_bytes": (256 + i) * MIB}]
    if i == 0:
        procs.append({"pid": 2000, "memory_bytes": 64 * MIB})
    return {
        "kind": "gpu",
        "index": i,
        "uuid": f"GPU-5a1d0000-0000-4000-8000-{i:012d}",
        "name": f"NVIDIA Stand-in GPU {i}",
        "bus_id": f"00000000:{0x10 + i:02X}:00.0",
        "health": "warning" if i == 3 else "ok",
        "health_detail": "1 uncorrected ECC error(s) since the driver loaded" if i == 3 else None,
        "power_w": (100000 + 1000 * i + 10 * g) / 1000,
        "temperature_c": 40 + i + g % 10,
        "utilization_pct": (10 * i + g) % 101,
        "memory_utilization_pct": (5 * i + 2 * g) % 101,
        "memory_used_bytes": (1024 * (i + 1) + g) * MIB,
        "memory_total_bytes": 80 * 1024 * MIB,
        "hbm_used_bytes": None,
        "hbm_total_bytes": None,
        "sm_clock_mhz": 1000 + 10 * i + g,
        "pcie_tx_bytes_per_s": (1000 * (i + 1) + g) * 1024,
        "pcie_rx_bytes_per_s": (2000 * (i + 1) + g) * 1024,
        "xid_errors": None,
        "retired_pages": i,
        "processes": sorted(procs, key=lambda p: p["pid"]),
    }


def npu(i: int, g: int) -> dict[str, Any]:
    health = {5: ("warning", "general alarm"), 7: ("critical", "urgent alarm")}
    return {
        "kind": "npu",
        "index": i,
        "uuid": None,
        "name": "Ascend910B3",
        "bus_id": f"0000:{0x80 + i:02x}:00.0",
        "health": health.get(i, ("ok", None))[0],
        "health_detail": health.get(i, ("ok", None))[1],
        "power_w": (3000 + 10 * i + g) / 10,
        "temperature_c": 50 + i + g % 5,
        "utilization_pct": (7 * i + g) % 101,
        "memory_utilization_pct": None,
        "memory_used_bytes": (1024 * (i + 1) + g) * MIB,
        "memory_total_bytes": 32768 * MIB,
        "hbm_used_bytes": (2048 * (i + 1) + g) * MIB,
        "hbm_total_bytes": 65536 * MIB,
        "sm_clock_mhz": None,
        "pcie_tx_bytes_per_s": None,
        "pcie_rx_bytes_per_s": None,
        "xid_errors": None,
        "retired_pages": None,
        "processes": [{"pid": 3000 + i, "memory_bytes": (128 + i) * MIB}],
    }


def expected(g: int, pid0: int | None = None) -> list[dict[str, Any]]:
    """Every device of both stand-ins at generation g, in the order the probe lists them."""
    return [gpu(i, g, pid0) for i in range(GPUS)] + [npu(i, g) for i in range(NPUS)]
