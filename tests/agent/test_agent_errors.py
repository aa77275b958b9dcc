"""xputrace-agent refuses bad input with the seed's error codes and one clear line.

Exit codes: 2 INVALID_CONFIG, 3 TARGET_NOT_FOUND, 4 PERMISSION_DENIED,
5 AGENT_START_FAILED (xpucore/include/exit_codes.h).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from manager.python.offsets import OFFSETS
from tests.agent.procs import run_agent_expect_failure

INVALID_CONFIG, TARGET_NOT_FOUND, PERMISSION_DENIED = 2, 3, 4
BASE = ["--monitor-id", "m1", "--monitor-type", "CUDA"]


def out_args(tmp_path: Path) -> list[str]:
    return ["--output", str(tmp_path / "cap.bin")]


def assert_fails(build: Path, code: int, name: str, needle: str, *args: str) -> str:
    rc, err = run_agent_expect_failure(build, *args)
    assert rc == code, f"exit {rc}, stderr: {err}"
    assert f"{name}" in err and needle in err, err
    assert "Segmentation" not in err and "core dumped" not in err
    return err


def test_unknown_pid(build_dir: Path, tmp_path: Path) -> None:
    pid = 4_000_000  # below pid_max (4194304), and almost surely free
    while Path(f"/proc/{pid}").exists():
        pid += 1
    assert_fails(
        build_dir,
        TARGET_NOT_FOUND,
        "TARGET_NOT_FOUND",
        f"no process with pid {pid}",
        *BASE,
        "--target-pid",
        str(pid),
        *out_args(tmp_path),
    )


def test_pid_without_cuda(build_dir: Path, tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as proc:
        try:
            assert_fails(
                build_dir,
                TARGET_NOT_FOUND,
                "TARGET_NOT_FOUND",
                "has no CUDA runtime or driver library mapped",
                *BASE,
                "--target-pid",
                str(proc.pid),
                *out_args(tmp_path),
            )
        finally:
            proc.kill()


def test_missing_library_file(build_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "libcudart.so.12"
    assert_fails(
        build_dir,
        TARGET_NOT_FOUND,
        "TARGET_NOT_FOUND",
        str(missing),
        *BASE,
        "--target-library",
        str(missing),
        *out_args(tmp_path),
    )


def test_non_elf_library(build_dir: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "libcudart.so.12"
    bogus.write_text("not an ELF file\n")
    assert_fails(
        build_dir,
        INVALID_CONFIG,
        "INVALID_CONFIG",
        "is not an ELF file",
        *BASE,
        "--target-library",
        str(bogus),
        *out_args(tmp_path),
    )


def test_library_without_cuda_symbols(build_dir: Path, tmp_path: Path) -> None:
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    assert_fails(
        build_dir,
        INVALID_CONFIG,
        "INVALID_CONFIG",
        "defines none of the CUDA",
        *BASE,
        "--target-library",
        libc,
        *out_args(tmp_path),
    )


def test_library_lacking_a_required_symbol(build_dir: Path, tmp_path: Path) -> None:
    partial = build_dir / "tests/workloads/partial/libcudart.so.12"
    if not partial.exists():
        pytest.fail(f"test library not built: {partial}")
    assert_fails(
        build_dir,
        INVALID_CONFIG,
        "INVALID_CONFIG",
        "lacks symbol cudaLaunchKernel",
        *BASE,
        "--target-library",
        str(partial),
        *out_args(tmp_path),
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target-pid", "abc"], "invalid --target-pid 'abc'"),
        (["--target-pid", "-5"], "invalid --target-pid '-5'"),
        (["--target-pid", "0"], "invalid --target-pid '0'"),
        (["--target-pid", "99999999999"], "invalid --target-pid"),
        (["--target-library", "relative/libcudart.so"], "must be an absolute path"),
        (["--target-pid", "1", "--ringbuf-kb", "3"], "invalid --ringbuf-kb '3'"),
        (["--target-pid", "1", "--ringbuf-kb", "12"], "must be a power of two"),
        (["--target-pid", "1", "--batch-events", "0"], "invalid --batch-events '0'"),
        (["--target-pid", "1", "--target-comm", "x" * 16], "invalid --target-comm"),
        (["--target-pid", "1", "--target-comm", "python"], "--target-comm needs --target-library"),
        ([], "missing --target-pid or --target-library"),
    ],
)
def test_bad_flag_values(build_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    assert_fails(build_dir, INVALID_CONFIG, "", needle, *BASE, *args, *out_args(tmp_path))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--monitor-type", "CUDA", "--target-pid", "1"], "missing --monitor-id"),
        (["--monitor-id", "m", "--target-pid", "1"], "missing --monitor-type"),
        (
            ["--monitor-id", "m", "--monitor-type", "NVML", "--target-pid", "1"],
            "invalid --monitor-type 'NVML'",
        ),
        (
            ["--monitor-id", "a b", "--monitor-type", "CUDA", "--target-pid", "1"],
            "invalid --monitor-id",
        ),
        (
            [
                "--monitor-id",
                "m",
                "--monitor-type",
                "CUDA",
                "--target-pid",
                "1",
                "--machine-id",
                "../etc",
            ],
            "invalid --machine-id",
        ),
    ],
)
def test_bad_identity_flags(build_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    assert_fails(build_dir, INVALID_CONFIG, "", needle, *args, *out_args(tmp_path))


def test_output_and_endpoint_exclusive(build_dir: Path, tmp_path: Path) -> None:
    assert_fails(
        build_dir,
        INVALID_CONFIG,
        "",
        "exactly one of",
        *BASE,
        "--target-pid",
        "1",
        *out_args(tmp_path),
        "--backend-zmq-endpoint",
        "tcp://127.0.0.1:1",
    )
    assert_fails(build_dir, INVALID_CONFIG, "", "exactly one of", *BASE, "--target-pid", "1")


def test_bad_endpoint_scheme(build_dir: Path) -> None:
    assert_fails(
        build_dir,
        INVALID_CONFIG,
        "",
        "invalid --backend-zmq-endpoint",
        *BASE,
        "--target-pid",
        "1",
        "--backend-zmq-endpoint",
        "http://x",
    )


def test_unprivileged_user_gets_permission_denied(build_dir: Path) -> None:
    """As nobody, loading BPF is refused: PERMISSION_DENIED, not a crash."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    # nobody must reach the agent: a clone may sit in a 0700 directory (root's home)
    with tempfile.TemporaryDirectory(prefix="xputrace-agent-") as d:
        os.chmod(d, 0o755)
        agent = shutil.copy(build_dir / "xputrace-agent", d)
        p = run_as_nobody(agent)
    # nobody may not even read a root process's maps: either way, a permission error
    assert p.returncode == PERMISSION_DENIED, p.stderr
    assert "PERMISSION_DENIED" in p.stderr


LOAD_REFUSED = (
    "PERMISSION_DENIED: failed to load BPF object: Operation not permitted "
    "(needs root, or CAP_BPF and CAP_PERFMON)"
)


@pytest.mark.parametrize("monitor_type", ["CUDA", "ACL", "SYSCALL", "PYTHON"])
def test_every_monitor_reports_a_refused_load_alike(
    build_dir: Path, cudart12: Path, monitor_type: str
) -> None:
    """As nobody, each monitor type gets as far as loading its BPF object and is refused
    there: one exit code and one message, whichever monitor (monitor_start.c)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    with tempfile.TemporaryDirectory(prefix="xputrace-agent-") as d:
        os.chmod(d, 0o755)
        agent = shutil.copy(build_dir / "xputrace-agent", d)
        # a library nobody may read, so that the CUDA and ACL monitors plan before they load
        lib = {"CUDA": cudart12, "ACL": build_dir / "tests/workloads/ascend/rt/libacl_rt.so"}
        target = ["--target-pid", "1"]
        if monitor_type in lib:
            target = ["--target-library", shutil.copy(lib[monitor_type], d)]
            os.chmod(target[1], 0o644)
        if monitor_type == "PYTHON":
            offsets = ",".join(f"{k}={v}" for k, v in OFFSETS[(3, 11)].items())
            target += ["--py-runtime", "0x1000", "--py-offsets", offsets]
        p = subprocess.run(
            [
                agent,
                "--monitor-id",
                "m1",
                "--monitor-type",
                monitor_type,
                *target,
                "--output",
                "/dev/null",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            user=65534,
            group=65534,
        )
    assert p.returncode == PERMISSION_DENIED, p.stderr
    assert p.stderr.strip().splitlines()[-1] == f"xputrace-agent: {LOAD_REFUSED}", p.stderr


def run_as_nobody(agent: str) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            return subprocess.run(
                [agent, *BASE, "--target-pid", str(sleeper.pid), "--output", "/dev/null"],
                capture_output=True,
                text=True,
                timeout=30,
                user=65534,
                group=65534,
            )
        finally:
            sleeper.kill()
