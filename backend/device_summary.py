"""The metrics summary's accelerator metrics (GET /api/v1/metrics/summary, seeds/003 section 5),
from each matched device's samples in the range (backend.device_history.per_device).

=====================  ====  ======================  =========================================
metric                 kind  sample value            current / avg_<range>
=====================  ====  ======================  =========================================
gpu_memory_usage       gpu   memory_used_bytes       bytes: sum over the devices of their
npu_memory_usage       npu   memory_used_bytes       latest sample's value / of their mean
npu_hbm_usage          npu   hbm_used_bytes          over the range's samples
gpu_utilization        gpu   utilization_pct         %, W, C: mean over the devices of their
npu_utilization        npu   utilization_pct         latest sample's value / of their mean
gpu_power_usage        gpu   power_w                 over the range's samples
npu_power_usage        npu   power_w
gpu_temperature        gpu   temperature_c
npu_temperature        npu   temperature_c
=====================  ====  ======================  =========================================

Devices are matched by the filter's ``machine_id``, ``device`` (index) and ``job_id`` (the job
whose process holds the most memory on the device at a sample: backend.device_samples); a
metric with no matched sample is null. ``cpu_utilization`` comes from the AI jobs' process
samples instead: backend.cpu_summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["DEVICE_METRICS", "device_metrics_summary"]

#: metric: (kind, sample value, how devices combine: "sum" | "mean")
DEVICE_METRICS: dict[str, tuple[str, str, str]] = {
    "gpu_memory_usage": ("gpu", "memory_used_bytes", "sum"),
    "gpu_utilization": ("gpu", "utilization_pct", "mean"),
    "gpu_power_usage": ("gpu", "power_w", "mean"),
    "gpu_temperature": ("gpu", "temperature_c", "mean"),
    "npu_memory_usage": ("npu", "memory_used_bytes", "sum"),
    "npu_hbm_usage": ("npu", "hbm_used_bytes", "sum"),
    "npu_utilization": ("npu", "utilization_pct", "mean"),
    "npu_power_usage": ("npu", "power_w", "mean"),
    "npu_temperature": ("npu", "temperature_c", "mean"),
}


def _combine(values: Iterable[float | None], how: str) -> float | None:
    got = [v for v in values if v is not None]
    if not got:
        return None
    return sum(got) if how == "sum" else sum(got) / len(got)


def device_metrics_summary(
    metrics: list[str], rows_by_kind: dict[str, list[dict[str, Any]]], avg_key: str
) -> dict[str, dict[str, Any]]:
    """{metric: {"current", avg_key}} for the device metrics asked; rows_by_kind: per kind,
    per_device rows holding mean_<value> and last_<value>."""
    out: dict[str, dict[str, Any]] = {}
    for name in metrics:
        kind, value, how = DEVICE_METRICS[name]
        rows = rows_by_kind.get(kind, [])
        cur = _combine((r.get(f"last_{value}") for r in rows), how)
        avg = _combine((r.get(f"mean_{value}") for r in rows), how)
        if how == "sum" and cur is not None:
            cur = round(cur)
        out[name] = {"current": cur, avg_key: avg}
    return out
