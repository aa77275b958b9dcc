"""manager.target_facts against real processes and files (no root needed): what
manager.agent_args is given to decide on."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.agent_args import Library, Process
from manager.python.target import UnsupportedPython
from manager.target_facts import read_facts, read_library, read_process
from xpucore.protocol import AgentConfig, StartMonitor, Target

MID = "123e4567-e89b-42d3-a456-426614174000"


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A process of this user that is not CPython, running until the test ends."""
    with subprocess.Popen(["sleep", "60"]) as p:
        try:
            yield p.pid
        finally:
            p.kill()


def gone_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def start(kind: str, target: Target, config: AgentConfig | None = None) -> StartMonitor:
    return StartMonitor("r", MID, kind, target, config=config or AgentConfig())


def test_process(sleeper: int, tmp_path: Path) -> None:
    got = read_process(sleeper)
    assert got == Process(
        exists=True, platform=False, user=pwd.getpwuid(os.getuid()).pw_name, comm="sleep"
    )
    assert read_process(sleeper, own=[sleeper]).platform  # one of the manager's agents
    assert read_process(1).platform and read_process(1).exists
    assert read_process(gone_pid()) == Process(exists=False)
    assert read_process(sleeper, tmp_path) == Process(exists=False)  # another /proc


def test_library(tmp_path: Path) -> None:
    lib = tmp_path / "libcudart.so.12.9.79"
    lib.write_bytes(b"\x7fELF")
    (tmp_path / "libcudart.so.12").symlink_to(lib.name)
    assert read_library(str(tmp_path / "libcudart.so.12")) == Library(str(lib), "file")
    (tmp_path / "libcuda.so.1").mkdir()
    assert read_library(str(tmp_path / "libcuda.so.1")).state == "other"
    assert read_library(str(tmp_path / "libcudart.so.404")).state == "missing"
    (tmp_path / "libcuda.so").symlink_to("/bin/sh")
    sh = read_library(str(tmp_path / "libcuda.so"))
    assert sh == Library(os.path.realpath("/bin/sh"), "file")  # agent_args judges its name


def test_facts_follow_the_command(sleeper: int, tmp_path: Path) -> None:
    lib = tmp_path / "libcudart.so.12"
    lib.write_bytes(b"\x7fELF")
    facts = read_facts(start("CUDA", Target(library_path=str(lib))))
    assert facts.process is None and facts.python is None and facts.hooks is None
    assert facts.library == Library(str(lib), "file")
    facts = read_facts(start("CUDA", Target(sleeper)))
    assert facts.process is not None and facts.process.exists
    assert facts.library is None and facts.python is None  # no Python asked for
    calls = read_facts(start("PYTHON", Target(sleeper), AgentConfig(functions=("step",))))
    assert isinstance(calls.python, UnsupportedPython)  # sleep is no CPython: said why
    assert calls.hooks is None


def test_refused_processes_memory_is_not_read(sleeper: int) -> None:
    """The memory of a process the START is refused for (gone, or the platform's) is not
    read: the refusal comes from the process facts."""
    for pid, own in ((gone_pid(), ()), (1, ()), (sleeper, (sleeper,))):
        facts = read_facts(start("PYTHON", Target(pid), AgentConfig(functions=("step",))), own=own)
        assert facts.process is not None and facts.python is None and facts.hooks is None
