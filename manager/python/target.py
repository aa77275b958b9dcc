"""The CPython a process runs, found from outside it: what the Python stack reader needs.

``find_target(pid)`` looks through the process's mappings for the ELF file that defines
``_PyRuntime`` (the interpreter binary for a static build such as Debian's
``/usr/bin/python3.11``, ``libpython3.X.so`` for a shared one such as pyenv's), reads it
through ``/proc/<pid>/root`` (so a process in a container is read in its own filesystem),
takes the address of ``_PyRuntime`` in the process from the mapping that holds it, and the
version from ``Py_Version`` in the process's memory (3.11+; older builds are named by their
file). The structure offsets of 3.10-3.12 come from ``manager/python/offsets.py`` (generated
from each version's own headers); 3.13 and 3.14 publish theirs at the start of ``_PyRuntime``
(``_Py_DebugOffsets``), which are read from the process (manager/python/debug_offsets.py:
cookie and version checked against ``Py_Version``; the two offsets they lack from the table,
or for 3.14 from its published layout). Before the offsets are trusted, the thread list they
lead to must contain the process's main thread. A build that cannot be read gives
``UnsupportedPython`` with the reason, which the manager answers as INVALID_CONFIG: never a
walk on guessed offsets.

``read_stacks(target)`` walks every thread's frames through ``/proc/<pid>/mem``: the
reference the BPF reader is checked against, and how code objects are resolved to
``function (file:line)``. Line numbers come from the code object's location table
(CPython's Objects/locations.md, the same format in 3.11-3.14; 3.10's older line table is
Objects/lnotab_notes.txt). 3.10 has no qualified names: its functions read as co_name.
3.14's frames hold the code object as a _PyStackRef, a pointer whose low two bits are tags
(Include/internal/pycore_stackref.h: Py_TAG_BITS 3): cleared before it is followed.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from manager.python.debug_offsets import LAYOUTS, BadDebugOffsets, layout_size, walker_offsets
from manager.python.offsets import OFFSETS

__all__ = [
    "Frame",
    "PythonTarget",
    "UnsupportedPython",
    "agent_flags",
    "find_target",
    "read_stacks",
]

_NAME = re.compile(r"^(?:lib)?python(\d)\.(\d+)")
_OWNED_BY_GENERATOR = 1
_OWNED_BY_INTERPRETER = 3  # 3.12-3.13: FRAME_OWNED_BY_CSTACK, the entry frame; 3.14 adds
# FRAME_OWNED_BY_CSTACK = 4: from 3 up, frames without Python code
_TAG_BITS = 3  # 3.14: a _PyStackRef's tags (f_executable); 3.11-3.13: a plain pointer
_MAX_FRAMES = 256
_MAX_THREADS = 4096


class UnsupportedPython(Exception):
    """The process's CPython cannot be read; the message says why."""


@dataclass(frozen=True)
class Frame:
    function: str  # co_qualname
    file: str
    line: int | None  # None where the location table has no line (artificial code)


@dataclass(frozen=True)
class PythonTarget:
    pid: int
    binary: str  # the ELF file defining _PyRuntime, as the process names it
    runtime: int  # address of _PyRuntime in the process
    version: tuple[int, int, int]
    offsets: dict[str, int] = field(repr=False)


def agent_flags(t: PythonTarget) -> list[str]:
    """The xputrace-agent flags that let its probe read this CPython's stacks."""
    return [
        "--py-runtime",
        hex(t.runtime),
        "--py-offsets",
        ",".join(f"{k}={v}" for k, v in t.offsets.items()),
    ]


class _Memory:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())

    def read(self, addr: int, n: int) -> bytes:
        self.f.seek(addr)
        data = self.f.read(n)
        if len(data) != n:
            raise OSError(f"short read at {addr:#x}")
        return data

    def u64(self, addr: int) -> int:
        return int(struct.unpack("<Q", self.read(addr, 8))[0])

    def i32(self, addr: int) -> int:
        return int(struct.unpack("<i", self.read(addr, 4))[0])

    def close(self) -> None:
        self.f.close()


def _mappings(proc: Path) -> list[tuple[int, int, int, str]]:
    """(start, end, file offset, path) of each file mapping."""
    out = []
    for line in (proc / "maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, int(parts[2], 16), parts[5]))
    return out


def _symbol(elf: ELFFile, name: str) -> tuple[int, int, int] | None:
    """(st_value, file offset, st_size) of a defined symbol, from .dynsym or .symtab."""
    for section in (".dynsym", ".symtab"):
        table = elf.get_section_by_name(section)
        found = table.get_symbol_by_name(name) if isinstance(table, SymbolTableSection) else None
        for sym in found or ():
            if sym["st_shndx"] == "SHN_UNDEF":
                continue
            value = sym["st_value"]
            for seg in elf.iter_segments("PT_LOAD"):
                if seg["p_vaddr"] <= value < seg["p_vaddr"] + seg["p_memsz"]:
                    return value, value - seg["p_vaddr"] + seg["p_offset"], sym["st_size"]
    return None


def _address(maps: list[tuple[int, int, int, str]], path: str, file_offset: int) -> int:
    """Where a file offset of path is in the process (past the file's end, as .bss is: at
    the displacement of the mapping below it)."""
    mine = sorted(m for m in maps if m[3] == path)
    for lo, hi, off, _ in mine:
        if off <= file_offset < off + (hi - lo):
            return lo + file_offset - off
    below = [m for m in mine if m[2] <= file_offset] or mine
    lo, _, off, _ = below[-1]
    return lo + file_offset - off


def find_target(pid: int, proc_root: Path = Path("/proc")) -> PythonTarget:
    """The CPython process pid runs, checked readable; UnsupportedPython otherwise."""
    proc = proc_root / str(pid)
    try:
        maps = _mappings(proc)
    except OSError as e:
        raise UnsupportedPython(f"cannot read the mappings of process {pid}: {e}") from None
    named = [p for p in dict.fromkeys(m[3] for m in maps) if _NAME.match(os.path.basename(p))]
    if not named:
        raise UnsupportedPython(f"process {pid} maps no python or libpython file: not CPython")
    for path in named:
        with open(proc / "root" / path.lstrip("/"), "rb") as fh:
            elf = ELFFile(fh)
            runtime = _symbol(elf, "_PyRuntime")
            version_sym = _symbol(elf, "Py_Version")
        if runtime is not None:
            break
    else:
        raise UnsupportedPython(
            f"{', '.join(named)}: no _PyRuntime symbol (stripped, or not CPython 3.7+)"
        )
    m = _NAME.match(os.path.basename(path))
    assert m is not None
    mem = _Memory(proc / "mem")
    address = _address(maps, path, runtime[1])
    try:
        hexversion = None
        if version_sym is not None:
            hexversion = mem.u64(_address(maps, path, version_sym[1]))
            version = (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF)
        else:
            version = (int(m.group(1)), int(m.group(2)), 0)
        name = f"CPython {'.'.join(map(str, version))} ({path})"
        if version[:2] >= (3, 13):
            offsets = _debug_offsets(mem, address, hexversion, runtime[2], name)
        elif (table := OFFSETS.get(version[:2])) is not None:
            offsets = dict(table)
        else:
            known = ", ".join(f"{a}.{b}" for a, b in sorted({*OFFSETS, *LAYOUTS}))
            raise UnsupportedPython(
                f"CPython {version[0]}.{version[1]} ({path}) has no offset "
                f"table: readable versions are {known}"
            )
        target = PythonTarget(pid, path, address, version, offsets)
        if not _plausible(mem, target):
            raise UnsupportedPython(
                f"CPython {'.'.join(map(str, version))} ({path}): its "
                "thread list does not hold the main thread; this build's "
                "layout differs from "
                + ("its debug offsets" if version[:2] >= (3, 13) else "the offset table")
            )
        return target
    except OSError as e:
        raise UnsupportedPython(f"cannot read process {pid}'s memory: {e}") from None
    finally:
        mem.close()


def _debug_offsets(
    mem: _Memory, runtime: int, hexversion: int | None, size: int, name: str
) -> dict[str, int]:
    """3.13+: the offsets _PyRuntime's _Py_DebugOffsets give, checked against Py_Version."""
    if hexversion is None:
        raise UnsupportedPython(
            f"{name}: no Py_Version symbol to check the debug offsets' version against"
        )
    minor = (hexversion >> 24, (hexversion >> 16) & 0xFF)
    if minor not in LAYOUTS:
        known = ", ".join(f"{a}.{b}" for a, b in sorted({*OFFSETS, *LAYOUTS}))
        raise UnsupportedPython(
            f"{name}: the layout of its _Py_DebugOffsets is not known here "
            f"(it changes with each minor version): readable versions "
            f"are {known}"
        )
    try:
        return walker_offsets(
            mem.read(runtime, layout_size(minor)), hexversion, size or None, OFFSETS.get(minor)
        )
    except BadDebugOffsets as e:
        raise UnsupportedPython(f"{name}: {e}") from None


def _thread_states(mem: _Memory, t: PythonTarget) -> dict[int, int]:
    """{thread id: PyThreadState address} of every interpreter's threads: the native id
    (3.11+), or pthread_self() (3.10, which has no native id)."""
    o, out = t.offsets, dict[int, int]()
    key = o.get("tstate_native_tid", o.get("tstate_thread_id"))
    assert key is not None
    interp = mem.u64(t.runtime + o["runtime_interp_head"])
    while interp and len(out) < _MAX_THREADS:
        ts = mem.u64(interp + o["interp_threads_head"])
        while ts and len(out) < _MAX_THREADS:
            out[mem.u64(ts + key)] = ts
            ts = mem.u64(ts + o["tstate_next"])
        interp = mem.u64(interp + o["interp_next"])
    return out


def _plausible(mem: _Memory, t: PythonTarget) -> bool:
    """The offsets lead somewhere real: the main thread is in the thread list (3.11+), or
    (3.10, whose ids cannot be checked from outside) some thread's frames name a file."""
    threads = _thread_states(mem, t)
    if "tstate_native_tid" in t.offsets:
        return t.pid in threads
    stacks = _stacks(mem, t, threads)
    return any(f.file.endswith(".py") for frames in stacks.values() for f in frames)


def _text(mem: _Memory, o: dict[str, int], addr: int) -> str:
    length = mem.u64(addr + o["str_length"])
    state = mem.read(addr + o["str_state"], 4)[0]
    kind, compact, ascii_ = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
    if not compact or kind not in (1, 2, 4) or length > 1 << 16:
        return "?"
    data = mem.read(
        addr + (o["str_ascii_data"] if ascii_ else o["str_compact_data"]), length * kind
    )
    return data.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind])


def _line(table: bytes, firstlineno: int, unit: int) -> int | None:
    """The line of code unit `unit` from a location table (Objects/locations.md)."""
    line, at, i = firstlineno, 0, 0

    def varint() -> int:
        nonlocal i
        b = table[i]
        i += 1
        value, shift = b & 63, 0
        while b & 64:
            b = table[i]
            i += 1
            shift += 6
            value |= (b & 63) << shift
        return value

    def signed() -> int:
        v = varint()
        return -(v >> 1) if v & 1 else v >> 1

    while i < len(table):
        first = table[i]
        i += 1
        code, length = (first >> 3) & 15, (first & 7) + 1
        this: int | None = line
        if code == 15:  # no location
            this = None
        elif code == 14:  # long form: line delta, end line, columns
            line += signed()
            this = line
            varint(), varint(), varint()
        elif code == 13:  # no columns
            line += signed()
            this = line
        elif code >= 10:  # one-line forms: line delta in the code, two column bytes
            line += code - 10
            this = line
            i += 2
        else:  # short form: same line, one column byte
            i += 1
        if at <= unit < at + length:
            return this
        at += length
    return None


class _Codes:
    """Code objects resolved once: (qualname, file, first line, location table, first
    traceable unit)."""

    def __init__(self, mem: _Memory, o: dict[str, int]) -> None:
        self.mem, self.o = mem, o
        self.cache: dict[int, tuple[str, str, int, bytes, int]] = {}

    def get(self, ptr: int) -> tuple[str, str, int, bytes, int]:
        c = self.cache.get(ptr)
        if c is None:
            m, o = self.mem, self.o
            table_obj = m.u64(ptr + o["code_linetable"])
            size = m.u64(table_obj + o["bytes_size"])
            table = m.read(table_obj + o["bytes_data"], size) if size < 1 << 20 else b""
            traceable = (
                m.i32(ptr + o["code_firsttraceable"]) if "code_firsttraceable" in o else 0
            )  # 3.10 has none
            c = self.cache[ptr] = (
                _text(m, o, m.u64(ptr + o["code_qualname"])),
                _text(m, o, m.u64(ptr + o["code_filename"])),
                m.i32(ptr + o["code_firstlineno"]),
                table,
                traceable,
            )
        return c


def read_stacks(t: PythonTarget, proc_root: Path = Path("/proc")) -> dict[int, list[Frame]]:
    """Every thread's Python stack, innermost frame first, by thread id (native; 3.10:
    pthread_self(), as threading.get_ident() gives)."""
    mem = _Memory(proc_root / str(t.pid) / "mem")
    try:
        return _stacks(mem, t, _thread_states(mem, t))
    finally:
        mem.close()


def _stacks(mem: _Memory, t: PythonTarget, threads: dict[int, int]) -> dict[int, list[Frame]]:
    o = t.offsets
    codes = _Codes(mem, o)
    out: dict[int, list[Frame]] = {}
    for tid, ts in threads.items():
        if "tstate_current_frame" in o:
            frame = mem.u64(ts + o["tstate_current_frame"])
        else:
            cframe = mem.u64(ts + o["tstate_cframe"])
            frame = mem.u64(cframe + o["cframe_current_frame"]) if cframe else 0
        stack: list[Frame] = []
        while frame and len(stack) < _MAX_FRAMES:
            code = mem.u64(frame + o["frame_code"]) & ~_TAG_BITS
            previous = mem.u64(frame + o["frame_previous"])
            if "frame_lasti" in o:  # 3.10: an instruction index, -1 before the first
                unit = mem.i32(frame + o["frame_lasti"])
                if unit >= 0:
                    name, file, first, table, _ = codes.get(code)
                    stack.append(Frame(name, file, _line_310(table, first, unit * 2)))
            elif (owner := mem.read(frame + o["frame_owner"], 1)[0]) < _OWNED_BY_INTERPRETER:
                # (the C stack's entry frame, 3.12+, and 3.14's C-stack frames have no code)
                unit = (mem.u64(frame + o["frame_instr"]) - code - o["code_adaptive"]) // 2
                name, file, first, table, traceable = codes.get(code)
                if owner == _OWNED_BY_GENERATOR or unit >= traceable:  # else: not started
                    stack.append(Frame(name, file, _line(table, first, unit)))
            frame = previous
        out[tid] = stack
    return out


def _line_310(table: bytes, firstlineno: int, addr: int) -> int | None:
    """The line of the instruction at byte addr from a 3.10 line table: (start delta,
    line delta) byte pairs, -128 meaning no line (Objects/lnotab_notes.txt)."""
    line, end, current = firstlineno, 0, None
    for i in range(0, len(table) - 1, 2):
        if end > addr:
            break
        end += table[i]
        delta = table[i + 1] - 256 if table[i + 1] > 127 else table[i + 1]
        if delta == -128:
            current = None
        else:
            line += delta
            current = line
    return current if end > addr else None
