"""Machine identity from files given as parameters: no root, no real hardware needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from manager import identity
from manager.identity import Accelerator

RAW_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"


def test_protected_id_is_hmac_sha256_of_app_id_keyed_by_machine_id() -> None:
    """Checked against openssl's HMAC, an implementation independent of Python's."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", RAW_ID],
        input=b"xputrace",
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert identity.protected_id("xputrace", RAW_ID) == out.split()[-1]
    assert identity.protected_id("xputrace", RAW_ID + "\n") == out.split()[-1]


def test_machine_id_reads_first_nonempty_file(tmp_path: Path) -> None:
    dbus, etc = tmp_path / "dbus-machine-id", tmp_path / "machine-id"
    etc.write_text(RAW_ID + "\n")
    mid = identity.machine_id("xputrace", (dbus, etc))
    assert mid == identity.protected_id("xputrace", RAW_ID)
    assert len(mid) == 64 and mid != identity.machine_id("other", (dbus, etc))
    dbus.write_text("  \n")
    assert identity.machine_id("xputrace", (dbus, etc)) == mid
    with pytest.raises(RuntimeError):
        identity.machine_id("xputrace", (tmp_path / "nope",))


def test_os_info_and_hostname(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text(
        '# comment\nNAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
    )
    proc = tmp_path / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("6.1.0-18-amd64\n")
    (proc / "sys/kernel/hostname").write_text("gpu-node-7\n")
    assert (
        identity.os_info((tmp_path / "os-release",), proc)
        == "Debian GNU/Linux 12 (bookworm) (kernel 6.1.0-18-amd64)"
    )
    (tmp_path / "os-release2").write_text("NAME=Alpine\nVERSION='3.19'\n")
    assert (
        identity.os_info((tmp_path / "none", tmp_path / "os-release2"), tmp_path) == "Alpine 3.19"
    )
    assert identity.hostname(proc) == "gpu-node-7"
    assert identity.hostname(tmp_path / "empty")  # falls back to gethostname()


def test_accelerators_nvidia_and_ascend(tmp_path: Path) -> None:
    dev, proc, ascend = tmp_path / "dev", tmp_path / "proc", tmp_path / "Ascend"
    dev.mkdir()
    for name in (
        "nvidia0",
        "nvidia1",
        "nvidiactl",
        "nvidia-uvm",
        "davinci0",
        "davinci3",
        "davinci_manager",
        "null",
    ):
        (dev / name).touch()
    (proc / "driver/nvidia/gpus/0000:3b:00.0").mkdir(parents=True)
    (proc / "driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024\nGCC version:  gcc 12\n"
    )
    (proc / "driver/nvidia/gpus/0000:3b:00.0/information").write_text(
        "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 123\nDevice Minor: \t 1\n"
    )
    (ascend / "driver").mkdir(parents=True)
    (ascend / "driver/version.info").write_text("Version=24.1.rc2\nascendhal_version=7.35.19\n")
    found = identity.accelerators(dev, proc, ascend)
    assert found == [
        Accelerator("NVIDIA", "GPU", 0, str(dev / "nvidia0"), None, "550.54.14"),
        Accelerator("NVIDIA", "GPU", 1, str(dev / "nvidia1"), "NVIDIA H100 80GB HBM3", "550.54.14"),
        Accelerator("HUAWEI", "NPU", 0, str(dev / "davinci0"), None, "24.1.rc2"),
        Accelerator("HUAWEI", "NPU", 3, str(dev / "davinci3"), None, "24.1.rc2"),
    ]
    assert found[1].to_json()["model"] == "NVIDIA H100 80GB HBM3"


def test_proprietary_driver_version_and_nothing_found(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "driver/nvidia").mkdir(parents=True)
    (proc / "driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    )
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/nvidia0").touch()
    assert identity.accelerators(tmp_path / "dev", proc, tmp_path)[0].driver_version == "535.104.05"
    assert identity.accelerators(tmp_path / "nodev", tmp_path / "noproc", tmp_path) == []


def test_collect_on_this_machine() -> None:
    me = identity.collect()
    assert len(me.machine_id) == 64 and me.hostname and "kernel" in me.os_info
    assert me.version
