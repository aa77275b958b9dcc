"""Device sampling (manager.devices) against the NVML and DCMI stand-ins, loaded through the
same code paths as the real libraries: pynvml's dlopen of libnvidia-ml.so.1 and ctypes of
libdcmi.so, in the probe process the manager starts, times out and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manager.devices.sampler import DeviceSampler
from tests.manager import device_standins as standins
from tests.manager.backend_double import Backend
from tests.manager.conftest import run
from xpucore.device_wire import check_device_metrics

NVML_GONE = "libnvidia-ml.so.1 not found (no NVIDIA driver)"


@pytest.fixture
def states(tmp_path: Path) -> tuple[Path, Path]:
    """The stand-ins' state files (nvml, dcmi), both at generation 1."""
    nvml, dcmi = tmp_path / "nvml.state", tmp_path / "dcmi.state"
    nvml.write_text("1\n")
    dcmi.write_text("1\n")
    return nvml, dcmi


@pytest.fixture
def sampler_for(build_dir: Path, states: tuple[Path, Path]) -> Callable[..., DeviceSampler]:
    nvml_dir, dcmi = standins.libraries(build_dir)

    def make(*, nvml: bool = True, dcmi_path: Path | None = dcmi, **kw: Any) -> DeviceSampler:
        env = standins.probe_env(nvml_dir if nvml else None, *states)
        return DeviceSampler(dcmi_library=dcmi_path, env=env, **kw)

    return make


def test_stand_ins_report_known_values_that_change(
    sampler_for: Callable[..., DeviceSampler], states: tuple[Path, Path]
) -> None:
    async def scenario() -> None:
        async with sampler_for() as sampler:
            devices, errors = await sampler.sample()
            assert errors == []
            assert devices == standins.expected(1)
            check_device_metrics({"sampled_at": 1, "devices": devices, "errors": errors})
            for state in states:
                state.write_text("2\n")
            devices2, _ = await sampler.sample()
            assert devices2 == standins.expected(2)
            assert devices2 != devices
            assert sampler.restarts == 0  # one probe served both samples

    run(scenario())


@pytest.mark.parametrize("library", ["nvml", "dcmi"])
@pytest.mark.parametrize("mode", ["hang", "crash"])
def test_failing_library_is_isolated_and_retried(
    sampler_for: Callable[..., DeviceSampler], states: tuple[Path, Path], library: str, mode: str
) -> None:
    state = states[0] if library == "nvml" else states[1]
    other = "dcmi" if library == "nvml" else "nvml"
    others = [d for d in standins.expected(1) if d["kind"] == ("npu" if other == "dcmi" else "gpu")]
    message = "timed out after 1 s" if mode == "hang" else "crashed (signal SIGSEGV)"

    async def scenario() -> None:
        async with sampler_for(timeout_s=1.0, retry_s=3600.0) as sampler:
            assert len((await sampler.sample())[0]) == 12
            first = sampler.pid
            state.write_text(mode)
            _, errors = await sampler.sample()
            assert [e["library"] for e in errors] == [library]
            assert errors[0]["message"].startswith(message), errors
            # the next probe leaves the failed library out: the other one goes on reporting
            devices, errors2 = await sampler.sample()
            assert errors2 == errors
            assert devices == others
            assert sampler.restarts == 1 and sampler.pid != first
        async with sampler_for(timeout_s=1.0, retry_s=0.0) as sampler:
            state.write_text(mode)
            await sampler.sample()
            state.write_text("1\n")  # the library works again: tried at once with retry_s 0
            assert await sampler.sample() == (standins.expected(1), [])

    run(scenario())


def test_machine_without_libraries_says_so(
    sampler_for: Callable[..., DeviceSampler], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with sampler_for(nvml=False, dcmi_path=tmp_path / "absent/libdcmi.so") as sampler:
            for _ in range(2):  # in every sample, from the one probe
                devices, errors = await sampler.sample()
                assert devices == []
                assert errors == [
                    {"library": "nvml", "message": NVML_GONE},
                    {
                        "library": "dcmi",
                        "message": "libdcmi.so not found (no Ascend driver; looked in "
                        f"{tmp_path / 'absent/libdcmi.so'})",
                    },
                ]
            assert sampler.restarts == 0

    run(scenario())


def test_failure_is_logged_once(
    sampler_for: Callable[..., DeviceSampler], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with sampler_for(nvml=False) as sampler:
            for _ in range(3):
                await sampler.sample()

    with caplog.at_level("WARNING", logger="manager.devices.sampler"):
        run(scenario())
    assert [r.getMessage() for r in caplog.records] == [f"device library nvml: {NVML_GONE}"]


def test_real_manager_sends_device_metrics(
    manager_cmd: Callable[..., list[str]],
    tmp_path: Path,
    server_keypair: tuple[bytes, bytes],
    enrolled: Path,
    build_dir: Path,
    states: tuple[Path, Path],
) -> None:
    nvml_dir, dcmi = standins.libraries(build_dir)
    states[0].unlink()  # no state file: the NVML stand-in's values change every sample
    env = standins.probe_env(nvml_dir, *states)

    async def scenario() -> None:
        async with Backend(enrolled, server_keypair[1]) as backend:
            argv = manager_cmd(
                backend.endpoint,
                *("--device-interval", "1", "--device-timeout", "1"),
                *("--dcmi-library", str(dcmi)),
            )
            p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
            try:
                hello = await backend.event("HELLO", 30)
                first = await backend.event("DEVICE_METRICS", 30)
                second = await backend.event("DEVICE_METRICS", 10)
                for msg in (first, second):
                    assert msg["machine_id"] == hello["machine_id"]
                    checked = check_device_metrics(msg)
                    assert checked["errors"] == []
                    assert [(d["kind"], d["index"]) for d in checked["devices"]] == [
                        ("gpu", i) for i in range(4)
                    ] + [("npu", i) for i in range(8)]
                assert first["devices"][4:] == second["devices"][4:] == standins.expected(1)[4:]
                assert first["devices"][:4] != second["devices"][:4]  # NVML's values moved on
                assert 500 <= second["sampled_at"] - first["sampled_at"] <= 1500
                states[1].write_text("hang")
                while True:  # the NPUs' library hangs: the manager says so and goes on
                    msg = await backend.event("DEVICE_METRICS", 10)
                    if msg["errors"]:
                        break
                assert msg["errors"][0]["library"] == "dcmi"
                assert "timed out" in msg["errors"][0]["message"]
                after = await backend.event("DEVICE_METRICS", 10)
                assert [d["kind"] for d in after["devices"]] == ["gpu"] * 4
                await backend.event("HEARTBEAT", 10)
                assert p.poll() is None
            finally:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(p.wait, 20)
                if p.poll() is None:
                    p.kill()
                    p.wait()

    run(scenario(), timeout=90)


def test_probe_runs_alone() -> None:
    """The probe module is a program of its own (python -m), ending at EOF."""
    out = subprocess.run(
        [sys.executable, "-m", "manager.devices.probe", "--skip", "nvml", "--skip", "dcmi"],
        input="\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout == '{"devices": [], "errors": []}\n'
