"""DEVICE_METRICS checked field by field (xpucore.device_wire)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from xpucore import protocol
from xpucore.device_wire import check_device_metrics
from xpucore.job_wire import WireError


def gpu(index: int = 0, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "gpu",
        "index": index,
        "uuid": f"GPU-{index}",
        "name": "NVIDIA H100",
        "bus_id": "00000000:17:00.0",
        "health": "ok",
        "power_w": 310.5,
        "temperature_c": 61,
        "utilization_pct": 97.0,
        "memory_used_bytes": 40 << 30,
        "memory_total_bytes": 80 << 30,
        "processes": [{"pid": 1234, "memory_bytes": 1 << 30}],
        **kw,
    }


def msg(*devices: dict[str, Any], errors: Any = ()) -> dict[str, Any]:
    return protocol.device_metrics("m", 1_767_000_000_000, devices, list(errors), datetime.now(UTC))


def test_a_sample_passes_with_its_values_and_nones() -> None:
    got = check_device_metrics(msg(gpu(0), gpu(1, power_w=None)))
    d0, d1 = got["devices"]
    assert (d0["power_w"], d0["temperature_c"], d0["memory_used_bytes"]) == (310.5, 61.0, 40 << 30)
    assert d1["power_w"] is None and d1["sm_clock_mhz"] is None
    assert d0["processes"] == [{"pid": 1234, "memory_bytes": 1 << 30}]
    assert check_device_metrics(msg(errors=[{"library": "nvml", "message": "not found"}]))[
        "errors"
    ] == [{"library": "nvml", "message": "not found"}]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (gpu(kind="tpu"), "devices[0].kind"),
        (gpu(index=-1), "devices[0].index"),
        (gpu(utilization_pct=101), "devices[0].utilization_pct"),
        (gpu(power_w=float("nan")), "devices[0].power_w"),
        (gpu(memory_used_bytes="1"), "devices[0].memory_used_bytes"),
        (gpu(name="x" * 200), "devices[0].name"),
        (gpu(processes=[{"pid": 0}]), "devices[0].processes[0].pid"),
        (gpu(health="fine"), "devices[0].health"),
    ],
)
def test_bad_fields_are_named(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError, match="^" + re.escape(field) + ":"):
        check_device_metrics(msg(bad))


def test_a_device_twice_and_a_bad_library_are_refused() -> None:
    with pytest.raises(WireError, match="listed twice"):
        check_device_metrics(msg(gpu(0), gpu(0)))
    with pytest.raises(WireError, match=r"^errors\[0\].library"):
        check_device_metrics(msg(errors=[{"library": "rocm", "message": "x"}]))
