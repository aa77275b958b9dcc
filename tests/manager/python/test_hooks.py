"""manager.python.hooks against real interpreters: the static Debian python3.11 and every
pyenv CPython installed here (shared libpython). The hooks found in a live process are
checked against a second, independent reading of the same file (the DWARF labels of the
eval loop's handlers in pyenv's builds; the non-PIE dispatch instruction and a plain read of
the table in Debian's), and, where gdb is installed, by breaking at them while the process
runs: they fire exactly once per call and per return of the function named, in its own
frame. What cannot be hooked is refused with the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from manager.python.hooks import EVAL, PythonHooks, find_hooks, hook_flag
from manager.python.opcodes import OPCODES
from manager.python.target import PythonTarget, UnsupportedPython, find_target
from tests.agent.procs import JsonLineProc
from tests.manager.python.test_target import INTERPRETERS, python_or_skip

CALLS = 37
WORKLOAD = """
import json, os, sys

def f(x):
    return x + 1

def g():
    pass

def main(n):
    print(json.dumps({"ready": os.getpid()}), flush=True)
    sys.stdin.readline()
    for i in range(n):
        f(i)
    for i in range(n):
        g()
    total = sum(map(f, range(n)))  # called from C
    print(json.dumps({"done": total}), flush=True)
    sys.stdin.readline()

main(int(sys.argv[1]))
"""


def start(python: Path, tmp_path: Path) -> tuple[JsonLineProc, PythonTarget]:
    script = tmp_path / "calls.py"
    script.write_text(WORKLOAD)
    work = JsonLineProc([str(python), str(script), str(CALLS)])
    try:
        return work, find_target(work.read_json("ready")["ready"])
    except BaseException:
        work.kill()
        raise


def stop(work: JsonLineProc) -> None:
    work.finish()
    work.kill()


def segments(elf: ELFFile) -> list[tuple[int, int, int]]:
    return [(s["p_vaddr"], s["p_filesz"], s["p_offset"]) for s in elf.iter_segments("PT_LOAD")]


def to_offset(elf: ELFFile, vaddr: int) -> int:
    [off] = [vaddr - lo + o for lo, n, o in segments(elf) if lo <= vaddr < lo + n]
    return off


def eval_extent(elf: ELFFile) -> tuple[int, int]:
    """_PyEval_EvalFrameDefault's (start, end) as file offsets, from .dynsym."""
    [sym] = elf.get_section_by_name(".dynsym").get_symbol_by_name(EVAL)
    start = to_offset(elf, sym["st_value"])
    return start, start + sym["st_size"]


def dwarf_labels(elf: ELFFile) -> dict[str, int]:
    """{label: file offset} of the eval loop's TARGET_* labels, from ceval.c's DWARF."""
    for cu in elf.get_dwarf_info().iter_CUs():
        name = cu.get_top_DIE().attributes.get("DW_AT_name")
        if name and name.value.endswith(b"Python/ceval.c"):
            return {die.attributes["DW_AT_name"].value.decode():
                    to_offset(elf, die.attributes["DW_AT_low_pc"].value)
                    for die in cu.iter_DIEs()
                    if die.tag == "DW_TAG_label" and "DW_AT_low_pc" in die.attributes
                    and "DW_AT_name" in die.attributes}  # fmt: skip
    raise AssertionError("no Python/ceval.c in the DWARF")


def dispatch_table(elf: ELFFile, data: bytes) -> int:
    """Non-PIE only: the table `mov TABLE(,%rax,8),%rax; jmp *%rax` dispatches through most
    often in _PyEval_EvalFrameDefault (one such pair ends nearly every handler)."""
    start, end = eval_extent(elf)
    found = Counter(
        m.group(1) for m in re.finditer(rb"\x48\x8b\x04\xc5(.{4})\xff\xe0", data[start:end], re.S)
    )
    ((table, uses),) = found.most_common(1)
    assert uses > 100, found
    return int(struct.unpack("<I", table)[0])


@pytest.mark.parametrize("name", INTERPRETERS)
def test_hooks_are_the_handlers(name: str, tmp_path: Path) -> None:
    python = python_or_skip(name)
    work, t = start(python, tmp_path)
    try:
        hooks = find_hooks(t)
    finally:
        stop(work)
    assert hooks.binary == t.binary
    data = Path(t.binary).read_bytes()
    with open(t.binary, "rb") as fh:
        elf = ELFFile(fh)
        start_, end = eval_extent(elf)
        if t.version[:2] == (3, 10):
            assert hooks == PythonHooks(t.binary, "eval_frame", (start_,), ())
            assert hook_flag(hooks) == f"eval:{start_:#x}:"
            return
        ops = OPCODES[t.version[:2]]
        assert hooks.mode == "opcode"
        assert len(hooks.entry) == len(ops["entry"]) and len(hooks.exit) == len(ops["exit"])
        every = hooks.entry + hooks.exit
        assert len(set(every)) == len(every)
        assert all(start_ < o < end for o in every)
        names = [*ops["entry"], *ops["exit"]]
        if elf.get_section_by_name(".debug_info"):  # pyenv: the compiler's own record of each label
            labels = dwarf_labels(elf)
            assert every == tuple(labels[f"TARGET_{n}"] for n in names)
        else:  # Debian: stripped, non-PIE; the table read plainly where code indexes it
            assert elf["e_type"] == "ET_EXEC"
            table = to_offset(elf, dispatch_table(elf, data))
            slots = struct.unpack_from("<256Q", data, table)
            want = [*ops["entry"].values(), *ops["exit"].values()]
            assert every == tuple(to_offset(elf, slots[op]) for op in want)
    # the probes sit on each handler's first branch, if it is a relative jump, or on it
    sites = hooks.entry_sites + hooks.exit_sites
    assert all(0 <= s - h < 256 for s, h in zip(sites, every, strict=True))
    for s, h in zip(sites, every, strict=True):
        assert (
            s == h
            or data[s] in range(0x70, 0x80)
            or data[s] in (0xEB, 0xE9)
            or (data[s] == 0x0F and data[s + 1] in range(0x80, 0x90))
        ), hex(s)
    assert hook_flag(hooks) == "opcode:{}:{}".format(
        ",".join(map(hex, hooks.entry_sites)), ",".join(map(hex, hooks.exit_sites))
    )


GDB_SCRIPT = """
import gdb, json, os
p = json.loads(os.environ["HOOKS_TEST"])
o = p["offsets"]
inf = gdb.selected_inferior()

def u64(a):
    return int.from_bytes(bytes(inf.read_memory(a, 8)), "little")

def name(code):  # an ASCII co_qualname (3.10: co_name)
    s = u64(code + o["code_qualname"])
    return bytes(inf.read_memory(s + o["str_ascii_data"], u64(s + o["str_length"]))).decode()

interp = u64(p["runtime"] + o["runtime_interp_head"])
tstate = u64(interp + o["interp_threads_head"])  # the only thread
hits = {}

class Hook(gdb.Breakpoint):
    def __init__(self, key, addr):
        super().__init__(f"*{addr:#x}", internal=True)
        self.key = key

    def stop(self):
        if p["mode"] == "eval_frame":  # _PyEval_EvalFrameDefault(tstate, frame, throwflag)
            frame = int(gdb.parse_and_eval("$rsi"))
        elif "tstate_current_frame" in o:
            frame = u64(tstate + o["tstate_current_frame"])
        else:
            frame = u64(u64(tstate + o["tstate_cframe"]) + o["cframe_current_frame"])
        got = hits.setdefault(self.key, {})
        n = name(u64(frame + o["frame_code"]))
        got[n] = got.get(n, 0) + 1
        return False

for key, addr in p["hooks"].items():
    Hook(key, addr)
print(json.dumps({"armed": True}), flush=True)
gdb.execute("continue")
print(json.dumps({"hits": hits}), flush=True)
"""


def runtime_address(pid: int, path: str, offset: int) -> int:
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        at = int(parts[2], 16)
        if len(parts) == 6 and parts[5] == path and at <= offset < at + hi - lo:
            return lo + offset - at
    raise AssertionError(f"{path}:{offset:#x} is not mapped")


@pytest.mark.parametrize("name", INTERPRETERS)
def test_hooks_fire_once_per_call_and_return(name: str, tmp_path: Path) -> None:
    """Breakpoints at the hooks (gdb) while the process calls f 2N times (N from Python, N
    through map() from C) and g N times: each call of each is seen entering once and (opcode
    mode) returning once, in its own frame."""
    python = python_or_skip(name)
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.skip("gdb is not installed: the hooks were not run")
    work, t = start(python, tmp_path)
    debugger = None
    try:
        hooks = find_hooks(t)
        where = {f"entry:{o:#x}": runtime_address(t.pid, t.binary, o) for o in hooks.entry}
        where |= {f"exit:{o:#x}": runtime_address(t.pid, t.binary, o) for o in hooks.exit}
        (tmp_path / "hooks.py").write_text(GDB_SCRIPT)
        env = {
            **os.environ,
            "HOOKS_TEST": json.dumps(
                {"mode": hooks.mode, "runtime": t.runtime, "offsets": t.offsets, "hooks": where}
            ),
        }
        debugger = JsonLineProc(
            [gdb, "-q", "-nx", "-batch", "-p", str(t.pid), "-x", str(tmp_path / "hooks.py")],
            env=env,
        )
        debugger.read_json("armed", timeout=60)
        work.send_line("go")
        assert work.read_json("done")["done"] == CALLS * (CALLS + 1) // 2
        work.finish()  # stdin closed: the workload returns and exits
        hits: dict[str, dict[str, int]] = debugger.read_json("hits", timeout=60)["hits"]
    finally:
        stop(work)
        if debugger is not None:
            debugger.kill()
    seen = {kind: Counter[str]() for kind in ("entry", "exit")}
    for key, names in hits.items():
        seen[key.split(":")[0]].update(names)
    assert (seen["entry"]["f"], seen["entry"]["g"]) == (2 * CALLS, CALLS), hits
    if hooks.mode == "opcode":
        assert (seen["exit"]["f"], seen["exit"]["g"]) == (2 * CALLS, CALLS), hits


def test_version_without_opcodes_is_refused() -> None:
    t = target("/usr/bin/python3.11", (3, 14, 0))
    with pytest.raises(
        UnsupportedPython,
        match=r"CPython 3\.14 \(/usr/bin/python3\.11\) has "
        r"no opcode table for call hooks: hookable versions are 3\.10, 3\.11",
    ):
        find_hooks(t)


def target(binary: str, version: tuple[int, int, int]) -> PythonTarget:
    """A target naming binary in this process's filesystem (find_hooks reads only the file)."""
    return PythonTarget(os.getpid(), binary, 0, version, {})


def test_elf_without_the_eval_loop_is_refused() -> None:
    with pytest.raises(UnsupportedPython, match=rf"/bin/true: no sized {EVAL} symbol"):
        find_hooks(target("/bin/true", (3, 12, 1)))
    with pytest.raises(UnsupportedPython, match=rf"/bin/true: no {EVAL} in the file"):
        find_hooks(target("/bin/true", (3, 10, 13)))


def test_eval_loop_without_a_table_is_refused(tmp_path: Path) -> None:
    """A _PyEval_EvalFrameDefault that dispatches through a switch (no computed gotos)."""
    source = tmp_path / "eval.c"
    source.write_text(
        "int _PyEval_EvalFrameDefault(const unsigned char *op, int acc) {\n"
        "  for (;; op++) switch (*op) {\n"
        + "".join(f"  case {i}: acc = acc * {i + 3} + {i}; break;\n" for i in range(40))
        + "  default: return acc; }\n}\n"
    )
    lib = tmp_path / "libpython3.12.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(source), "-o", str(lib)], check=True)
    with pytest.raises(
        UnsupportedPython,
        match=r"no opcode_targets table found in "
        rf"{EVAL} \(not a computed-goto build",
    ):
        find_hooks(target(str(lib), (3, 12, 1)))


def test_not_an_elf_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "libpython3.12.so"
    junk.write_bytes(b"not an ELF file at all" * 10)
    with pytest.raises(UnsupportedPython, match="unreadable ELF"):
        find_hooks(target(str(junk), (3, 12, 1)))
    with pytest.raises(UnsupportedPython, match="cannot read"):
        find_hooks(target(str(tmp_path / "missing.so"), (3, 12, 1)))


def test_flag() -> None:
    assert hook_flag(PythonHooks("/x", "opcode", (0x10, 0x20), (0x30,))) == "opcode:0x10,0x20:0x30"
    assert hook_flag(PythonHooks("/x", "eval_frame", (0x10,), ())) == "eval:0x10:"
