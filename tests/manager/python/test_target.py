"""manager.python.target against real interpreters: the static Debian python3.11 and every
pyenv CPython installed here (shared libpython). Each one's stacks, read from outside through
/proc/<pid>/mem with the generated offsets, are exactly the script's call chain with its
lines; what cannot be read is refused with the reason."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from manager.python.target import Frame, UnsupportedPython, find_target, read_stacks
from tests.agent.procs import JsonLineProc

SCRIPT = Path(__file__).resolve().parents[2] / "workloads/python_nested.py"
PYENV = Path("/root/.pyenv/versions")
DEBIAN = Path("/usr/bin/python3.11")


def lines() -> dict[str, int]:
    """The line of each `# at:NAME` marker in the script."""
    out = {}
    for n, text in enumerate(SCRIPT.read_text().splitlines(), 1):
        if m := re.search(r"# at:(\w+)", text):
            out[m.group(1)] = n
    return out


def pyenv(minor: str) -> Path | None:
    found = sorted(PYENV.glob(f"{minor}.*/bin/python{minor}"))
    return found[-1] if found else None


INTERPRETERS = {
    "debian-3.11-static": DEBIAN,
    **{f"pyenv-{v}": pyenv(v) for v in ("3.10", "3.11", "3.12", "3.13")},
}


def python_or_skip(name: str) -> Path:
    """The interpreter INTERPRETERS names; a pyenv one not installed here skips the test."""
    python = INTERPRETERS[name]
    if python is None or not python.exists():
        if name.startswith("debian"):
            pytest.fail(f"{python} is Debian 12's python3: it must be here")
        pytest.skip(f"no {name} installed here (pyenv)")
    return python


@pytest.mark.parametrize("name", INTERPRETERS)
def test_stacks_are_the_call_chain(name: str) -> None:
    python = python_or_skip(name)
    work = JsonLineProc([str(python), str(SCRIPT)])
    try:
        ready = work.read_json("ready")
        t = find_target(ready["pid"])
        stacks = read_stacks(t)
    finally:
        work.send_line("go")
        work.finish()
        work.kill()
    at, file = lines(), str(SCRIPT)
    version = name.rsplit("-", 1)[-1] if name.startswith("pyenv") else "3.11"
    assert ".".join(map(str, t.version[:2])) == version.removesuffix("-static")
    assert ("libpython" in t.binary) == name.startswith("pyenv")
    old = t.version[:2] == (3, 10)  # threads by pthread_self(); names without qualification
    assert stacks[ready["ident" if old else "pid"]] == [
        Frame("inner", file, at["inner"]),
        Frame("outer", file, at["outer"]),
        Frame("main", file, at["main"]),
        Frame("<module>", file, at["module"]),
    ]
    worker = stacks[ready["worker_ident" if old else "worker"]]
    assert worker[:3] == [
        Frame("worker_inner", file, at["worker_inner"]),
        Frame("worker", file, at["worker"]),
        Frame("run" if old else "main.<locals>.run", file, at["run"]),
    ]
    assert all(f.file.endswith("threading.py") for f in worker[3:]) and len(worker) > 3


def test_not_cpython_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python3.11"  # named like CPython, but sleep(1)
    shutil.copy("/bin/sleep", fake)
    for argv, why in (
        ([str(fake), "30"], "no _PyRuntime symbol"),
        (["sleep", "30"], "maps no python or libpython file"),
    ):
        with subprocess.Popen(argv) as p:
            try:
                with pytest.raises(UnsupportedPython, match=why):
                    find_target(p.pid)
            finally:
                p.kill()


def test_version_without_a_table_is_refused() -> None:
    python = pyenv("3.9")
    if python is None:
        pytest.skip("no CPython 3.9 here (pyenv)")
    with subprocess.Popen(
        [str(python), "-c", "import sys; print(1, flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as p:
        try:
            assert p.stdout is not None and p.stdout.readline()  # running: libpython mapped
            with pytest.raises(
                UnsupportedPython,
                match=r"CPython 3\.9 .* has no offset "
                r"table: readable versions are 3\.10, 3\.11, 3\.12, 3\.13",
            ):
                find_target(p.pid)
        finally:
            p.kill()
