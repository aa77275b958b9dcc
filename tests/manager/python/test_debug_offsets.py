"""manager.python.debug_offsets: CPython 3.13+'s _Py_DebugOffsets, read from the process.

A real pyenv CPython 3.13 gives, from its own _PyRuntime, exactly the offsets its generated
table holds; when its cookie or version is wrong it is refused with the reason. 3.14 is not
installed here: its layout is checked on a _PyRuntime image built from the 3.14 header's
member list (transcribed below, apart from the module's) with known values."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from manager.python.debug_offsets import (
    LAYOUTS,
    BadDebugOffsets,
    layout_size,
    parse,
    walker_offsets,
)
from manager.python.offsets import OFFSETS
from manager.python.target import UnsupportedPython, _Memory, find_target, read_stacks
from tests.agent.procs import JsonLineProc
from tests.manager.python.test_target import SCRIPT, lines, pyenv

PY313 = pyenv("3.13")

# The members of _Py_DebugOffsets after cookie, version and free_threaded, as CPython's
# 3.14 branch declares them (Include/internal/pycore_debug_offsets.h, 3.14.0b4+).
HEADER_314 = """
struct _runtime_state { size; finalizing; interpreters_head; }
struct _interpreter_state { size; id; next; threads_head; threads_main; gc; imports_modules;
    sysdict; builtins; ceval_gil; gil_runtime_state; gil_runtime_state_enabled;
    gil_runtime_state_locked; gil_runtime_state_holder; code_object_generation;
    tlbc_generation; }
struct _thread_state { size; prev; next; interp; current_frame; thread_id; native_thread_id;
    datastack_chunk; status; }
struct _interpreter_frame { size; previous; executable; instr_ptr; localsplus; owner;
    stackpointer; tlbc_index; }
struct _code_object { size; filename; name; qualname; linetable; firstlineno; argcount;
    localsplusnames; localspluskinds; co_code_adaptive; co_tlbc; }
struct _pyobject { size; ob_type; }
struct _type_object { size; tp_name; tp_repr; tp_flags; }
struct _tuple_object { size; ob_item; ob_size; }
struct _list_object { size; ob_item; ob_size; }
struct _set_object { size; used; table; mask; }
struct _dict_object { size; ma_keys; ma_values; }
struct _float_object { size; ob_fval; }
struct _long_object { size; lv_tag; ob_digit; }
struct _bytes_object { size; ob_size; ob_sval; }
struct _unicode_object { size; state; length; asciiobject_size; }
struct _gc { size; collecting; }
struct _gen_object { size; gi_name; gi_iframe; gi_frame_state; }
struct _llist_node { next; prev; }
struct _debugger_support { eval_breaker; remote_debugger_support; remote_debugging_enabled;
    debugger_pending_call; debugger_script_path; debugger_script_path_size; }
"""
MEMBERS_314 = [
    (m.group(1), re.findall(r"(\w+);", m.group(2)))
    for m in re.finditer(r"struct _(\w+) \{(.*?)\}", HEADER_314, re.S)
]

# Known values for a 3.14 build (GIL, x86-64): the fields the walker reads, the sizes its
# checks look at; everything else a distinct filler.
VALUES_314 = {
    "runtime_state.size": 283904,
    "runtime_state.interpreters_head": 640,
    "interpreter_state.size": 12000,
    "interpreter_state.next": 7312,
    "interpreter_state.threads_head": 7400,
    "thread_state.size": 1040,
    "thread_state.next": 8,
    "thread_state.current_frame": 72,
    "thread_state.native_thread_id": 160,
    "interpreter_frame.size": 88,
    "interpreter_frame.previous": 8,
    "interpreter_frame.executable": 0,
    "interpreter_frame.instr_ptr": 56,
    "interpreter_frame.owner": 74,
    "code_object.size": 216,
    "code_object.filename": 112,
    "code_object.qualname": 128,
    "code_object.linetable": 136,
    "code_object.firstlineno": 68,
    "code_object.co_code_adaptive": 208,
    "pyobject.size": 16,
    "pyobject.ob_type": 8,
    "bytes_object.size": 40,
    "bytes_object.ob_size": 16,
    "bytes_object.ob_sval": 32,
    "unicode_object.size": 64,
    "unicode_object.state": 32,
    "unicode_object.length": 16,
    "unicode_object.asciiobject_size": 40,
}
EXPECTED_314 = {
    "runtime_interp_head": 640,
    "interp_next": 7312,
    "tstate_next": 8,
    "interp_threads_head": 7400,
    "tstate_native_tid": 160,
    "tstate_current_frame": 72,
    "frame_code": 0,
    "frame_instr": 56,
    "frame_previous": 8,
    "frame_owner": 74,
    "code_firstlineno": 68,
    "code_filename": 112,
    "code_qualname": 128,
    "code_linetable": 136,
    "code_firsttraceable": 192,
    "code_adaptive": 208,
    "bytes_size": 16,
    "bytes_data": 32,
    "str_length": 16,
    "str_state": 32,
    "str_ascii_data": 40,
    "str_compact_data": 56,
}
HEX_314 = 0x030E02F0  # 3.14.2 final


def image_314(
    cookie: bytes = b"xdebugpy", version: int = HEX_314, free_threaded: int = 0, **changed: int
) -> bytes:
    values = {**VALUES_314, **{k.replace("__", "."): v for k, v in changed.items()}}
    words = [version, free_threaded]
    for n, (sub, fields) in enumerate(MEMBERS_314):
        words += [values.get(f"{sub}.{f}", 50000 + n * 100 + i) for i, f in enumerate(fields)]
    return cookie + struct.pack(f"<{len(words)}Q", *words) + b"\xee" * 64  # then _PyRuntime


def test_the_314_layout_is_its_header() -> None:
    assert [(s, list(f)) for s, f in LAYOUTS[(3, 14)]] == MEMBERS_314
    assert layout_size((3, 14)) == 8 + 8 * (2 + sum(len(f) for _, f in MEMBERS_314))


def test_a_314_image_maps_onto_the_walker_offsets() -> None:
    got = walker_offsets(image_314(), HEX_314, runtime_size=283904)
    assert got == EXPECTED_314
    assert list(got) == list(OFFSETS[(3, 13)])  # the same names, in the same order
    # the two the debug offsets lack follow 3.14's layout, wherever co_code_adaptive is
    moved = walker_offsets(image_314(code_object__co_code_adaptive=200), HEX_314)
    assert (moved["code_adaptive"], moved["code_firsttraceable"]) == (200, 184)


def test_the_314_layout_rule_holds_for_every_generated_table() -> None:
    """_co_firsttraceable 16 bytes before co_code_adaptive, PyCompactUnicodeObject 16 bytes
    past PyASCIIObject: what 3.14 is read with, true of each version measured here since
    3.11 (code) and 3.12 (strings: 3.10-3.11 still had wstr, removed by PEP 623)."""
    for version, o in OFFSETS.items():
        if version >= (3, 11):
            assert o["code_adaptive"] - o["code_firsttraceable"] == 16, version
        if version >= (3, 12):
            assert o["str_compact_data"] - o["str_ascii_data"] == 16, version


@pytest.mark.parametrize(
    ("image", "hexversion", "reason"),
    [
        (image_314(cookie=b"xdebugpz"), HEX_314, "does not begin with the debug offsets' cookie"),
        (image_314(cookie=b"\0" * 8), HEX_314, "cookie 'xdebugpy' \\(found b'\\\\x00"),
        (
            image_314(version=0x030E01F0),
            HEX_314,
            "version 0x30e01f0 is not the process's Py_Version 0x30e02f0",
        ),
        (image_314(version=0x030D00F0), HEX_314, "is not the process's Py_Version"),
        (image_314(), 0x030F00A1, "layout of 3.15's _Py_DebugOffsets is not known here"),
        (image_314(free_threaded=1), HEX_314, "a free-threaded build"),
        (image_314(pyobject__size=32), HEX_314, "PyObject of 32 bytes"),
        (
            image_314(thread_state__native_thread_id=5000),
            HEX_314,
            "thread_state.native_thread_id = 5000 is not inside its structure",
        ),
        (image_314(unicode_object__size=72), HEX_314, "do not fit 3.14's string layout"),
        (image_314()[:100], HEX_314, "bytes of debug offsets"),
    ],
)
def test_what_cannot_be_trusted_is_refused(image: bytes, hexversion: int, reason: str) -> None:
    with pytest.raises(BadDebugOffsets, match=reason):
        walker_offsets(image, hexversion)


def test_runtime_size_must_match_the_symbol() -> None:
    with pytest.raises(
        BadDebugOffsets,
        match=r"sizeof\(_PyRuntimeState\) 283904, the "
        r"_PyRuntime symbol 283912 bytes",
    ):
        walker_offsets(image_314(), HEX_314, runtime_size=283912)


def test_a_table_that_disagrees_is_not_used() -> None:
    """3.13's two missing offsets come from its table only if the table is this build's."""
    table = {**EXPECTED_314, "frame_owner": 70}
    with pytest.raises(BadDebugOffsets, match=r"differ from the 3\.14 table at frame_owner"):
        walker_offsets(image_314(), HEX_314, table=table)
    assert walker_offsets(
        image_314(), HEX_314, table={**EXPECTED_314, "code_firsttraceable": 1}
    ) == {**EXPECTED_314, "code_firsttraceable": 1}


def need_313() -> Path:
    if PY313 is None or not PY313.exists():
        pytest.skip("no CPython 3.13 installed here (pyenv)")
    return PY313


def test_live_313_gives_its_generated_table() -> None:
    """The debug offsets a running 3.13 publishes equal, key for key, the offsets generated
    from its headers; its stacks read through them are the script's call chain."""
    work = JsonLineProc([str(need_313()), str(SCRIPT)])
    try:
        ready = work.read_json("ready")
        t = find_target(ready["pid"])
        mem = _Memory(Path(f"/proc/{t.pid}/mem"))
        try:
            image = mem.read(t.runtime, layout_size((3, 13)))
        finally:
            mem.close()
        stacks = read_stacks(t)
    finally:
        work.send_line("go")
        work.finish()
        work.kill()
    table = OFFSETS[(3, 13)]
    d = parse(image, (3, 13))
    hexversion = d["version"]
    assert hexversion >> 16 == 0x030D and d["free_threaded"] == 0
    assert t.offsets == table
    given = {
        k: v
        for k, v in walker_offsets(image, hexversion, table=table).items()
        if k not in ("code_firsttraceable", "str_compact_data")
    }
    assert given == {k: table[k] for k in given} and len(given) == len(table) - 2
    # the two the debug offsets lack, by 3.14's layout rule, agree with 3.13's table too
    assert d["code_object.co_code_adaptive"] - 16 == table["code_firsttraceable"]
    assert d["unicode_object.size"] - 8 == table["str_compact_data"]
    at, file = lines(), str(SCRIPT)
    assert [(f.function, f.line) for f in stacks[ready["pid"]]] == [
        ("inner", at["inner"]),
        ("outer", at["outer"]),
        ("main", at["main"]),
        ("<module>", at["module"]),
    ]
    assert all(f.file == file for f in stacks[ready["pid"]])


SPOIL = """import ctypes, sys
runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
if sys.argv[1] == "cookie":
    ctypes.memmove(runtime, b"xdebugpX", 8)
else:
    ctypes.memmove(runtime + 8, (sys.hexversion + 1).to_bytes(8, "little"), 8)
print('{"ready": 1}', flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (
            "cookie",
            r"CPython 3\.13\.\d+ \(.*libpython3\.13.*\): _PyRuntime does not begin with "
            r"the debug offsets' cookie 'xdebugpy' \(found b'xdebugpX'\)",
        ),
        (
            "version",
            r"CPython 3\.13\.\d+ .*: the debug offsets' version 0x30d..f1 is not the "
            r"process's Py_Version 0x30d..f0",
        ),
    ],
)
def test_live_313_with_spoiled_debug_offsets_is_refused(spoil: str, reason: str) -> None:
    """A 3.13 whose _PyRuntime no longer starts with its own debug offsets (here it
    overwrites them itself; CPython 3.13 never reads them) is refused, not walked."""
    work = JsonLineProc([str(need_313()), "-c", SPOIL, spoil])
    try:
        work.read_json("ready")
        with pytest.raises(UnsupportedPython, match=reason):
            find_target(work.proc.pid)
    finally:
        work.send_line("go")
        work.finish()
        work.kill()
