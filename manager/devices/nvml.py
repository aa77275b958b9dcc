"""NVIDIA GPUs through NVML, with NVIDIA's binding (nvidia-ml-py, module ``pynvml``).

pynvml dlopens ``libnvidia-ml.so.1`` by its soname, so the dynamic loader's search
(LD_LIBRARY_PATH, ld.so.cache) finds the driver's library, or a stand-in placed first on
LD_LIBRARY_PATH. Runs only in the probe process (manager.devices.probe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pynvml

__all__ = ["NvmlSource"]

T = TypeVar("T")
KIB = 1024


def _get(fn: Callable[..., T], *args: Any) -> T | None:
    """fn(*args), or None where this GPU or driver does not support it."""
    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def _text(v: str | bytes | None) -> str | None:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def _processes(handle: Any) -> list[dict[str, Any]]:
    """Compute and graphics processes, one entry per pid, their device memory summed."""
    found: dict[int, int | None] = {}
    for fn in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        for p in _get(fn, handle) or []:
            if p.pid <= 0:
                continue
            mem = p.usedGpuMemory  # None where the driver cannot say (WDDM)
            if p.pid in found and found[p.pid] is not None and mem is not None:
                found[p.pid] = (found[p.pid] or 0) + mem
            else:
                found[p.pid] = found.get(p.pid) if mem is None else mem
    return [{"pid": pid, "memory_bytes": mem} for pid, mem in sorted(found.items())]


def _retired_pages(handle: Any) -> int | None:
    counts = [
        _get(pynvml.nvmlDeviceGetRetiredPages, handle, cause)
        for cause in (
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
        )
    ]
    known = [len(c) for c in counts if c is not None]
    return sum(known) if known else None


def _health(handle: Any) -> tuple[str, str | None]:
    """ok, or warning with the uncorrected ECC errors since the driver loaded (DCGM's
    DCGM_FI_DEV_ECC_DBE_VOL_TOTAL); unknown where ECC cannot be read."""
    ecc = _get(
        pynvml.nvmlDeviceGetTotalEccErrors,
        handle,
        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        pynvml.NVML_VOLATILE_ECC,
    )
    if ecc is None:
        return "unknown", "ECC error counts not supported"
    if ecc > 0:
        return "warning", f"{ecc} uncorrected ECC error(s) since the driver loaded"
    return "ok", None


def _device(index: int) -> dict[str, Any]:
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    pci = _get(pynvml.nvmlDeviceGetPciInfo, h)
    power_mw = _get(pynvml.nvmlDeviceGetPowerUsage, h)
    util = _get(pynvml.nvmlDeviceGetUtilizationRates, h)
    mem = _get(pynvml.nvmlDeviceGetMemoryInfo, h)
    tx = _get(pynvml.nvmlDeviceGetPcieThroughput, h, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    rx = _get(pynvml.nvmlDeviceGetPcieThroughput, h, pynvml.NVML_PCIE_UTIL_RX_BYTES)
    health, detail = _health(h)
    return {
        "kind": "gpu",
        "index": index,
        "uuid": _text(_get(pynvml.nvmlDeviceGetUUID, h)),
        "name": _text(_get(pynvml.nvmlDeviceGetName, h)),
        "bus_id": _text(pci.busId) if pci is not None else None,
        "health": health,
        "health_detail": detail,
        "power_w": None if power_mw is None else power_mw / 1000,
        "temperature_c": _get(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
        "utilization_pct": None if util is None else util.gpu,
        "memory_utilization_pct": None if util is None else util.memory,
        "memory_used_bytes": None if mem is None else mem.used,
        "memory_total_bytes": None if mem is None else mem.total,
        "hbm_used_bytes": None,
        "hbm_total_bytes": None,
        "sm_clock_mhz": _get(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
        "pcie_tx_bytes_per_s": None if tx is None else tx * KIB,
        "pcie_rx_bytes_per_s": None if rx is None else rx * KIB,
        "xid_errors": None,  # XID events need an event set polled between samples: not yet
        "retired_pages": _retired_pages(h),
        "processes": _processes(h),
    }


class NvmlSource:
    """NVML initialised once; sample() raises pynvml.NVMLError where the library fails."""

    library = "nvml"

    def __init__(self) -> None:
        pynvml.nvmlInit()

    def sample(self) -> list[dict[str, Any]]:
        return [_device(i) for i in range(pynvml.nvmlDeviceGetCount())]

    @staticmethod
    def describe(e: BaseException) -> str:
        if isinstance(e, pynvml.NVMLError_LibraryNotFound):
            return "libnvidia-ml.so.1 not found (no NVIDIA driver)"
        return f"NVML: {e}"
