"""xpucore.abi: layouts read from xpucore/include/*.h, batch checks, capture files, the dump CLI."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend import dump
from xpucore import abi
from xpucore.probes import cuda as cuda_probe

HDR_FIELDS = ("ts_ns", "duration_ns", "ret", "pid", "tid", "func", "flags", "cpu", "comm")


def distinct_events(n: int, salt: int = 0) -> np.ndarray:
    """n events where every field of every row holds a different value."""
    ev = abi.empty_events(n)
    for row in range(n):
        for i, name in enumerate(ev.dtype.names or ()):
            kind, size = ev.dtype[name].kind, ev.dtype[name].itemsize
            if kind == "S":
                ev[row][name] = f"p{salt}-{row}-{i}".encode()[:size]
                continue
            v = 1 + salt * 7919 + row * 101 + i  # < 2**16 for the 16-bit fields
            if size == 8:
                v += (row + 1) << 40  # catches a 64-bit field read as 32 bits
            ev[row][name] = -v if kind == "i" else v
    return ev


def batch_bytes(events: np.ndarray | None = None, **kw: Any) -> bytes:
    kw.setdefault("monitor_id", "mon-1")
    kw.setdefault("machine_id", "machine-1")
    return abi.encode_batch(abi.empty_events(2) if events is None else events, **kw)


def patched(buf: bytes, **fields: int | bytes) -> bytes:
    out = bytearray(buf)
    hdr = np.frombuffer(out, dtype=abi.BATCH_DTYPE, count=1)
    for name, value in fields.items():
        hdr[name] = value
    return bytes(out)


# --- layout ------------------------------------------------------------------


def c_layout(tmp_path: Path, struct: str, members: dict[str, str]) -> dict[str, tuple[int, int]]:
    """{name: (offsetof, sizeof)} for members of struct, as the C compiler lays them out."""
    lines = [
        f'printf("{name} %zu %zu\\n", offsetof(struct {struct}, {path}), '
        f"sizeof(((struct {struct} *)0)->{path}));"
        for name, path in members.items()
    ]
    src = tmp_path / "layout.c"
    src.write_text(
        '#include <stddef.h>\n#include <stdio.h>\n#include "cuda.h"\n'
        f'int main(void) {{\nprintf("sizeof %zu 0\\n", sizeof(struct {struct}));\n'
        + "\n".join(lines)
        + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run(
        ["cc", "-Wall", "-Werror", "-I", str(abi.HEADER_DIR), str(src), "-o", str(exe)],
        check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {n: (int(o), int(s)) for n, o, s in (line.split() for line in out.splitlines())}


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")
@pytest.mark.parametrize("struct", ["cuda_event", "xpu_batch_hdr"])
def test_dtype_matches_c_compiler(tmp_path: Path, struct: str) -> None:
    dt = abi.CUDA_EVENT_DTYPE if struct == "cuda_event" else abi.BATCH_DTYPE
    names = dt.names or ()
    paths = {n: f"h.{n}" if struct == "cuda_event" and n in HDR_FIELDS else n for n in names}
    c = c_layout(tmp_path, struct, paths)
    assert c.pop("sizeof")[0] == dt.itemsize
    assert c == {n: (dt.fields[n][1], dt[n].itemsize) for n in names}  # type: ignore[index]


def test_flattened_names_and_constants() -> None:
    names = abi.empty_events(0).dtype.names
    assert names is not None and names[: len(HDR_FIELDS)] == HDR_FIELDS
    assert {"stream", "ptr", "ptr2", "bytes", "grid_x", "block_z", "kind"} <= set(names)
    assert abi.MONITOR_TYPES == {"CUDA": 1, "ACL": 2, "PYTHON": 3, "SYSCALL": 4, "OLLAMA": 5}
    assert abi.BATCH_MAGIC.to_bytes(4, "little") == b"XPUB"
    assert (abi.BATCH_HDR_SIZE, abi.EV_INCOMPLETE, abi.BATCH_FINAL) == (176, 1, 1)
    assert abi.CUDA_EVENT_DTYPE["comm"].itemsize == abi.COMM_LEN
    assert abi.BATCH_DTYPE["monitor_id"].itemsize == abi.MONITOR_ID_LEN
    assert abi.BATCH_DTYPE["machine_id"].itemsize == abi.MACHINE_ID_LEN


# --- encode / decode -----------------------------------------------------------


def test_roundtrip_every_field() -> None:
    ev = distinct_events(4)
    hdr = dict(
        seq=2**40 + 1, kernel_drops=2**33 + 2, inflight_drops=2**34 + 3, send_drops=2**35 + 4,
        mono_to_real_ns=-(2**50) - 5, agent_pid=4242, flags=abi.BATCH_FINAL,
    )  # fmt: skip
    buf = batch_bytes(ev, monitor_id="3f2a-uuid", machine_id="m" * 71, **hdr)
    assert len(buf) == abi.BATCH_HDR_SIZE + 4 * ev.dtype.itemsize
    for form in (buf, bytearray(buf), memoryview(buf)):
        b = abi.decode_batch(form)
        assert np.array_equal(b.events, ev)
        assert b.events.dtype == ev.dtype and not b.events.flags.owndata  # a view, not a copy
        assert {k: getattr(b, k) for k in hdr} == hdr
        assert (b.monitor_id, b.machine_id) == ("3f2a-uuid", "m" * 71)
        assert (b.magic, b.abi_version, b.hdr_size) == (abi.BATCH_MAGIC, abi.ABI_VERSION, 176)
        assert (b.monitor_type, b.event_size, b.event_count) == (1, ev.dtype.itemsize, 4)
        assert b.final


def test_decode_zero_events() -> None:
    b = abi.decode_batch(batch_bytes(abi.empty_events(0)))
    assert b.event_count == 0 and len(b.events) == 0 and not b.final


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="dtype"):
        batch_bytes(np.zeros(2, dtype=np.uint64))
    with pytest.raises(ValueError, match="monitor_id"):
        batch_bytes(monitor_id="x" * abi.MONITOR_ID_LEN)
    with pytest.raises(ValueError, match="seq"):
        batch_bytes(seq=-1)
    with pytest.raises(ValueError, match="no event layout"):
        batch_bytes(monitor_type="OLLAMA")


GOOD = batch_bytes(distinct_events(3))


@pytest.mark.parametrize(
    ("buf", "message"),
    [
        (b"", "too short: 0 bytes"),
        (GOOD[:100], "too short: 100 bytes"),
        (patched(GOOD, magic=0x12345678), "bad magic 0x12345678"),
        (patched(GOOD, abi_version=2), "unsupported abi_version 2"),
        (patched(GOOD, hdr_size=184), "hdr_size 184"),
        (patched(GOOD, monitor_type=77), "unknown monitor_type 77"),
        (patched(GOOD, monitor_type=5), r"monitor_type 5 \(OLLAMA\) has no event layout"),
        (
            patched(GOOD, event_size=64),
            rf"event_size 64 .*sizeof\(struct cuda_event\) = {abi.CUDA_EVENT_DTYPE.itemsize}",
        ),
        (patched(GOOD, event_count=4), "event_count 4"),
        (patched(GOOD, event_count=0xFFFFFFFF), "event_count 4294967295"),
        (GOOD[:-1], "batch length"),
        (GOOD + b"\0", "batch length"),
        (patched(GOOD, monitor_id=b"\xff\xfe"), "monitor_id is not valid UTF-8"),
    ],
)
def test_decode_rejects(buf: bytes, message: str) -> None:
    with pytest.raises(abi.AbiError, match=message):
        abi.decode_batch(buf)


def test_random_garbage_raises_only_abi_error() -> None:
    rng = np.random.default_rng(1)
    for n in (0, 1, 175, 176, 177, 400):
        for _ in range(50):
            buf = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            with pytest.raises(abi.AbiError):
                abi.decode_batch(buf)
            with pytest.raises(abi.AbiError):
                list(abi.iter_batches(io.BytesIO(GOOD[:8] + buf)))


# --- capture files ---------------------------------------------------------------


def three_batches() -> list[bytes]:
    return [
        batch_bytes(distinct_events(n, salt=seq), seq=seq, kernel_drops=seq * 10)
        for seq, n in enumerate((3, 0, 5))
    ]


def test_iter_batches_concatenated() -> None:
    parts = three_batches()
    batches = list(abi.iter_batches(io.BytesIO(b"".join(parts))))
    assert [b.seq for b in batches] == [0, 1, 2]
    assert [b.event_count for b in batches] == [3, 0, 5]
    assert [b.kernel_drops for b in batches] == [0, 10, 20]
    assert np.array_equal(batches[2].events, distinct_events(5, salt=2))
    assert list(abi.iter_batches(io.BytesIO(b""))) == []


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"XPUB", "at byte offset {end}: truncated batch header: 4 of 176 bytes"),
        (b"\0" * 200, "at byte offset {end}: bad magic 0x00000000"),
        (
            GOOD[:-7],
            "at byte offset {end}: truncated batch: 3 events need "
            f"{3 * abi.CUDA_EVENT_DTYPE.itemsize} bytes",
        ),
        (patched(GOOD, event_count=2**32 - 1)[:500], "at byte offset {end}: truncated batch"),
    ],
)
def test_iter_batches_bad_tail(tmp_path: Path, tail: bytes, message: str) -> None:
    head = b"".join(three_batches())
    (tmp_path / "capture.bin").write_bytes(head + tail)
    with open(tmp_path / "capture.bin", "rb") as f:  # a real file: read(n) allocates n
        it = abi.iter_batches(f)
        assert [b.seq for b in (next(it), next(it), next(it))] == [0, 1, 2]
        with pytest.raises(abi.AbiError, match=re.escape(message.format(end=len(head)))):
            next(it)


# --- function ids and records ------------------------------------------------------


def header_enum(prefix: str) -> dict[str, int]:
    """Members of an enum in xpucore/include/cuda.h or the cuda_fns.h it includes (enum
    cuda_fn), parsed with a regex rather than cffi."""
    text = "".join((abi.HEADER_DIR / name).read_text() for name in ("cuda.h", "cuda_fns.h"))
    return {m[1]: int(m[2], 0) for m in re.finditer(rf"\b{prefix}(\w+)\s*=\s*(\w+)", text)}


def test_function_names() -> None:
    names = abi.function_names()
    assert names == {v: k for k, v in header_enum("CUDA_FN_").items()}
    assert len(set(names.values())) == len(names) > 20
    assert abi.function_name(0x100) == "cudaLaunchKernel"
    assert abi.function_name(0x780) == "cuMemAlloc_v2"
    assert abi.function_name(0x7777) == "fn_0x7777"
    assert abi.arg_class(0x100) == "LAUNCH"
    assert abi.arg_class(0x601) == "CU_MEMCPY_ASYNC"
    assert abi.arg_class(0x001) == "NONE"


def test_every_arg_class_has_names() -> None:
    classes = header_enum("CUDA_ARGS_")
    assert set(cuda_probe.ARGS) == set(classes)
    assert {abi.arg_class(f) for f in abi.function_names()} <= set(classes)


def one_event(func: int, **fields: Any) -> np.ndarray:
    ev = abi.empty_events(1)
    ev["func"] = func
    for k, v in fields.items():
        ev[k] = v
    return ev


@pytest.mark.parametrize(
    ("func", "fields", "args"),
    [
        (0x100, dict(ptr=0xAB, grid_x=1, grid_y=2, grid_z=3, block_x=4, block_y=5, block_z=6,
                     bytes=48, stream=0x5), dict(func=0xAB, grid=[1, 2, 3], block=[4, 5, 6],
                                                 shared_mem=48, stream=5)),
        (0x400, dict(ptr=1, ptr2=2, bytes=3, kind=4, stream=9),
         dict(dst=1, src=2, bytes=3, kind=4)),
        (0x500, dict(ptr=1, ptr2=2, bytes=3, kind=4, stream=9),
         dict(dst=1, src=2, bytes=3, kind=4, stream=9)),
        (0x601, dict(ptr=1, ptr2=2, bytes=3, kind=2, stream=9),
         dict(dst=1, src=2, bytes=3, kind=2, stream=9)),
        (0x700, dict(ptr=2**63 + 1, bytes=4096), dict(ptr=2**63 + 1, bytes=4096)),
        (0x900, dict(ptr=7, bytes=8, kind=1), dict(ptr=7, bytes=8, flags=1)),
        (0xA00, dict(ptr=7, stream=3), dict(ptr=7)),
        (0xB01, dict(ptr=7, stream=3), dict(ptr=7, stream=3)),
        (0xC00, dict(stream=3), dict(stream=3)),
        (0xD00, dict(ptr=7, stream=3), dict(event=7, stream=3)),
        (0xE00, dict(ptr=7), dict(event=7)),
        (0xF00, dict(ptr=7, stream=3), dict(graph_exec=7, stream=3)),
        (0x001, dict(ptr=7, stream=3), {}),
        (0x1000, dict(ptr=7, stream=3), {}),  # cudaSetDevice: the device asked for
        (0x7777, dict(ptr=7, stream=3), {}),
    ],
)  # fmt: skip
def test_event_records_args(func: int, fields: dict[str, int], args: dict[str, Any]) -> None:
    """Each class's arguments in call order, then the device and the Python stack (every
    CUDA event has them)."""
    ev = one_event(func, device=3, **fields)
    (rec,) = abi.event_records(abi.decode_batch(batch_bytes(ev)))
    assert rec["args"] == {**args, "device": 3, "py_stack": 0}
    assert list(rec["args"])[-2:] == ["device", "py_stack"]
    assert rec["func"] == abi.function_name(func)


def test_event_records_header_fields() -> None:
    ev = one_event(0xC00, ts_ns=1000, duration_ns=7, ret=-35, pid=10, tid=11, cpu=3,
                   comm=b"python3\0junk", flags=abi.EV_INCOMPLETE)  # fmt: skip
    (rec,) = abi.event_records(abi.decode_batch(batch_bytes(ev, mono_to_real_ns=10**18)))
    assert rec == {
        "ts_ns": 10**18 + 1000, "duration_ns": 7, "pid": 10, "tid": 11, "cpu": 3,
        "comm": "python3", "func": "cudaStreamSynchronize", "ret": -35, "incomplete": True,
        "args": {"stream": 0, "device": 0, "py_stack": 0},
    }  # fmt: skip
    json.dumps(rec)


# --- another header directory -------------------------------------------------------


def test_header_dir_override_finds_new_probe(tmp_path: Path) -> None:
    for name in ("xpu_abi.h", "cuda.h", "cuda_fns.h"):
        shutil.copy(abi.HEADER_DIR / name, tmp_path / name)
    (tmp_path / "acl.h").write_text(
        '#include "xpu_abi.h"\n'
        "enum acl_arg_class { ACL_ARGS_STREAM = 1 };\n"
        "enum acl_fn { ACL_FN_aclrtSynchronizeStream = 0x100 };\n"
        "struct acl_pair { __u32 a; __u16 b; __u16 c; };\n"
        "struct acl_event { struct xpu_event_hdr h; __u64 stream; __u32 dev[2];\n"
        "                   struct acl_pair pair; };\n"
    )
    other = abi.Abi(tmp_path)
    ev = other.empty_events(2, "ACL")
    assert ev.dtype.itemsize == 56 + 8 + 8 + 8 and ev.dtype["dev"].shape == (2,)
    assert (ev.dtype.fields["a"][1], ev.dtype.fields["b"][1]) == (72, 76)  # type: ignore[index]
    ev["dev"] = [[1, 2], [3, 4]]
    buf = other.encode_batch(ev, monitor_id="a", machine_id="b", monitor_type="ACL")
    b = other.decode_batch(buf)
    assert b.monitor_type == abi.MONITOR_TYPES["ACL"] and np.array_equal(b.events, ev)
    assert other.function_name(0x100, "ACL") == "aclrtSynchronizeStream"
    with pytest.raises(abi.AbiError, match="ACL"):
        abi.decode_batch(buf)  # the default headers have no ACL layout


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("void *p;", r"type void \* is not allowed"),
        ("__u32 bits : 3;", "bit fields"),
        ("__u32 x; __u64 y;", "4 bytes of implicit padding"),
        ("__u64 y; __u32 x;", "4 bytes of implicit padding"),
    ],
)
def test_header_dir_rejects_non_abi_types(tmp_path: Path, member: str, message: str) -> None:
    shutil.copy(abi.HEADER_DIR / "xpu_abi.h", tmp_path / "xpu_abi.h")
    (tmp_path / "acl.h").write_text(f"struct acl_event {{ struct xpu_event_hdr h; {member} }};\n")
    with pytest.raises(TypeError, match=message):
        abi.Abi(tmp_path)


# --- dump CLI -------------------------------------------------------------------------


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "capture.bin"
    path.write_bytes(b"".join(three_batches()))
    return path


def test_dump_events(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dump.main([str(capture)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 8
    assert lines[0]["comm"] == "p0-0-8" and lines[0]["func"] == abi.function_name(
        int(distinct_events(1)["func"][0])
    )


def test_dump_stats(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dump.main([str(capture), "--stats"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["seq"], s["event_count"], s["kernel_drops"]) for s in lines] == [
        (0, 3, 0), (1, 0, 10), (2, 5, 20),
    ]  # fmt: skip
    assert lines[0]["monitor_id"] == "mon-1" and lines[0]["monitor_type"] == "CUDA"


def test_dump_stdin(
    capture: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(capture.read_bytes())))
    assert dump.main(["-", "--stats"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_dump_errors(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = capture.read_bytes()
    capture.write_bytes(good + b"garbage!")
    assert dump.main([str(capture), "--stats"]) == 2
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3
    assert f"at byte offset {len(good)}: truncated batch header" in err
    assert dump.main([str(capture.with_name("missing.bin"))]) == 2
    assert "missing.bin" in capsys.readouterr().err
