"""Where to put the uprobes that see a Python function start and return, in the interpreter
ELF of a running CPython (found by manager.python.target): exact calls without USDT or a
restart.

3.11+ (mode "opcode"): every Python function starts by executing RESUME (or a specialised
form of it) and returns through RETURN_VALUE (3.12+: or RETURN_CONST); the numbers are in
manager/python/opcodes.py. _PyEval_EvalFrameDefault dispatches with computed gotos through
a static table `opcode_targets[256]` of label addresses; the hooks are the labels of those
opcodes, as file offsets. The table is a local static (not in .dynsym, and Debian's
python3.11 has no .symtab), so it is found from the code: every address the function names
with a RIP-relative `lea` (PIC builds: `lea opcode_targets(%rip),%reg`) or as the absolute
base of an 8-byte-scaled index (non-PIE builds: `mov opcode_targets(,%reg,8),%reg`) is read
as 256 pointers, through the file's R_X86_64_RELATIVE relocations where the table sits in
.data.rel.ro (their addends hold the values; RELR-packed ones leave them in place); the one
whose 256 entries all point into code, most of them into _PyEval_EvalFrameDefault, is the
table (not all: Debian's build moves rare handlers, the unknown-opcode label among them, to
the function's .cold part, which no symbol bounds). Anything else (no such table, two of
them, a hook opcode that lands on the unknown-opcode label) is refused with the reason:
never a guess.

3.10 (mode "eval_frame"): no RESUME; every Python call (and generator resumption) runs its
own _PyEval_EvalFrameDefault, so the entry is that function and the exit its return (a
uretprobe, so no exit offset).

Left out on purpose: INSTRUMENTED_* (run only while sys.monitoring / sys.settrace
instruments the code), YIELD_VALUE (suspends a generator; its frame lives on) and
RETURN_GENERATOR (hands a new generator back before the body runs). A generator's RESUME
runs at its first start (oparg 0) and after each yield or await (oparg 1-3); a frame left by
an exception passes no exit hook.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import capstone
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from manager.python.opcodes import OPCODES
from manager.python.target import PythonTarget, UnsupportedPython

__all__ = ["PythonHooks", "find_hooks", "hook_flag"]

EVAL = "_PyEval_EvalFrameDefault"
_SLOTS = 256
_R_X86_64_RELATIVE = 8
# lea disp32(%rip),%r64: REX.W, 8d, ModRM mod=00 rm=101; the target is the next
# instruction's address + disp32.
_LEA_RIP = re.compile(rb"(?=[\x48-\x4f]\x8d[\x05\x0d\x15\x1d\x25\x2d\x35\x3d](.{4}))", re.S)
# mov disp32(,%index,8),%r or jmp *disp32(,%index,8) (8b /r or ff /4; ModRM mod=00 rm=100:
# SIB; SIB scale=8 base=101: none): disp32 is an absolute address (non-PIE code). Not
# call *disp32(,%index,8): that is a table of functions.
_ABS_SCALED = re.compile(
    rb"(?=(?:\x8b[\x04\x0c\x14\x1c\x24\x2c\x34\x3c]|\xff\x24)"
    rb"[\xc5\xcd\xd5\xdd\xe5\xed\xf5\xfd](.{4}))",
    re.S,
)


@dataclass(frozen=True)
class PythonHooks:
    binary: str  # the ELF the offsets are in, as the target names it (== PythonTarget.binary)
    mode: str  # "opcode" (3.11+) or "eval_frame" (3.10)
    entry: tuple[int, ...]  # file offsets where a Python function starts running
    exit: tuple[int, ...]  # file offsets where a frame returns normally ("opcode" mode)
    # where the uprobes go: on each handler's straight path, its first branch (see _site)
    entry_sites: tuple[int, ...] = ()
    exit_sites: tuple[int, ...] = ()


def hook_flag(h: PythonHooks) -> str:
    """The agent's --py-hooks value: opcode:E,E..:X,X.. or eval:E:"""
    mode = "eval" if h.mode == "eval_frame" else h.mode
    entry, exit_ = h.entry_sites or h.entry, h.exit_sites or h.exit
    return f"{mode}:{','.join(map(hex, entry))}:{','.join(map(hex, exit_))}"


_BRANCH = {
    capstone.x86.X86_GRP_JUMP,
    capstone.x86.X86_GRP_CALL,
    capstone.x86.X86_GRP_RET,
    capstone.x86.X86_GRP_INT,
    capstone.x86.X86_GRP_IRET,
}
_MAX_INSNS = 32


def _site(image: _Image, vaddr: int) -> int:
    """Where a uprobe for the handler at vaddr costs least: the first instruction on its
    straight path that the kernel emulates when the probe hits, a jump by a relative
    displacement (conditional or not). A probe on any other instruction is single-stepped
    out of line: a second trap, about 10 us a hit here against under 2 for an emulated one.
    The handler's first branch runs on every pass through it, and the frame is still the
    one the handler began with (no handler changes it before a branch: the tests check each
    version). The handler itself where its first branch is not such a jump."""
    code = image.read(vaddr, 16 * _MAX_INSNS) or b""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    for n, insn in enumerate(md.disasm(code, vaddr)):
        if n == _MAX_INSNS or not _BRANCH & set(insn.groups):
            continue
        relative = insn.operands and insn.operands[0].type == capstone.x86.X86_OP_IMM
        jump = capstone.x86.X86_GRP_JUMP in insn.groups
        return insn.address if jump and relative else vaddr
    return vaddr


class _Image:
    """An ELF file's loaded image, read by virtual address."""

    def __init__(self, fh: BinaryIO, name: str) -> None:
        self.fh, self.name = fh, name
        self.elf = ELFFile(fh)
        if self.elf["e_machine"] != "EM_X86_64":
            raise UnsupportedPython(
                f"{name}: {self.elf['e_machine']}, not x86-64: its eval loop cannot be read"
            )
        self.segments = [
            (s["p_vaddr"], s["p_memsz"], s["p_filesz"], s["p_offset"], s["p_flags"])
            for s in self.elf.iter_segments("PT_LOAD")
        ]
        self._relative: dict[int, int] | None = None

    def file_offset(self, vaddr: int, n: int = 1) -> int | None:
        """The file offset of the n bytes at vaddr, if the file holds them."""
        for lo, _, filesz, off, _ in self.segments:
            if lo <= vaddr and vaddr + n <= lo + filesz:
                return vaddr - lo + off
        return None

    def executable(self, vaddr: int) -> bool:
        return any(
            lo <= vaddr < lo + memsz and flags & 1 for lo, memsz, _, _, flags in self.segments
        )

    def read(self, vaddr: int, n: int) -> bytes | None:
        off = self.file_offset(vaddr, n)
        if off is None:
            return None
        self.fh.seek(off)
        data = self.fh.read(n)
        return data if len(data) == n else None

    def symbol(self, name: str) -> tuple[int, int] | None:
        """(address, size) of a defined function, from .dynsym or .symtab."""
        for section in (".dynsym", ".symtab"):
            table = self.elf.get_section_by_name(section)
            found = (
                table.get_symbol_by_name(name) if isinstance(table, SymbolTableSection) else None
            )
            for sym in found or ():
                if sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"]:
                    return int(sym["st_value"]), int(sym["st_size"])
        return None

    def relative(self) -> dict[int, int]:
        """{address: addend} of the R_X86_64_RELATIVE relocations (RELA)."""
        if self._relative is None:
            self._relative = {}
            for section in self.elf.iter_sections():
                if section["sh_type"] != "SHT_RELA" or section["sh_entsize"] != 24:
                    continue
                for offset, info, addend in struct.iter_unpack("<QQq", section.data()):
                    if info & 0xFFFFFFFF == _R_X86_64_RELATIVE:
                        self._relative[offset] = addend
        return self._relative

    def pointers(self, vaddr: int, n: int) -> list[int] | None:
        """n 8-byte pointers at vaddr as the loader leaves them (before the load bias)."""
        data = self.read(vaddr, 8 * n)
        if data is None:
            return None
        words = [w for (w,) in struct.iter_unpack("<Q", data)]
        if self.elf["e_type"] == "ET_DYN" or not any(words):
            rel = self.relative()
            words = [rel.get(vaddr + 8 * i, w) for i, w in enumerate(words)]
        return words


def _referenced(code: bytes, start: int) -> Iterator[int]:
    """Addresses the code names as RIP-relative lea targets or absolute scaled-index bases."""
    for m in _LEA_RIP.finditer(code):
        yield start + m.start() + 7 + int.from_bytes(m.group(1), "little", signed=True)
    for m in _ABS_SCALED.finditer(code):
        yield int.from_bytes(m.group(1), "little", signed=True)


def opcode_targets(image: _Image) -> tuple[int, list[int]]:
    """(address, the 256 label addresses) of _PyEval_EvalFrameDefault's dispatch table."""
    found = image.symbol(EVAL)
    if found is None or not found[1]:
        raise UnsupportedPython(f"{image.name}: no sized {EVAL} symbol")
    start, size = found
    code = image.read(start, size)
    if code is None:
        raise UnsupportedPython(f"{image.name}: {EVAL} is not in the file")
    tables = {}
    for addr in sorted(set(_referenced(code, start))):
        if addr % 8 or image.executable(addr):
            continue
        slots = image.pointers(addr, _SLOTS)
        if (
            slots is not None
            and all(map(image.executable, slots))
            and sum(start <= s < start + size for s in slots) >= _SLOTS // 2
        ):
            tables[addr] = slots
    if len(tables) != 1:
        what = "no" if not tables else f"{len(tables)} candidate"
        raise UnsupportedPython(
            f"{image.name}: {what} opcode_targets table found in {EVAL} "
            "(not a computed-goto build the hooks can read)"
        )
    [(addr, slots)] = tables.items()
    return addr, slots


def find_hooks(t: PythonTarget, proc_root: Path = Path("/proc")) -> PythonHooks:
    """The uprobe file offsets that see t's Python functions start and return;
    UnsupportedPython with the reason where they cannot be found."""
    path = proc_root / str(t.pid) / "root" / t.binary.lstrip("/")
    version = ".".join(map(str, t.version[:2]))
    try:
        with open(path, "rb") as fh:
            image = _Image(fh, t.binary)
            if t.version[:2] == (3, 10):
                found = image.symbol(EVAL)
                offset = image.file_offset(found[0]) if found else None
                if offset is None:
                    raise UnsupportedPython(f"{t.binary}: no {EVAL} in the file")
                return PythonHooks(t.binary, "eval_frame", (offset,), ())
            ops = OPCODES.get(t.version[:2])
            if ops is None:
                known = ", ".join(["3.10", *(f"{a}.{b}" for a, b in sorted(OPCODES))])
                raise UnsupportedPython(
                    f"CPython {version} ({t.binary}) has no opcode table "
                    f"for call hooks: hookable versions are {known}"
                )
            _, slots = opcode_targets(image)
            unknown = Counter(slots).most_common(1)[0][0]
            hooks: dict[str, tuple[int, ...]] = {}
            for kind in ("entry", "exit"):
                offsets = []
                for name, op in ops[kind].items():
                    offset = image.file_offset(slots[op])
                    if slots[op] == unknown or offset is None:
                        raise UnsupportedPython(
                            f"{t.binary}: CPython {version}'s {name} "
                            f"({op}) has no handler in opcode_targets"
                        )
                    offsets.append(offset)
                hooks[kind] = tuple(offsets)
            sites = {kind: tuple(image.file_offset(_site(image, _vaddr(image, off))) or off
                                 for off in hooks[kind])
                     for kind in ("entry", "exit")}  # fmt: skip
    except OSError as e:
        raise UnsupportedPython(f"cannot read {t.binary}: {e}") from None
    except (ELFError, struct.error) as e:
        raise UnsupportedPython(f"{t.binary}: unreadable ELF: {e}") from None
    every = hooks["entry"] + hooks["exit"]
    if len(set(every)) != len(every):
        raise UnsupportedPython(
            f"{t.binary}: CPython {version}'s hook opcodes share a handler in opcode_targets"
        )
    return PythonHooks(
        t.binary, "opcode", hooks["entry"], hooks["exit"], sites["entry"], sites["exit"]
    )


def _vaddr(image: _Image, offset: int) -> int:
    """The virtual address of a file offset in an executable segment."""
    for lo, _, filesz, off, _ in image.segments:
        if off <= offset < off + filesz:
            return offset - off + lo
    raise UnsupportedPython(f"{image.name}: offset {offset:#x} is in no loaded segment")
