"""Accelerators on the control channel: what a manager samples of its machine's devices (issue
#15), checked field by field.

Manager → backend event ``DEVICE_METRICS``, every ``--device-interval`` seconds::

    {"event": "DEVICE_METRICS", "machine_id", "time", "sampled_at": Unix ms,
     "devices": [device...], "errors": [{"library": "nvml" | "dcmi", "message"}]}

A device (None where its library does not say)::

    {"kind": "gpu" | "npu", "index", "uuid", "name", "bus_id",
     "health": "ok" | "warning" | "critical" | "unknown", "health_detail",
     "power_w", "temperature_c", "utilization_pct" (GPU: SM busy; NPU: AI Core),
     "memory_utilization_pct" (GPU: memory copy engine busy), "memory_used_bytes",
     "memory_total_bytes", "hbm_used_bytes", "hbm_total_bytes", "sm_clock_mhz",
     "pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s", "xid_errors", "retired_pages",
     "processes": [{"pid", "memory_bytes"}]}

Field meanings follow dcgm-exporter's DCGM_FI_DEV_* and npu-exporter's npu_chip_info_*
(the backend's InfluxDB field names, backend docs). ``errors`` says once per sample which
library failed (not loadable, timed out, crashed): a machine with neither library sends no
devices and says so there. ``check_device_metrics`` raises ``WireError`` naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from xpucore.job_wire import WireError

__all__ = [
    "DEVICE_FLOATS",
    "DEVICE_INTS",
    "HEALTH",
    "KINDS",
    "LIBRARIES",
    "MAX_DEVICES",
    "MAX_PROCESSES",
    "check_device_metrics",
]

KINDS = ("gpu", "npu")
HEALTH = ("ok", "warning", "critical", "unknown")
LIBRARIES = ("nvml", "dcmi")
MAX_DEVICES = 256
MAX_PROCESSES = 1024  # per device
_TEXT = {"uuid": 96, "name": 128, "bus_id": 64, "health_detail": 1024}
#: field: (lowest, highest)
DEVICE_FLOATS = {
    "power_w": (0.0, 1e5),
    "temperature_c": (-273.0, 1000.0),
    "utilization_pct": (0.0, 100.0),
    "memory_utilization_pct": (0.0, 100.0),
}
DEVICE_INTS = {
    "memory_used_bytes": (0, 2**53),
    "memory_total_bytes": (0, 2**53),
    "hbm_used_bytes": (0, 2**53),
    "hbm_total_bytes": (0, 2**53),
    "sm_clock_mhz": (0, 10**6),
    "pcie_tx_bytes_per_s": (0, 2**53),
    "pcie_rx_bytes_per_s": (0, 2**53),
    "xid_errors": (0, 2**53),
    "retired_pages": (0, 2**53),
}


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise WireError(f"{name}: must be an integer in [{lo}, {hi}]")
    return v


def _float(v: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise WireError(f"{name}: must be a number")
    f = float(v)
    if not math.isfinite(f) or not lo <= f <= hi:
        raise WireError(f"{name}: must be a number in [{lo}, {hi}]")
    return f


def _text(v: Any, name: str, limit: int) -> str:
    if not isinstance(v, str) or len(v) > limit or "\0" in v:
        raise WireError(f"{name}: must be a string of at most {limit} characters, no NUL")
    return v


def _one_of(v: Any, name: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise WireError(f"{name}: must be one of {', '.join(allowed)}")
    return str(v)


def _device(d: Any, name: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise WireError(f"{name}: must be an object")
    out: dict[str, Any] = {
        "kind": _one_of(d.get("kind"), f"{name}.kind", KINDS),
        "index": _int(d.get("index"), f"{name}.index", 0, 4095),
        "health": _one_of(d.get("health", "unknown"), f"{name}.health", HEALTH),
    }
    for k, limit in _TEXT.items():
        out[k] = None if d.get(k) is None else _text(d[k], f"{name}.{k}", limit)
    for k, (lo, hi) in DEVICE_FLOATS.items():
        out[k] = None if d.get(k) is None else _float(d[k], f"{name}.{k}", lo, hi)
    for k, (lo, hi) in DEVICE_INTS.items():
        out[k] = None if d.get(k) is None else _int(d[k], f"{name}.{k}", lo, hi)
    procs = d.get("processes") or []
    if not isinstance(procs, list) or len(procs) > MAX_PROCESSES:
        raise WireError(f"{name}.processes: must be a list of at most {MAX_PROCESSES}")
    out["processes"] = []
    for i, p in enumerate(procs):
        where = f"{name}.processes[{i}]"
        if not isinstance(p, dict):
            raise WireError(f"{where}: must be an object")
        mem = p.get("memory_bytes")
        out["processes"].append(
            {
                "pid": _int(p.get("pid"), f"{where}.pid", 1, 1 << 22),
                "memory_bytes": None
                if mem is None
                else _int(mem, f"{where}.memory_bytes", 0, 2**53),
            }
        )
    return out


def check_device_metrics(msg: Any) -> dict[str, Any]:
    """A DEVICE_METRICS message's content, checked: {"sampled_at", "devices", "errors"}.
    Unknown fields are dropped; two devices of one kind and index are refused."""
    if not isinstance(msg, dict):
        raise WireError("message: must be an object")
    sampled = _int(msg.get("sampled_at"), "sampled_at", 0, 2**53)
    devices = msg.get("devices") or []
    if not isinstance(devices, list) or len(devices) > MAX_DEVICES:
        raise WireError(f"devices: must be a list of at most {MAX_DEVICES}")
    checked = [_device(d, f"devices[{i}]") for i, d in enumerate(devices)]
    keys = [(d["kind"], d["index"]) for d in checked]
    if len(set(keys)) != len(keys):
        raise WireError("devices: a device (kind, index) is listed twice")
    errors = msg.get("errors") or []
    if not isinstance(errors, list) or len(errors) > len(LIBRARIES):
        raise WireError(f"errors: must be a list of at most {len(LIBRARIES)}")
    out_errors = [
        {
            "library": _one_of(
                e.get("library") if isinstance(e, dict) else None, f"errors[{i}].library", LIBRARIES
            ),
            "message": _text(e.get("message"), f"errors[{i}].message", 1024),
        }
        for i, e in enumerate(errors)
    ]
    return {"sampled_at": sampled, "devices": checked, "errors": out_errors}
