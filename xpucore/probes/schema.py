"""What a probe's events mean, beyond their layout: one ``Probe`` per monitor type.

The layout of an event (``struct <p>_event``) and its function ids (``enum <p>_fn``, with
the argument class in the id's upper byte) come from the C headers (xpucore.abi). A
``Probe`` says the rest, once, for every reader of events (the decoder, the aggregates, the
traces, the manager): which event field holds each named argument, which arguments each
argument class has, which calls copy, allocate or free device memory, which enqueue work on
a queue or belong to a group, which library files the probe attaches to, how its return
codes read and how its devices are named.

Argument classes are the names of ``enum <p>_arg_class`` without ``<P>_ARGS_``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Probe", "cstr"]


def cstr(raw: bytes) -> bytes:
    """A char array's text: the bytes before the first NUL."""
    return raw.split(b"\0", 1)[0]


def _number(event_type: str, ret: int) -> str:
    return str(ret)


@dataclass(frozen=True)
class Probe:
    monitor_type: str  # "CUDA": XPU_MONITOR_CUDA, include/cuda.h
    # argument name -> the struct <p>_event field that holds it
    fields: Mapping[str, str] = field(default_factory=dict)
    # argument class -> its arguments' names, in call order
    args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # the arguments of an argument class not in args (SYSCALL: every class has the same)
    other_args: tuple[str, ...] = ()
    # arguments every call has after its own (the device it ran on, its Python stack)
    every_call: tuple[str, ...] = ()
    # arguments that are NUL-terminated text, not integers
    text: frozenset[str] = frozenset()
    # arguments that are three fields, <name>_x, _y and _z (a dim3)
    dim3: frozenset[str] = frozenset()
    # argument classes whose successful calls copy "bytes" of memory
    copies: frozenset[str] = frozenset()
    # argument classes whose successful calls allocate "bytes" of device memory at "ptr"
    allocates: frozenset[str] = frozenset()
    # argument classes whose calls give device memory at "ptr" back
    frees: frozenset[str] = frozenset()
    # functions of those classes that allocate or free host memory, not device memory
    host_memory: frozenset[str] = frozenset()
    # argument classes whose calls enqueue work on the queue their "stream" names
    submits: frozenset[str] = frozenset()
    # argument classes whose calls belong to the group their "comm" names (collectives)
    grouped: frozenset[str] = frozenset()
    # the library files the probe attaches to: fnmatch patterns of their base names
    libraries: tuple[str, ...] = ()
    # what its devices are called ("GPU"), None when its events name no device
    device_label: str | None = None
    # a return code's name, for a call of an event type: "cudaErrorInvalidValue (1)"
    ret_name: Callable[[str, int], str] = _number

    def call_args(self, cls: str) -> tuple[str, ...]:
        """The arguments of an argument class, in call order (not every_call)."""
        return self.args.get(cls, self.other_args)

    def columns(self) -> dict[str, str]:
        """Argument column -> event field: fields, and a dim3's axes by their own names."""
        axes = {f"{d}_{a}": f"{d}_{a}" for d in sorted(self.dim3) for a in "xyz"}
        return {**self.fields, **axes}

    def record_args(self, cls: str, e: Mapping[str, Any]) -> dict[str, Any]:
        """A decoded event's arguments by name: its class's, then every call's (text as str,
        a dim3 as a list of three)."""
        out: dict[str, Any] = {}
        for name in (*self.call_args(cls), *self.every_call):
            if name in self.dim3:
                out[name] = [e[f"{name}_x"], e[f"{name}_y"], e[f"{name}_z"]]
                continue
            v = e[self.fields[name]]
            out[name] = cstr(v).decode(errors="replace") if name in self.text else v
        return out

    def memory_kind(self, cls: str, function: str) -> str | None:
        """ "alloc" or "free" for a call that allocates or frees device memory, else None."""
        if function in self.host_memory:
            return None
        if cls in self.allocates:
            return "alloc"
        return "free" if cls in self.frees else None

    def attaches_to(self, base_name: str) -> bool:
        """Whether a library file of that base name is one the probe attaches to."""
        return any(fnmatch.fnmatchcase(base_name, p) for p in self.libraries)
