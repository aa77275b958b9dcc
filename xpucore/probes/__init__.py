"""What each probe's events mean: one module per probe (monitor type), each a ``Probe``
(xpucore.probes.schema) and the tables it reads from (return-code names)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from xpucore.probes import acl, cuda, python, syscall
from xpucore.probes.schema import Probe

__all__ = ["PROBES", "Probe", "probe_for"]

#: The probe of each monitor type that has one (XPU_MONITOR_<type> in include/xpu_abi.h).
PROBES: Mapping[str, Probe] = MappingProxyType(
    {p.monitor_type: p for p in (cuda.PROBE, acl.PROBE, syscall.PROBE, python.PROBE)}
)

_NONE = Probe(monitor_type="")


def probe_for(monitor_type: str) -> Probe:
    """The probe of a monitor type; one that gives its events no meaning for an unknown one."""
    return PROBES.get(monitor_type) or _NONE
