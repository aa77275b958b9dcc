"""The SYSCALL probe (include/syscall.h): system calls, the first three arguments raw.

An event's function id is its syscall number (enum syscall_fn), so its upper byte is no
argument class: every call has the same arguments."""

from __future__ import annotations

import errno

from xpucore.probes.schema import Probe

__all__ = ["PROBE", "errno_name"]


def errno_name(event_type: str, ret: int) -> str:
    """A syscall's return: the errno's name when it failed (-ENOENT: "ENOENT (-2)")."""
    name = errno.errorcode.get(-ret) if ret < 0 else None
    return f"{name} ({ret})" if name else str(ret)


PROBE = Probe(
    monitor_type="SYSCALL",
    fields={a: a for a in ("arg0", "arg1", "arg2")},
    other_args=("arg0", "arg1", "arg2"),
    ret_name=errno_name,
)
