"""Event batches, decoded with the layout the C headers in ``include/`` define.

The structs are defined once, in ``include/xpu_abi.h`` and one ``include/<probe>.h`` per
monitor type: package data, which the BPF programs and the agent compile against too. This
module feeds that header text to cffi, and builds numpy structured dtypes from the offsets
cffi computes, so there is no second copy of any layout here.

Event fields are flattened: the members of the leading ``struct xpu_event_hdr h``
are top-level names, so ``events["pid"]`` is ``e->h.pid`` and ``events["stream"]``
is ``e->stream``. Char arrays are numpy ``S<n>`` bytes. All dtypes are
little-endian, as the wire format is.

What the fields mean for each call (named arguments, text, ...) is the probe's schema
(xpucore.probes); ``event_records`` reads events with it.

A batch is ``struct xpu_batch_hdr`` followed by ``event_count`` events of
``event_size`` bytes; a capture file is batches back to back. Batches come off
the network, so every header field is checked before it is used.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import cffi
import numpy as np

from xpucore.headers import HEADER_DIR
from xpucore.probes import PROBES
from xpucore.probes.schema import cstr as _cstr

__all__ = [
    "ABI_VERSION",
    "ACK_MAGIC",
    "ACK_SIZE",
    "BATCH_DTYPE",
    "BATCH_FINAL",
    "BATCH_HDR_SIZE",
    "BATCH_MAGIC",
    "BATCH_STACKS",
    "COMM_LEN",
    "CUDA_EVENT_DTYPE",
    "DROP_INFLIGHT",
    "DROP_RINGBUF",
    "EV_DEVICE_ASSUMED",
    "EV_INCOMPLETE",
    "HEADER_DIR",
    "MACHINE_ID_LEN",
    "MONITOR_ID_LEN",
    "MONITOR_TYPES",
    "PY_FRAME_DTYPE",
    "Abi",
    "AbiError",
    "Batch",
    "arg_class",
    "decode_ack",
    "decode_batch",
    "empty_events",
    "encode_ack",
    "encode_batch",
    "event_records",
    "event_type",
    "function_name",
    "function_names",
    "function_of",
    "iter_batches",
]

_TYPEDEFS = """
typedef uint8_t __u8;   typedef int8_t __s8;
typedef uint16_t __u16; typedef int16_t __s16;
typedef uint32_t __u32; typedef int32_t __s32;
typedef uint64_t __u64; typedef int64_t __s64;
"""
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
_NUMPY_INT = {
    "int8_t": "<i1", "int16_t": "<i2", "int32_t": "<i4", "int64_t": "<i8",
    "uint8_t": "<u1", "uint16_t": "<u2", "uint32_t": "<u4", "uint64_t": "<u8",
}  # fmt: skip
_READ_CHUNK = 1 << 20


class AbiError(ValueError):
    """A batch or capture file that does not follow the ABI."""


def _header_text(header_dir: Path, name: str, seen: set[str]) -> str:
    """The header without preprocessor lines (a #define continued with backslashes is one),
    after the local headers it includes."""
    if name in seen:
        return ""
    seen.add(name)
    parts, body = [], []
    directive = False  # inside a preprocessor line continued from the line before
    for line in (header_dir / name).read_text().splitlines():
        if not directive and (m := _INCLUDE.match(line)):
            parts.append(_header_text(header_dir, m.group(1), seen))
        elif not directive and not line.lstrip().startswith("#"):
            body.append(line)
            continue
        directive = line.endswith("\\")
    return "\n".join([*parts, *body])


def _fields(ffi: cffi.FFI, ctype: Any, base: int = 0) -> list[tuple[str, Any, int]]:
    """(name, numpy format, offset) of every member; nested structs are flattened."""
    out: list[tuple[str, Any, int]] = []
    for name, f in ctype.fields:
        t, off = f.type, base + f.offset
        if f.bitsize != -1:
            raise TypeError(f"{ctype.cname}.{name}: bit fields are not allowed in the ABI")
        if t.kind == "struct":
            out += _fields(ffi, t, off)
        elif t.kind == "primitive" and t.cname in _NUMPY_INT:
            out.append((name, _NUMPY_INT[t.cname], off))
        elif t.kind == "array" and t.item.cname == "char":
            out.append((name, f"S{t.length}", off))
        elif t.kind == "array" and t.item.cname in _NUMPY_INT:
            out.append((name, (_NUMPY_INT[t.item.cname], (t.length,)), off))
        else:
            raise TypeError(f"{ctype.cname}.{name}: type {t.cname} is not allowed in the ABI")
    return out


def _struct_dtype(ffi: cffi.FFI, struct: str) -> np.dtype[np.void]:
    ctype = ffi.typeof(f"struct {struct}")
    fields = _fields(ffi, ctype)
    names = [n for n, _, _ in fields]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise TypeError(f"struct {struct}: flattened field names collide: {sorted(dup)}")
    dt = np.dtype(
        {
            "names": names,
            "formats": [f for _, f, _ in fields],
            "offsets": [o for _, _, o in fields],
            "itemsize": ffi.sizeof(ctype),
        }
    )
    covered = sum(dt[n].itemsize for n in names)
    if covered != dt.itemsize or dt.itemsize != ffi.sizeof(ctype):
        raise TypeError(
            f"struct {struct} has {ffi.sizeof(ctype) - covered} bytes of implicit padding;"
            " the ABI needs explicit reserved members"
        )
    return dt


@dataclass(frozen=True, eq=False)
class Batch:
    """One decoded batch: its header fields and its events (a structured array)."""

    magic: int
    abi_version: int
    hdr_size: int
    monitor_type: int
    event_size: int
    event_count: int
    seq: int
    kernel_drops: int
    inflight_drops: int
    send_drops: int
    mono_to_real_ns: int
    agent_pid: int
    flags: int
    monitor_id: str
    machine_id: str
    events: np.ndarray

    @property
    def final(self) -> bool:
        """The agent's last batch (XPU_BATCH_FINAL)."""
        return bool(self.flags & BATCH_FINAL)

    @property
    def stacks(self) -> bool:
        """Python stack frames (struct xpu_py_frame), not events (XPU_BATCH_STACKS)."""
        return bool(self.flags & BATCH_STACKS)


class Abi:
    """The ABI as defined by the headers in one directory.

    Monitor type ``XPU_MONITOR_<P>`` has events when ``<p>.h`` exists there; its
    event struct is ``struct <p>_event`` and its function ids ``enum <p>_fn``
    (symbol = member name without ``<P>_FN_``), with argument classes in
    ``enum <p>_arg_class`` (``func_id >> 8``, name without ``<P>_ARGS_``).
    """

    def __init__(self, header_dir: Path = HEADER_DIR) -> None:
        self.header_dir = header_dir
        self.ffi = cffi.FFI()
        seen: set[str] = set()
        self.ffi.cdef(_TYPEDEFS + _header_text(header_dir, "xpu_abi.h", seen))
        self.monitor_types: Mapping[str, int] = MappingProxyType(
            self.enum("xpu_monitor_type", "XPU_MONITOR_")
        )
        self.consts = self.enum("xpu_abi_const", "XPU_")
        self.batch_dtype = _struct_dtype(self.ffi, "xpu_batch_hdr")
        self.consts_batch = self.enum("xpu_batch_flags", "XPU_")
        self.py_frame_dtype = _struct_dtype(self.ffi, "xpu_py_frame")
        self.event_dtypes: dict[int, np.dtype[np.void]] = {}
        for name, value in self.monitor_types.items():
            probe = name.lower()
            if (header_dir / f"{probe}.h").exists():
                self.ffi.cdef(_header_text(header_dir, f"{probe}.h", seen))
                self.event_dtypes[value] = _struct_dtype(self.ffi, f"{probe}_event")
        self._fn_names: dict[int, dict[int, str]] = {}
        self._classes: dict[int, dict[int, str]] = {}

    def enum(self, name: str, prefix: str) -> dict[str, int]:
        """Members of ``enum name`` as {member without prefix: value}."""
        members: dict[str, int] = self.ffi.typeof(f"enum {name}").relements
        return {k.removeprefix(prefix): v for k, v in sorted(members.items(), key=lambda m: m[1])}

    def monitor_type(self, monitor_type: int | str) -> int:
        """The value of a monitor type given by value or name (CUDA, ACL, ...)."""
        if isinstance(monitor_type, str):
            if monitor_type not in self.monitor_types:
                raise ValueError(f"unknown monitor type {monitor_type!r}")
            return self.monitor_types[monitor_type]
        return monitor_type

    def event_dtype(self, monitor_type: int | str = "CUDA") -> np.dtype[np.void]:
        mt = self.monitor_type(monitor_type)
        if mt not in self.event_dtypes:
            raise ValueError(f"monitor type {monitor_type!r} has no event layout")
        return self.event_dtypes[mt]

    def function_names(self, monitor_type: str = "CUDA") -> dict[int, str]:
        """{function id: symbol} from ``enum <p>_fn``."""
        mt = self.monitor_type(monitor_type)
        if mt not in self._fn_names:
            p = monitor_type.lower()
            names = self.enum(f"{p}_fn", f"{monitor_type}_FN_")
            self._fn_names[mt] = {v: k for k, v in names.items()}
            classes = self.enum(f"{p}_arg_class", f"{monitor_type}_ARGS_")
            self._classes[mt] = {v: k for k, v in classes.items()}
        return self._fn_names[mt]

    def function_name(self, func_id: int, monitor_type: str = "CUDA") -> str:
        """The symbol for a function id; ``fn_0x...`` for an id the header lacks."""
        return self.function_names(monitor_type).get(func_id, f"fn_{func_id:#06x}")

    def event_type(self, func_id: int, monitor_type: str, e: Mapping[str, Any]) -> str:
        """What a call is named by (events.event_type): its symbol; for one of the calls
        that share an id, the symbol the event names (an ACL aclnn launch: "aclnn" + op)."""
        name = self.function_name(func_id, monitor_type)
        if monitor_type == "ACL" and name == "aclnn":
            return name + _cstr(e["op_type"]).decode(errors="replace")
        return name

    def function_of(self, event_type: str, monitor_type: str) -> int | None:
        """The function id an event type (event_type()) stands for; None if unknown."""
        ids = {n: f for f, n in self.function_names(monitor_type).items()}
        if event_type not in ids and monitor_type == "ACL" and event_type.startswith("aclnn"):
            event_type = "aclnn"
        return ids.get(event_type)

    def arg_class(self, func_id: int, monitor_type: str = "CUDA") -> str:
        """The argument class name of a function id (``LAUNCH``, ``MEMCPY``, ...)."""
        self.function_names(monitor_type)
        cls = func_id >> 8
        return self._classes[self.monitor_type(monitor_type)].get(cls, f"class_{cls}")

    def empty_events(self, n: int, monitor_type: int | str = "CUDA") -> np.ndarray:
        """n zeroed events of that monitor type's dtype."""
        return np.zeros(n, dtype=self.event_dtype(monitor_type))

    def _check_header(self, hdr: np.void, length: int | None) -> np.dtype[np.void]:
        """Checks a batch header; returns the event dtype. length None: not known yet."""
        want = self.consts["BATCH_MAGIC"]
        if int(hdr["magic"]) != want:
            raise AbiError(f"bad magic {int(hdr['magic']):#010x}, expected {want:#010x}")
        if int(hdr["abi_version"]) != self.consts["ABI_VERSION"]:
            raise AbiError(
                f"unsupported abi_version {int(hdr['abi_version'])}, "
                f"this decoder reads {self.consts['ABI_VERSION']}"
            )
        if int(hdr["hdr_size"]) != self.batch_dtype.itemsize:
            raise AbiError(
                f"hdr_size {int(hdr['hdr_size'])} does not match "
                f"sizeof(struct xpu_batch_hdr) = {self.batch_dtype.itemsize}"
            )
        mt = int(hdr["monitor_type"])
        known = {v: k for k, v in self.monitor_types.items()}
        if mt not in known:
            raise AbiError(f"unknown monitor_type {mt}")
        if mt not in self.event_dtypes:
            raise AbiError(f"monitor_type {mt} ({known[mt]}) has no event layout")
        stacks = bool(int(hdr["flags"]) & self.consts_batch["BATCH_STACKS"])
        dt = self.py_frame_dtype if stacks else self.event_dtypes[mt]
        if int(hdr["event_size"]) != dt.itemsize:
            what = "xpu_py_frame" if stacks else f"{known[mt].lower()}_event"
            raise AbiError(
                f"event_size {int(hdr['event_size'])} does not match sizeof(struct "
                f"{what}) = {dt.itemsize} for monitor_type {known[mt]}"
            )
        expected = self.batch_dtype.itemsize + int(hdr["event_count"]) * dt.itemsize
        if length is not None and length != expected:
            raise AbiError(
                f"batch length {length} != hdr_size {self.batch_dtype.itemsize} + "
                f"event_count {int(hdr['event_count'])} * event_size {dt.itemsize} = {expected}"
            )
        return dt

    def decode_batch(self, buf: bytes | bytearray | memoryview) -> Batch:
        """Checks and decodes one batch.

        The events are a view of buf, not a copy (read-only when buf is bytes).
        """
        mv = memoryview(buf).cast("B")
        size = self.batch_dtype.itemsize
        if len(mv) < size:
            raise AbiError(f"batch too short: {len(mv)} bytes, the header alone is {size}")
        hdr = np.frombuffer(mv, dtype=self.batch_dtype, count=1)[0]
        dt = self._check_header(hdr, len(mv))
        events = np.frombuffer(mv, dtype=dt, count=int(hdr["event_count"]), offset=size)
        fields: dict[str, Any] = {}
        for name in self.batch_dtype.names or ():
            if self.batch_dtype[name].kind != "S":
                fields[name] = int(hdr[name])
                continue
            try:
                fields[name] = _cstr(hdr[name]).decode()
            except UnicodeDecodeError as e:
                raise AbiError(f"{name} is not valid UTF-8: {e}") from None
        return Batch(**fields, events=events)

    def iter_batches(self, stream: BinaryIO) -> Iterator[Batch]:
        """The batches of a capture file, read as they are needed."""
        offset, size = 0, self.batch_dtype.itemsize
        while True:
            head = _read(stream, size)
            if not head:
                return
            try:
                if len(head) < size:
                    raise AbiError(f"truncated batch header: {len(head)} of {size} bytes")
                hdr = np.frombuffer(head, dtype=self.batch_dtype, count=1)[0]
                dt = self._check_header(hdr, None)
                body_len = int(hdr["event_count"]) * dt.itemsize
                body = _read(stream, body_len)
                if len(body) < body_len:
                    raise AbiError(
                        f"truncated batch: {int(hdr['event_count'])} events need "
                        f"{body_len} bytes after the header, only {len(body)} left"
                    )
                batch = self.decode_batch(head + body)
            except AbiError as e:
                raise AbiError(f"at byte offset {offset}: {e}") from None
            yield batch
            offset += size + body_len

    def encode_batch(
        self,
        events: np.ndarray,
        *,
        monitor_id: str,
        machine_id: str,
        seq: int = 0,
        kernel_drops: int = 0,
        inflight_drops: int = 0,
        send_drops: int = 0,
        mono_to_real_ns: int = 0,
        agent_pid: int = 0,
        flags: int = 0,
        monitor_type: int | str = "CUDA",
    ) -> bytes:
        """A batch as the agent writes it (for tests and benchmarks)."""
        dt = self.event_dtype(monitor_type)
        if events.dtype != dt:
            raise ValueError(f"events have dtype {events.dtype}, expected {dt}")
        hdr = np.zeros(1, dtype=self.batch_dtype)
        for field, text in (("monitor_id", monitor_id), ("machine_id", machine_id)):
            raw = text.encode()
            if len(raw) >= self.batch_dtype[field].itemsize:
                raise ValueError(f"{field} {text!r} does not fit with its NUL")
            hdr[field] = raw
        values = {
            "magic": self.consts["BATCH_MAGIC"],
            "abi_version": self.consts["ABI_VERSION"],
            "hdr_size": self.batch_dtype.itemsize,
            "monitor_type": self.monitor_type(monitor_type),
            "event_size": dt.itemsize,
            "event_count": len(events),
            "seq": seq,
            "kernel_drops": kernel_drops,
            "inflight_drops": inflight_drops,
            "send_drops": send_drops,
            "mono_to_real_ns": mono_to_real_ns,
            "agent_pid": agent_pid,
            "flags": flags,
        }
        for field, value in values.items():
            info = np.iinfo(self.batch_dtype[field])
            if not info.min <= value <= info.max:
                raise ValueError(f"{field} {value} does not fit in {self.batch_dtype[field]}")
            hdr[field] = value
        return hdr.tobytes() + np.ascontiguousarray(events).tobytes()

    def event_records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        """JSON-ready dicts of a batch's events, with wall-clock ts_ns and named args."""
        names = {v: k for k, v in self.monitor_types.items()}
        mtype = names.get(batch.monitor_type, "")
        probe = PROBES.get(mtype)
        fields = batch.events.dtype.names or ()
        for row in batch.events.tolist():
            e = dict(zip(fields, row, strict=True))
            func = e["func"]
            yield {
                "ts_ns": e["ts_ns"] + batch.mono_to_real_ns,
                "duration_ns": e["duration_ns"],
                "pid": e["pid"],
                "tid": e["tid"],
                "cpu": e["cpu"],
                "comm": _cstr(e["comm"]).decode(errors="replace"),
                "func": self.event_type(func, mtype, e) if probe else f"fn_{func:#06x}",
                "ret": e["ret"],
                "incomplete": bool(e["flags"] & EV_INCOMPLETE),
                "args": probe.record_args(self.arg_class(func, mtype), e) if probe else {},
            }


def _read(stream: BinaryIO, n: int) -> bytes:
    """Up to n bytes, fewer only at end of file; memory grows with what is read."""
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(min(left, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_default = Abi()
MONITOR_TYPES: Mapping[str, int] = _default.monitor_types
BATCH_MAGIC: int = _default.consts["BATCH_MAGIC"]
ACK_MAGIC: int = _default.consts["ACK_MAGIC"]
ACK_SIZE: int = _default.ffi.sizeof("struct xpu_batch_ack")
_ACK = struct.Struct("<IIQ")
assert _ACK.size == ACK_SIZE, "struct xpu_batch_ack changed: update _ACK"


def encode_ack(agent_pid: int, seq: int) -> bytes:
    """struct xpu_batch_ack: what the backend returns for a batch it has stored."""
    return _ACK.pack(ACK_MAGIC, agent_pid, seq)


def decode_ack(buf: bytes) -> tuple[int, int]:
    """(agent_pid, seq) of an acknowledgement; AbiError if it is not one."""
    if len(buf) != ACK_SIZE:
        raise AbiError(f"ack: {len(buf)} bytes, expected {ACK_SIZE}")
    magic, pid, seq = _ACK.unpack(buf)
    if magic != ACK_MAGIC:
        raise AbiError(f"ack: magic {magic:#x}, expected {ACK_MAGIC:#x}")
    return pid, seq


ABI_VERSION: int = _default.consts["ABI_VERSION"]
COMM_LEN: int = _default.consts["COMM_LEN"]
MONITOR_ID_LEN: int = _default.consts["MONITOR_ID_LEN"]
MACHINE_ID_LEN: int = _default.consts["MACHINE_ID_LEN"]
BATCH_HDR_SIZE: int = _default.batch_dtype.itemsize
BATCH_DTYPE: np.dtype[np.void] = _default.batch_dtype
CUDA_EVENT_DTYPE: np.dtype[np.void] = _default.event_dtype("CUDA")
EV_INCOMPLETE: int = _default.enum("xpu_event_flags", "XPU_")["EV_INCOMPLETE"]
EV_DEVICE_ASSUMED: int = _default.enum("xpu_event_flags", "XPU_")["EV_DEVICE_ASSUMED"]
BATCH_FINAL: int = _default.enum("xpu_batch_flags", "XPU_")["BATCH_FINAL"]
BATCH_STACKS: int = _default.enum("xpu_batch_flags", "XPU_")["BATCH_STACKS"]
PY_FRAME_DTYPE: np.dtype[np.void] = _default.py_frame_dtype
DROP_RINGBUF: int = _default.enum("xpu_drop_slot", "XPU_")["DROP_RINGBUF"]
DROP_INFLIGHT: int = _default.enum("xpu_drop_slot", "XPU_")["DROP_INFLIGHT"]

decode_batch = _default.decode_batch
iter_batches = _default.iter_batches
encode_batch = _default.encode_batch
event_records = _default.event_records
empty_events = _default.empty_events
function_names = _default.function_names
function_name = _default.function_name
event_type = _default.event_type
function_of = _default.function_of
arg_class = _default.arg_class
