"""Accelerator samples (DEVICE_METRICS, xpucore.device_wire) as InfluxDB points, and how they
aggregate: the one place that names each field for InfluxDB and says its unit.

InfluxDB field names follow what users already scrape: dcgm-exporter's ``DCGM_FI_DEV_*`` for
NVIDIA GPUs and Ascend npu-exporter's ``npu_chip_info_*`` for NPUs, with their units (memory in
MiB, as both exporters write it). The REST API and PostgreSQL keep the wire's names and units
(bytes, W, C, %).

Measurement ``xpu_gpu`` (one point per GPU and sample), fields (all floats):

=========================  ===============================  ===================================
wire field                 InfluxDB field                   unit, meaning
=========================  ===============================  ===================================
utilization_pct            DCGM_FI_DEV_GPU_UTIL             % of time a kernel ran (NVML)
memory_utilization_pct     DCGM_FI_DEV_MEM_COPY_UTIL        % of time memory was read/written
memory_used_bytes          DCGM_FI_DEV_FB_USED              MiB of framebuffer used
memory_total_bytes         DCGM_FI_DEV_FB_TOTAL             MiB of framebuffer
(total - used)             DCGM_FI_DEV_FB_FREE              MiB free
power_w                    DCGM_FI_DEV_POWER_USAGE          W
temperature_c              DCGM_FI_DEV_GPU_TEMP             C
sm_clock_mhz               DCGM_FI_DEV_SM_CLOCK             MHz
pcie_tx_bytes_per_s        DCGM_FI_DEV_PCIE_TX_THROUGHPUT   KiB/s (NVML's PCIe counter unit)
pcie_rx_bytes_per_s        DCGM_FI_DEV_PCIE_RX_THROUGHPUT   KiB/s
xid_errors                 DCGM_FI_DEV_XID_ERRORS           as the manager counts them (wire)
retired_pages              DCGM_FI_DEV_RETIRED_PAGES        pages retired, single- and
                                                            double-bit together (DCGM splits
                                                            them: _RETIRED_SBE + _RETIRED_DBE)
health                     xpu_health                       0 ok, 1 warning, 2 critical,
                                                            3 unknown
=========================  ===============================  ===================================

Measurement ``xpu_npu`` (one point per NPU and sample), fields (all floats):

=========================  ===============================  ===================================
utilization_pct            npu_chip_info_utilization        % AI Core busy
power_w                    npu_chip_info_power              W
temperature_c              npu_chip_info_temperature        C
memory_used_bytes          npu_chip_info_used_memory        MiB
memory_total_bytes         npu_chip_info_total_memory       MiB
hbm_used_bytes             npu_chip_info_hbm_used_memory    MiB
hbm_total_bytes            npu_chip_info_hbm_total_memory   MiB
health                     npu_chip_info_health_status      1 healthy (ok), 0 otherwise
health                     xpu_health                       as for GPUs
=========================  ===============================  ===================================

Tags of both: ``machine``, ``kind`` (gpu, npu), ``device`` (the index), ``uuid`` (when known)
and ``job``: the job (backend.repo.jobs id) whose process holds the most memory on the device
at that sample (a live job of that pid on that machine; ties: the lowest pid), absent when no
job's process holds memory there. ``xpu_device_process`` has one point per process holding
memory on a device: tags machine, kind, device, uuid, pid, job (when the pid is a job's);
field ``memory_used`` (MiB). Point time: the sample's ``sampled_at`` (the machine's clock).
A field is absent from a point when the device's library did not report it.

Aggregation over an interval (GET /device-metrics ``interval``, the metrics summary): the mean
of utilisation, memory-copy utilisation, power, temperature and SM clock; the maximum of
memory and HBM used and total, PCIe throughput, XID errors and retired pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.aggregates import Point
from xpucore.device_wire import DEVICE_FLOATS, DEVICE_INTS, HEALTH

__all__ = [
    "AGGREGATION",
    "GPU_FIELDS",
    "MEASUREMENTS",
    "NPU_FIELDS",
    "PROCESS_MEASUREMENT",
    "VALUES",
    "lead_job",
    "points",
]

MiB = 1 << 20
#: The sampled values, in the wire's names (the columns of devices and device_metrics).
VALUES = (*DEVICE_FLOATS, *DEVICE_INTS)
#: wire field: how an interval reduces it ("mean" or "max")
AGGREGATION = {
    v: "mean"
    if v
    in ("utilization_pct", "memory_utilization_pct", "power_w", "temperature_c", "sm_clock_mhz")
    else "max"
    for v in VALUES
}
#: wire field: (InfluxDB field, divisor from the wire's unit)
GPU_FIELDS: dict[str, tuple[str, int]] = {
    "utilization_pct": ("DCGM_FI_DEV_GPU_UTIL", 1),
    "memory_utilization_pct": ("DCGM_FI_DEV_MEM_COPY_UTIL", 1),
    "memory_used_bytes": ("DCGM_FI_DEV_FB_USED", MiB),
    "memory_total_bytes": ("DCGM_FI_DEV_FB_TOTAL", MiB),
    "power_w": ("DCGM_FI_DEV_POWER_USAGE", 1),
    "temperature_c": ("DCGM_FI_DEV_GPU_TEMP", 1),
    "sm_clock_mhz": ("DCGM_FI_DEV_SM_CLOCK", 1),
    "pcie_tx_bytes_per_s": ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", 1024),
    "pcie_rx_bytes_per_s": ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", 1024),
    "xid_errors": ("DCGM_FI_DEV_XID_ERRORS", 1),
    "retired_pages": ("DCGM_FI_DEV_RETIRED_PAGES", 1),
}
NPU_FIELDS: dict[str, tuple[str, int]] = {
    "utilization_pct": ("npu_chip_info_utilization", 1),
    "power_w": ("npu_chip_info_power", 1),
    "temperature_c": ("npu_chip_info_temperature", 1),
    "memory_used_bytes": ("npu_chip_info_used_memory", MiB),
    "memory_total_bytes": ("npu_chip_info_total_memory", MiB),
    "hbm_used_bytes": ("npu_chip_info_hbm_used_memory", MiB),
    "hbm_total_bytes": ("npu_chip_info_hbm_total_memory", MiB),
}
MEASUREMENTS = {"gpu": ("xpu_gpu", GPU_FIELDS), "npu": ("xpu_npu", NPU_FIELDS)}
PROCESS_MEASUREMENT = "xpu_device_process"


def lead_job(device: Mapping[str, Any], jobs: Mapping[int, str]) -> str | None:
    """The job whose process holds the most memory on the device (ties: the lowest pid)."""
    held = [
        (-(p["memory_bytes"] or 0), p["pid"], jobs[p["pid"]])
        for p in device["processes"]
        if p["pid"] in jobs
    ]
    return min(held)[2] if held else None


def points(machine_id: str, sample: Mapping[str, Any], jobs: Mapping[int, str]) -> list[Point]:
    """A checked sample's points; jobs: {pid: job id} of the machine's live jobs."""
    t = sample["sampled_at"] * 1_000_000
    out: list[Point] = []
    for d in sample["devices"]:
        measurement, names = MEASUREMENTS[d["kind"]]
        base = [("device", str(d["index"])), ("kind", d["kind"]), ("machine", machine_id)]
        if d["uuid"]:
            base.append(("uuid", d["uuid"]))
        fields: dict[str, int | float] = {
            name: d[v] / div for v, (name, div) in names.items() if d[v] is not None
        }
        if d["kind"] == "gpu" and None not in (d["memory_used_bytes"], d["memory_total_bytes"]):
            fields["DCGM_FI_DEV_FB_FREE"] = (d["memory_total_bytes"] - d["memory_used_bytes"]) / MiB
        if d["kind"] == "npu":
            fields["npu_chip_info_health_status"] = float(d["health"] == "ok")
        fields["xpu_health"] = float(HEALTH.index(d["health"]))
        job = lead_job(d, jobs)
        tags = sorted(base + ([("job", job)] if job else []))
        out.append(Point(measurement, tuple(tags), fields, t))
        for p in d["processes"]:
            if p["memory_bytes"] is None:
                continue
            ptags = [*base, ("pid", str(p["pid"]))]
            if p["pid"] in jobs:
                ptags.append(("job", jobs[p["pid"]]))
            out.append(
                Point(
                    PROCESS_MEASUREMENT,
                    tuple(sorted(ptags)),
                    {"memory_used": p["memory_bytes"] / MiB},
                    t,
                )
            )
    return out
