"""CPython 3.13+'s own account of its layout, read from the process: ``_Py_DebugOffsets``.

``_PyRuntime`` begins with ``_Py_DebugOffsets debug_offsets``: the cookie ``"xdebugpy"``,
``version`` (PY_VERSION_HEX), ``free_threaded``, then one sub-struct per CPython structure,
each a ``size`` (sizeof) followed by the offsets of its fields, every member a ``uint64_t``
(so no padding). ``walker_offsets`` maps what it gives onto the offset names of
manager/python/offsets.py (the names the BPF walker and the agent take through
``--py-offsets``).

The struct itself "is NOT backwards compatible between minor versions" (its comment in
CPython), so each minor version's member list is written out here, from its own header:

- 3.13: ``Include/internal/pycore_runtime.h`` (3.13.0, as installed by pyenv);
- 3.14: ``Include/internal/pycore_debug_offsets.h`` of the 3.14 branch (read at 3.14.0b4+:
  ``interpreter_state`` gains ``threads_main``, ``code_object_generation`` and
  ``tlbc_generation``, ``interpreter_frame`` gains ``stackpointer`` and ``tlbc_index``,
  ``code_object`` gains ``co_tlbc``, and ``set_object``, ``gen_object``, ``llist_node`` and
  ``debugger_support`` are new).

A later minor version is refused, as is a free-threaded build. Two offsets the walker needs
are not in the debug offsets: ``code_firsttraceable`` (``_co_firsttraceable``) and
``str_compact_data`` (sizeof(PyCompactUnicodeObject)). They come from the generated table
where the version has one (3.13, and only if the table agrees with the process on every
offset both give); for 3.14 from its published struct layout (``_LAID_OUT_BESIDE``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = ["COOKIE", "LAYOUTS", "BadDebugOffsets", "layout_size", "parse", "walker_offsets"]

COOKIE = b"xdebugpy"

_COMMON_HEAD = (("runtime_state", ("size", "finalizing", "interpreters_head")),)
_OBJECTS_313 = (
    ("pyobject", ("size", "ob_type")),
    ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
    ("tuple_object", ("size", "ob_item", "ob_size")),
    ("list_object", ("size", "ob_item", "ob_size")),
)
_OBJECTS_TAIL = (
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
    ("unicode_object", ("size", "state", "length", "asciiobject_size")),
    ("gc", ("size", "collecting")),
)
_THREAD_STATE = (
    "thread_state",
    (
        "size",
        "prev",
        "next",
        "interp",
        "current_frame",
        "thread_id",
        "native_thread_id",
        "datastack_chunk",
        "status",
    ),
)
_GIL = (
    "ceval_gil",
    "gil_runtime_state",
    "gil_runtime_state_enabled",
    "gil_runtime_state_locked",
    "gil_runtime_state_holder",
)
_CODE = (
    "size",
    "filename",
    "name",
    "qualname",
    "linetable",
    "firstlineno",
    "argcount",
    "localsplusnames",
    "localspluskinds",
    "co_code_adaptive",
)

# The members after cookie[8], version and free_threaded, in order: (sub-struct, fields).
LAYOUTS: dict[tuple[int, int], tuple[tuple[str, tuple[str, ...]], ...]] = {
    (3, 13): (
        *_COMMON_HEAD,
        (
            "interpreter_state",
            (
                "size",
                "id",
                "next",
                "threads_head",
                "gc",
                "imports_modules",
                "sysdict",
                "builtins",
                *_GIL,
            ),
        ),
        _THREAD_STATE,
        (
            "interpreter_frame",
            ("size", "previous", "executable", "instr_ptr", "localsplus", "owner"),
        ),
        ("code_object", _CODE),
        *_OBJECTS_313,
        *_OBJECTS_TAIL,
    ),
    (3, 14): (
        *_COMMON_HEAD,
        (
            "interpreter_state",
            (
                "size",
                "id",
                "next",
                "threads_head",
                "threads_main",
                "gc",
                "imports_modules",
                "sysdict",
                "builtins",
                *_GIL,
                "code_object_generation",
                "tlbc_generation",
            ),
        ),
        _THREAD_STATE,
        (
            "interpreter_frame",
            (
                "size",
                "previous",
                "executable",
                "instr_ptr",
                "localsplus",
                "owner",
                "stackpointer",
                "tlbc_index",
            ),
        ),
        ("code_object", (*_CODE, "co_tlbc")),
        *_OBJECTS_313,
        ("set_object", ("size", "used", "table", "mask")),
        *_OBJECTS_TAIL,
        ("gen_object", ("size", "gi_name", "gi_iframe", "gi_frame_state")),
        ("llist_node", ("next", "prev")),
        (
            "debugger_support",
            (
                "eval_breaker",
                "remote_debugger_support",
                "remote_debugging_enabled",
                "debugger_pending_call",
                "debugger_script_path",
                "debugger_script_path_size",
            ),
        ),
    ),
}

# Our offset name <- (sub-struct, field) of the debug offsets: the same in 3.13 and 3.14.
_FROM_DEBUG = {
    "runtime_interp_head": ("runtime_state", "interpreters_head"),
    "interp_next": ("interpreter_state", "next"),
    "tstate_next": ("thread_state", "next"),
    "interp_threads_head": ("interpreter_state", "threads_head"),
    "tstate_native_tid": ("thread_state", "native_thread_id"),
    "tstate_current_frame": ("thread_state", "current_frame"),
    "frame_code": ("interpreter_frame", "executable"),  # f_executable
    "frame_instr": ("interpreter_frame", "instr_ptr"),
    "frame_previous": ("interpreter_frame", "previous"),
    "frame_owner": ("interpreter_frame", "owner"),
    "code_firstlineno": ("code_object", "firstlineno"),
    "code_filename": ("code_object", "filename"),
    "code_qualname": ("code_object", "qualname"),
    "code_linetable": ("code_object", "linetable"),
    "code_adaptive": ("code_object", "co_code_adaptive"),
    "bytes_size": ("bytes_object", "ob_size"),
    "bytes_data": ("bytes_object", "ob_sval"),
    "str_length": ("unicode_object", "length"),
    "str_state": ("unicode_object", "state"),
    "str_ascii_data": ("unicode_object", "asciiobject_size"),  # sizeof(PyASCIIObject)
}
_NOT_GIVEN = ("code_firsttraceable", "str_compact_data")
_ORDER = (
    "runtime_interp_head",
    "interp_next",
    "tstate_next",
    "interp_threads_head",
    "tstate_native_tid",
    "tstate_current_frame",
    "frame_code",
    "frame_instr",
    "frame_previous",
    "frame_owner",
    "code_firstlineno",
    "code_filename",
    "code_qualname",
    "code_linetable",
    "code_firsttraceable",
    "code_adaptive",
    "bytes_size",
    "bytes_data",
    "str_length",
    "str_state",
    "str_ascii_data",
    "str_compact_data",
)


def _beside_314(d: Mapping[str, int]) -> dict[str, int]:
    """3.14's layout (GIL build, x86-64), from its headers: Include/cpython/code.h ends
    PyCodeObject with ``int _co_firsttraceable; void *co_extra; char co_code_adaptive[]``
    (``co_tlbc`` sits between only in free-threaded builds), so _co_firsttraceable is 16
    bytes before co_code_adaptive; Include/cpython/unicodeobject.h makes PyUnicodeObject a
    PyCompactUnicodeObject and one pointer (``data``), and PyCompactUnicodeObject a
    PyASCIIObject, ``utf8_length`` and ``utf8``. The same holds for 3.11-3.13's code
    objects and 3.12-3.13's strings (checked against the generated tables and a running
    3.13 by tests/manager/python/test_debug_offsets.py)."""
    compact = d["unicode_object.size"] - 8
    if compact != d["unicode_object.asciiobject_size"] + 16:
        raise BadDebugOffsets(
            f"sizeof(PyUnicodeObject) {d['unicode_object.size']} and sizeof(PyASCIIObject) "
            f"{d['unicode_object.asciiobject_size']} do not fit 3.14's string layout"
        )
    return {
        "code_firsttraceable": d["code_object.co_code_adaptive"] - 16,
        "str_compact_data": compact,
    }


_LAID_OUT_BESIDE = {(3, 14): _beside_314}


class BadDebugOffsets(ValueError):
    """The debug offsets are missing, of another layout, or cannot be trusted: why."""


def layout_size(version: tuple[int, int]) -> int:
    """Bytes of _Py_DebugOffsets in this minor version."""
    return 8 + 8 * (2 + sum(len(fields) for _, fields in LAYOUTS[version]))


def parse(image: bytes, version: tuple[int, int]) -> dict[str, int]:
    """{"sub_struct.field": value, "version": .., "free_threaded": ..} of the debug offsets
    at the start of image, laid out as in that minor version."""
    if image[:8] != COOKIE:
        raise BadDebugOffsets(
            f"_PyRuntime does not begin with the debug offsets' cookie "
            f"{COOKIE.decode()!r} (found {image[:8]!r})"
        )
    n = layout_size(version)
    if len(image) < n:
        raise BadDebugOffsets(f"{len(image)} bytes of debug offsets, {n} needed")
    values = struct.unpack_from(f"<{(n - 8) // 8}Q", image, 8)
    names = ["version", "free_threaded"] + [
        f"{s}.{f}" for s, fields in LAYOUTS[version] for f in fields
    ]
    return dict(zip(names, values, strict=True))


def walker_offsets(
    image: bytes,
    hexversion: int,
    runtime_size: int | None = None,
    table: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The walker's offsets (names as manager/python/offsets.py) from the debug offsets at
    the start of image (_PyRuntime's first bytes), checked: the cookie, the version equal
    to the process's Py_Version (hexversion), a build with the GIL, PyObject where it is in
    every such build, _PyRuntimeState's size equal to the _PyRuntime symbol's (runtime_size,
    where known), every offset inside its structure. table: the generated offsets of this
    minor version, if any, for the two offsets the debug offsets do not give."""
    version = (hexversion >> 24, (hexversion >> 16) & 0xFF)
    if version not in LAYOUTS:
        known = ", ".join(f"{a}.{b}" for a, b in sorted(LAYOUTS))
        raise BadDebugOffsets(
            f"the layout of {version[0]}.{version[1]}'s _Py_DebugOffsets "
            f"is not known here (it changes with each minor version; "
            f"known: {known})"
        )
    d = parse(image, version)
    if d["version"] != hexversion:
        raise BadDebugOffsets(
            f"the debug offsets' version {d['version']:#x} is not the "
            f"process's Py_Version {hexversion:#x}"
        )
    if d["free_threaded"]:
        raise BadDebugOffsets(
            "a free-threaded build: only builds with the GIL are read "
            "(free-threaded frames run per-thread bytecode copies)"
        )
    if (d["pyobject.size"], d["pyobject.ob_type"]) != (16, 8):
        raise BadDebugOffsets(
            f"PyObject of {d['pyobject.size']} bytes with ob_type at "
            f"{d['pyobject.ob_type']}: not the 64-bit layout with the GIL"
        )
    if runtime_size is not None and d["runtime_state.size"] != runtime_size:
        raise BadDebugOffsets(
            f"the debug offsets give sizeof(_PyRuntimeState) "
            f"{d['runtime_state.size']}, the _PyRuntime symbol "
            f"{runtime_size} bytes"
        )
    out = {}
    for name, (sub, member) in _FROM_DEBUG.items():
        value, size = d[f"{sub}.{member}"], d[f"{sub}.size"]
        if value >= size:
            raise BadDebugOffsets(
                f"{sub}.{member} = {value} is not inside its structure ({size} bytes)"
            )
        out[name] = value
    if table is not None:
        differ = sorted(k for k in out if k in table and table[k] != out[k])
        if differ:
            raise BadDebugOffsets(
                f"the process's debug offsets differ from the {version[0]}.{version[1]} "
                f"table at {', '.join(differ)}: {', '.join(_NOT_GIVEN)} (not in the debug "
                "offsets) cannot be taken from it"
            )
        missing = [k for k in _NOT_GIVEN if k not in table]
        if missing:
            raise BadDebugOffsets(
                f"{', '.join(missing)}: in neither the debug offsets nor "
                f"the {version[0]}.{version[1]} table"
            )
        out.update({k: table[k] for k in _NOT_GIVEN})
    elif version in _LAID_OUT_BESIDE:
        out.update(_LAID_OUT_BESIDE[version](d))
    else:
        raise BadDebugOffsets(
            f"{', '.join(_NOT_GIVEN)} are not in the debug offsets, and "
            f"{version[0]}.{version[1]} has neither a table nor a known "
            "layout for them"
        )
    return {k: out[k] for k in _ORDER}
