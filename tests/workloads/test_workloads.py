"""The test workloads agree with cuda_expect, and link what the capture tests assume.

No tracer here: each workload runs through its stdin/stdout protocol and its own
totals must equal what cuda_expect computes. Then, with call_recorder preloaded in
place of the CUDA libraries, every argument of every call, per thread and in order,
must equal cuda_expect's, so a capture test that fails blames the probe, not the
expectations. The ELF checks pin down which symbols the builds import and export
(the per-thread-stream header mapping, the driver stand-in's _v2 names, the partial
libcudart). Nothing is built here: the binaries come from `make build`
(XPUTRACE_BUILD_DIR/tests/workloads).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Symbol, SymbolTableSection

from tests.workloads import cuda_expect

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
RUNTIME_EXES = ["cuda_calls", "cuda_calls_ptsz", "cuda_calls13", "cuda_calls13_ptsz"]


@pytest.fixture(scope="session")
def workloads_dir() -> Path:
    build = Path(os.environ.get("XPUTRACE_BUILD_DIR", ROOT / "build"))
    path = build / "tests" / "workloads"
    if not (path / "cuda_calls").exists():
        pytest.skip(f"test workloads are not built in {path}: run `make build` first")
    return path


def built(workloads_dir: Path, name: str) -> Path:
    path = workloads_dir / name
    if not path.exists():
        if name.startswith("cuda_calls13"):
            pytest.skip(
                f"{name} not built: CMake found no lib64/libcudart.so.13 in XPU_CUDA13_ROOT"
            )
        pytest.fail(f"{path} is missing from a build that has cuda_calls")
    return path


class Workload:
    """One workload run through its protocol, with a deadline on every line."""

    def __init__(self, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}  # RPATH only
        env.update(extra_env or {})
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._buf = b""

    def __enter__(self) -> Workload:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()

    def read_line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + DEADLINE_S
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"{self.argv[0]}: no line in {DEADLINE_S}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"{self.argv[0]} exited {self.proc.returncode}: {err}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        return obj

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(DEADLINE_S)


def run(
    argv: list[str], threads: int, extra_env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ready, done; checks the protocol on the way (tids are live threads of pid)."""
    with Workload(argv, extra_env) as w:
        ready = w.read_line()
        assert ready["ready"] is True and ready["pid"] == w.proc.pid
        tids = ready["tids"]
        assert len(tids) == threads and len(set(tids)) == threads
        assert w.proc.pid not in tids  # worker threads, not main
        live = {int(p.name) for p in Path(f"/proc/{w.proc.pid}/task").iterdir()}
        assert set(tids) <= live
        w.send("go")
        done = w.read_line()
        assert done["done"] is True
        assert w.proc.poll() is None, "exited before the second line"
        w.send("exit")
        assert w.proc.wait(DEADLINE_S) == 0
    return ready, done


def totals(calls: list[cuda_expect.Call]) -> dict[str, int]:
    return dict(Counter(c.symbol for c in calls))


@pytest.mark.parametrize("exe", RUNTIME_EXES)
def test_runtime_totals(workloads_dir: Path, exe: str) -> None:
    threads, iters = 3, 2
    _, done = run(
        [str(built(workloads_dir, exe)), "--threads", str(threads), "--iters", str(iters)], threads
    )
    calls = cuda_expect.expected_calls(threads, iters, ptsz=exe.endswith("ptsz"))
    assert done["calls"] == totals(calls)
    # thread t made iters * (t + 1) rounds of 15 calls
    per_thread = Counter(c.thread for c in calls)
    assert per_thread == {t: 15 * iters * (t + 1) for t in range(threads)}


def test_burst_totals(workloads_dir: Path) -> None:
    threads, m = 2, 1000
    _, done = run(
        [
            str(built(workloads_dir, "cuda_calls")),
            "--threads",
            str(threads),
            "--iters",
            "1",
            "--burst",
            str(m),
        ],
        threads,
    )
    assert (
        done["calls"]
        == totals(cuda_expect.expected_burst(threads, m))
        == {"cudaMemcpy": threads * m}
    )


def test_driver_totals(workloads_dir: Path) -> None:
    threads, iters = 3, 2
    _, done = run(
        [
            str(built(workloads_dir, "cuda_driver_calls")),
            "--threads",
            str(threads),
            "--iters",
            str(iters),
        ],
        threads,
    )
    assert done["calls"] == totals(cuda_expect.expected_driver_calls(threads, iters))


def test_ctypes_totals(cudart12: Path) -> None:
    script = Path(__file__).with_name("cuda_ctypes.py")
    with Workload([sys.executable, str(script), str(cudart12), "3"]) as w:
        ready = w.read_line()
        assert ready["pid"] == w.proc.pid and ready["tids"] == [ready["tid"]]
        w.send("go")
        done = w.read_line()
        assert w.close_stdin() == 0  # EOF ends it too
    assert done["calls"] == totals(cuda_expect.expected_ctypes_calls(3))


def test_eof_after_done_ends_the_workload(workloads_dir: Path) -> None:
    with Workload([str(workloads_dir / "cuda_calls"), "--threads", "1", "--iters", "1"]) as w:
        w.read_line()
        w.send("go")
        assert w.read_line()["done"] is True
        assert w.close_stdin() == 0


def dynamic_symbols(path: Path) -> list[Symbol]:
    with path.open("rb") as f:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection)
        return list(dynsym.iter_symbols())


def undefined_symbols(path: Path) -> set[str]:
    return {s.name for s in dynamic_symbols(path) if s.name and s["st_shndx"] == "SHN_UNDEF"}


def exported_functions(path: Path) -> dict[str, int]:
    """name -> address of every function the library defines and exports."""
    return {
        s.name: s["st_value"]
        for s in dynamic_symbols(path)
        if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] != "SHN_UNDEF"
    }


DYNAMIC_STRINGS = {
    "DT_NEEDED": "needed",
    "DT_SONAME": "soname",
    "DT_RPATH": "rpath",
    "DT_RUNPATH": "runpath",
}


def dynamic_tags(path: Path, tag: str) -> list[str]:
    """The string values of one dynamic tag (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH)."""
    with path.open("rb") as f:
        dyn = ELFFile(f).get_section_by_name(".dynamic")
        assert isinstance(dyn, DynamicSection)
        return [getattr(t, DYNAMIC_STRINGS[tag]) for t in dyn.iter_tags() if t.entry.d_tag == tag]


@pytest.mark.parametrize("exe", RUNTIME_EXES)
def test_runtime_imports_match_expectations(workloads_dir: Path, exe: str) -> None:
    """The header, not us, picks _ptsz/_ptds; cuda_expect.PTSZ_SYMBOLS must agree with it."""
    path = built(workloads_dir, exe)
    imported = {s for s in undefined_symbols(path) if s.startswith("cuda")}
    assert imported == set(totals(cuda_expect.expected_calls(1, 1, ptsz=exe.endswith("ptsz"))))
    soname = "libcudart.so.13" if exe.startswith("cuda_calls13") else "libcudart.so.12"
    assert soname in dynamic_tags(path, "DT_NEEDED")
    assert dynamic_tags(path, "DT_RUNPATH") or dynamic_tags(path, "DT_RPATH")


def test_driver_stand_in_exports(workloads_dir: Path) -> None:
    lib = workloads_dir / "driver" / "libcuda.so.1"
    assert dynamic_tags(lib, "DT_SONAME") == ["libcuda.so.1"]
    funcs = exported_functions(lib)
    legacy = {"cuInit"} | set(totals(cuda_expect.expected_driver_calls(1, 1)))
    ptsz = {"cuInit"} | set(totals(cuda_expect.expected_driver_calls(1, 1, ptsz=True)))
    assert set(funcs) == legacy | ptsz  # the _v2 and _ptsz names, and nothing else
    assert len(set(funcs.values())) == len(funcs), f"shared addresses: {funcs}"
    for name, wanted in (("cuda_driver_calls", legacy), ("cuda_driver_calls_ptsz", ptsz)):
        exe = built(workloads_dir, name)
        assert {s for s in undefined_symbols(exe) if s.startswith("cu")} == wanted
        assert "libcuda.so.1" in dynamic_tags(exe, "DT_NEEDED")


def test_partial_cudart_exports_only_cudamalloc(workloads_dir: Path) -> None:
    lib = workloads_dir / "partial" / "libcudart.so.12"
    assert dynamic_tags(lib, "DT_SONAME") == ["libcudart.so.12"]
    assert set(exported_functions(lib)) == {"cudaMalloc"}


def recorded(path: Path, tids: list[int]) -> dict[int, list[cuda_expect.Call]]:
    """call_recorder's lines as Calls, per thread index, in call order."""
    index = {tid: t for t, tid in enumerate(tids)}
    out: dict[int, list[cuda_expect.Call]] = {t: [] for t in range(len(tids))}
    for line in path.read_text().splitlines():
        tid, symbol, *v = line.split()
        n = [int(x) for x in v]
        t = index[int(tid)]
        out[t].append(
            cuda_expect.Call(
                t,
                symbol,
                stream=n[0],
                ptr=n[1],
                ptr2=n[2],
                bytes=n[3],
                grid=(n[4], n[5], n[6]),
                block=(n[7], n[8], n[9]),
                kind=n[10],
            )
        )
    return out


def per_thread(calls: list[cuda_expect.Call], threads: int) -> dict[int, list[cuda_expect.Call]]:
    return {t: [c for c in calls if c.thread == t] for t in range(threads)}


def run_recorded(
    workloads_dir: Path, tmp_path: Path, exe: str, threads: int, *args: str
) -> dict[int, list[cuda_expect.Call]]:
    """Runs exe with call_recorder preloaded; what each of its threads called."""
    recorder = workloads_dir / "recorder" / "libcall_recorder.so"
    if not recorder.exists():
        pytest.fail(f"{recorder} is missing from a build that has cuda_calls")
    rec = tmp_path / "calls.txt"
    ready, _ = run(
        [str(built(workloads_dir, exe)), "--threads", str(threads), *args],
        threads,
        {"LD_PRELOAD": str(recorder), "XPU_CALL_RECORD": str(rec)},
    )
    return recorded(rec, ready["tids"])


@pytest.mark.parametrize("exe", RUNTIME_EXES)
def test_runtime_arguments(workloads_dir: Path, tmp_path: Path, exe: str) -> None:
    threads, iters = 3, 4
    got = run_recorded(workloads_dir, tmp_path, exe, threads, "--iters", str(iters))
    want = cuda_expect.expected_calls(threads, iters, ptsz=exe.endswith("ptsz"))
    assert got == per_thread(want, threads)


@pytest.mark.parametrize("exe", ["cuda_calls", "cuda_calls_ptsz"])
def test_burst_arguments(workloads_dir: Path, tmp_path: Path, exe: str) -> None:
    got = run_recorded(workloads_dir, tmp_path, exe, 2, "--burst", "50")
    assert got == per_thread(cuda_expect.expected_burst(2, 50, ptsz=exe.endswith("ptsz")), 2)


def test_driver_arguments(workloads_dir: Path, tmp_path: Path) -> None:
    """The stand-in's cuInit stays (the recorder lacks it); the seven traced calls are recorded."""
    threads, iters = 3, 4
    got = run_recorded(workloads_dir, tmp_path, "cuda_driver_calls", threads, "--iters", str(iters))
    assert got == per_thread(cuda_expect.expected_driver_calls(threads, iters), threads)


def test_ctypes_arguments(workloads_dir: Path, tmp_path: Path) -> None:
    """cuda_ctypes.py loading the recorder as its libcudart: dim3 by value arrives intact."""
    recorder = workloads_dir / "recorder" / "libcall_recorder.so"
    rec = tmp_path / "calls.txt"
    script = Path(__file__).with_name("cuda_ctypes.py")
    with Workload(
        [sys.executable, str(script), str(recorder), "4"], {"XPU_CALL_RECORD": str(rec)}
    ) as w:
        ready = w.read_line()
        w.send("go")
        w.read_line()
        assert w.close_stdin() == 0
    assert recorded(rec, ready["tids"]) == {0: cuda_expect.expected_ctypes_calls(4)}
