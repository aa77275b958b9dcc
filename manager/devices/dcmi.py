"""Ascend NPUs through DCMI (``libdcmi.so``, the Ascend driver's management library), as
Ascend's npu-exporter reads them: cards → chips, one device per chip (index: its logic id).

The structs mirror Huawei's published DCMI declarations (tests/workloads/devices/
dcmi_published_api.h cites them). Units there: power 0.1 W, memory MB, process memory bytes.
Runs only in the probe process (manager.devices.probe).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PATHS", "DcmiError", "DcmiSource"]

# where Ascend drivers install it; then the loader's own search
DEFAULT_PATHS = (
    Path("/usr/local/dcmi/libdcmi.so"),
    Path("/usr/local/Ascend/driver/lib64/driver/libdcmi.so"),
    Path("/usr/local/Ascend/driver/lib64/libdcmi.so"),
)
MB = 1 << 20
MAX_CARDS = 64
MAX_PROCS = 1024
AICORE = 2  # dcmi_get_device_utilization_rate input_type: AI Core
_HEALTH = {0: ("ok", None), 1: ("warning", "general alarm"), 2: ("warning", "important alarm")}
_HEALTH |= {3: ("critical", "urgent alarm")}


class DcmiError(Exception):
    pass


class _ChipInfo(ctypes.Structure):
    _fields_ = [
        ("chip_type", ctypes.c_ubyte * 32),
        ("chip_name", ctypes.c_ubyte * 32),
        ("chip_ver", ctypes.c_ubyte * 32),
        ("aicore_cnt", ctypes.c_uint),
    ]


class _PcieInfoAll(ctypes.Structure):
    _fields_ = [
        ("venderid", ctypes.c_uint),
        ("subvenderid", ctypes.c_uint),
        ("deviceid", ctypes.c_uint),
        ("subdeviceid", ctypes.c_uint),
        ("domain", ctypes.c_int),
        ("bdf_busid", ctypes.c_uint),
        ("bdf_deviceid", ctypes.c_uint),
        ("bdf_funcid", ctypes.c_uint),
        ("reserve", ctypes.c_ubyte * 32),
    ]


class _HbmInfo(ctypes.Structure):
    _fields_ = [
        ("memory_size", ctypes.c_ulonglong),
        ("freq", ctypes.c_uint),
        ("memory_usage", ctypes.c_ulonglong),
        ("temp", ctypes.c_int),
        ("bandwith_util_rate", ctypes.c_uint),
    ]


class _MemoryInfoV3(ctypes.Structure):
    _fields_ = [
        ("memory_size", ctypes.c_ulonglong),
        ("memory_available", ctypes.c_ulonglong),
        ("freq", ctypes.c_uint),
        ("hugepagesize", ctypes.c_ulong),
        ("hugepages_total", ctypes.c_ulong),
        ("hugepages_free", ctypes.c_ulong),
        ("utiliza", ctypes.c_uint),
        ("reserve", ctypes.c_ubyte * 60),
    ]


class _ProcMemInfo(ctypes.Structure):
    _fields_ = [("proc_id", ctypes.c_int), ("proc_mem_usage", ctypes.c_ulong)]


def _load(path: Path | None) -> tuple[ctypes.CDLL, str]:
    candidates: Sequence[str] = (
        (str(path),) if path is not None else (*map(str, DEFAULT_PATHS), "libdcmi.so")
    )
    for name in candidates:
        try:
            return ctypes.CDLL(name), name
        except OSError:
            continue
    raise DcmiError(f"libdcmi.so not found (no Ascend driver; looked in {', '.join(candidates)})")


def _cstr(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode(errors="replace")


class DcmiSource:
    """DCMI loaded and initialised once; sample() raises DcmiError where the library fails."""

    library = "dcmi"

    def __init__(self, path: Path | None = None) -> None:
        self.lib, self.path = _load(path)
        self._call("dcmi_init")

    def _call(self, name: str, *args: Any) -> None:
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            raise DcmiError(f"{name} failed: {rc}")

    def _try(self, name: str, *args: Any) -> bool:
        try:
            return int(getattr(self.lib, name)(*args)) == 0
        except AttributeError:  # an older driver without this call
            return False

    def chips(self) -> list[tuple[int, int]]:
        n = ctypes.c_int(0)
        cards = (ctypes.c_int * MAX_CARDS)()
        self._call("dcmi_get_card_num_list", ctypes.byref(n), cards, MAX_CARDS)
        out: list[tuple[int, int]] = []
        for card in cards[: max(0, min(n.value, MAX_CARDS))]:
            chips = ctypes.c_int(0)
            self._call("dcmi_get_device_num_in_card", card, ctypes.byref(chips))
            out.extend((card, chip) for chip in range(chips.value))
        return out

    def sample(self) -> list[dict[str, Any]]:
        return [self._device(card, chip) for card, chip in self.chips()]

    def _int(self, name: str, card: int, chip: int, ctype: Any = ctypes.c_int) -> int | None:
        v = ctype(0)
        return int(v.value) if self._try(name, card, chip, ctypes.byref(v)) else None

    def _device(self, card: int, chip: int) -> dict[str, Any]:
        lid = ctypes.c_int(0)
        has_lid = self._try("dcmi_get_device_logic_id", ctypes.byref(lid), card, chip)
        info = _ChipInfo()
        name = None
        if self._try("dcmi_get_device_chip_info", card, chip, ctypes.byref(info)):
            name = _cstr(info.chip_type) + _cstr(info.chip_name)
        pcie = _PcieInfoAll()
        bus_id = None
        if self._try("dcmi_get_device_pcie_info_v2", card, chip, ctypes.byref(pcie)):
            bus_id = f"{pcie.domain:04x}:{pcie.bdf_busid:02x}:{pcie.bdf_deviceid:02x}."
            bus_id += f"{pcie.bdf_funcid:x}"
        raw_health = self._int("dcmi_get_device_health", card, chip, ctypes.c_uint)
        health, detail = _HEALTH.get(raw_health, ("unknown", None))  # type: ignore[arg-type]
        if raw_health is not None and raw_health not in _HEALTH:
            detail = f"DCMI health {raw_health:#x}"
        power = self._int("dcmi_get_device_power_info", card, chip)
        util = ctypes.c_uint(0)
        has_util = self._try(
            "dcmi_get_device_utilization_rate", card, chip, AICORE, ctypes.byref(util)
        )
        mem = _MemoryInfoV3()
        has_mem = self._try("dcmi_get_device_memory_info_v3", card, chip, ctypes.byref(mem))
        hbm = _HbmInfo()
        has_hbm = self._try("dcmi_get_device_hbm_info", card, chip, ctypes.byref(hbm))
        return {
            "kind": "npu",
            "index": lid.value if has_lid else card * 16 + chip,
            "uuid": None,
            "name": name,
            "bus_id": bus_id,
            "health": health,
            "health_detail": detail,
            "power_w": None if power is None or power < 0 else power / 10,
            "temperature_c": self._int("dcmi_get_device_temperature", card, chip),
            "utilization_pct": util.value if has_util else None,
            "memory_utilization_pct": None,
            "memory_used_bytes": (mem.memory_size - mem.memory_available) * MB if has_mem else None,
            "memory_total_bytes": mem.memory_size * MB if has_mem else None,
            "hbm_used_bytes": hbm.memory_usage * MB if has_hbm else None,
            "hbm_total_bytes": hbm.memory_size * MB if has_hbm else None,
            "sm_clock_mhz": None,
            "pcie_tx_bytes_per_s": None,
            "pcie_rx_bytes_per_s": None,
            "xid_errors": None,
            "retired_pages": None,
            "processes": self._processes(card, chip),
        }

    def _processes(self, card: int, chip: int) -> list[dict[str, Any]]:
        procs = (_ProcMemInfo * MAX_PROCS)()
        n = ctypes.c_int(0)
        if not self._try("dcmi_get_device_resource_info", card, chip, procs, ctypes.byref(n)):
            return []
        return [
            {"pid": p.proc_id, "memory_bytes": int(p.proc_mem_usage)}
            for p in procs[: max(0, min(n.value, MAX_PROCS))]
            if p.proc_id > 0
        ]

    @staticmethod
    def describe(e: BaseException) -> str:
        return str(e) if isinstance(e, DcmiError) else f"DCMI: {e}"
