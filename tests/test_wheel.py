"""The distribution works installed, not only editable (issue #13 §1): the wheel `pip wheel .`
builds holds every file its packages read (ABI headers, migrations, stubs), and installed in a
fresh venv that sees neither the repository nor the editable install, it decodes a capture and
writes a trace.

The fresh venv gets the wheel's declared dependencies, and only those, from this venv (linked,
not downloaded: installing them from PyPI takes over a minute); `pip check` confirms they
satisfy the wheel's requirements.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from tests.trace_tools.validate import validate_perfetto
from xpucore import abi

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("xpucore", "trace_export", "backend", "manager")
# what is not copied to build from: VCS, venvs, build outputs, caches
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "var", ".cache", "__pycache__",
                                     "*.egg-info", "*.so", ".*_cache")  # fmt: skip

# Runs in the fresh venv: decodes the capture, writes the trace, imports every module (the
# trace validators, which need the `test` extra's perfetto, are the tests', tests/trace_tools).
_IN_VENV = """
import importlib, json, pkgutil, sys
from xpucore import abi
from trace_export import from_batches, write_perfetto
capture, trace = sys.argv[1:3]
with open(capture, "rb") as f:
    batches = list(abi.iter_batches(f))
with open(trace, "wb") as f:
    stats = write_perfetto([from_batches(batches)], f)
files = {}
for top in %r:
    pkg = importlib.import_module(top)
    files[top] = pkg.__file__
    for m in pkgutil.walk_packages(pkg.__path__, top + "."):
        if not m.name.endswith(".__main__"):
            files[m.name] = importlib.import_module(m.name).__file__
print(json.dumps({"batches": len(batches), "slices": stats.slices, "files": files,
                  "sys_path": sys.path}))
""" % (PACKAGES,)  # noqa: UP031


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site: Path
    work: Path  # a folder outside the repository, the commands' cwd


def _run(argv: list[str | Path], cwd: Path) -> str:
    """Output of a command run without the test's PYTHONPATH (which names the repository)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=240)  # fmt: skip
    shown = " ".join(str(a) for a in argv if len(str(a)) < 200)  # not the -c scripts
    assert p.returncode == 0, f"{shown} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _requirements(
    reqs: list[str], extras: frozenset[str] = frozenset()
) -> Iterator[tuple[Requirement, frozenset[str]]]:
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            yield req, frozenset(req.extras)


def link_dependencies(requires: list[str], site: Path) -> list[str]:
    """Links into site-packages each distribution of this venv that ``requires`` needs,
    recursively (with the extras asked for), as if pip had installed it there; their names."""
    done: set[str] = set()
    todo = list(_requirements(requires))
    while todo:
        req, extras = todo.pop()
        dist = metadata.distribution(req.name)
        key = f"{dist.metadata['Name']}{sorted(extras)}"
        if key in done:
            continue
        done.add(key)
        assert dist.files is not None, f"{req.name} has no RECORD"
        for top in {f.parts[0] for f in dist.files if f.parts[0] != ".."}:
            link = site / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))))
        todo += _requirements(dist.requires or [], extras)
    return sorted(done)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: setuptools writes build/ and *.egg-info where it builds
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE, symlinks=True)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", src, "--no-deps", "-q", "-w", tmp / "dist"], tmp)
    (wheel,) = (tmp / "dist").glob("xputrace-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    py = venv / "bin" / "python"
    (site,) = (venv / "lib").glob("python3*/site-packages")
    _run([*pip, "--python", py, "install", "--no-deps", "--no-index", "-q", wheel], tmp)
    (dist,) = metadata.distributions(name="xputrace", path=[str(site)])
    link_dependencies(dist.requires or [], site)
    _run([*pip, "--python", py, "check"], tmp)  # the wheel's requirements are all met
    work = tmp / "work"
    work.mkdir()
    return Installed(wheel, venv, site, work)


def test_wheel_holds_every_file_its_packages_read(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
    source = {
        p.relative_to(ROOT).as_posix()
        for top in PACKAGES
        for p in (ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
    }
    assert source - names == set()
    assert {f"xpucore/include/{h}" for h in ("xpu_abi.h", "cuda.h", "acl.h")} <= names
    # the C extensions are compiled into it
    built = {n.split(".")[0] for n in names if n.endswith(".so")}
    assert built == {"trace_export/_speedups", "trace_export/_rows"}


def _capture(path: Path) -> tuple[int, Counter[tuple[int, str]]]:
    """A capture of two CUDA batches; its event count and (tid, call) counts."""
    want: Counter[tuple[int, str]] = Counter()
    with path.open("wb") as f:
        for seq, tid in enumerate((4101, 4102)):
            ev = abi.empty_events(6)
            ev["ts_ns"] = 10**9 + seq * 10**6 + np.arange(6) * 1000
            ev["duration_ns"] = 400
            ev["func"] = np.where(np.arange(6) % 2, 0x500, 0x100)
            ev["pid"], ev["tid"], ev["comm"], ev["stream"] = 4100, tid, b"train", 7
            f.write(abi.encode_batch(ev, monitor_id="mon", machine_id="m", seq=seq,
                                     agent_pid=4100, mono_to_real_ns=10**12))  # fmt: skip
            want.update((tid, abi.function_name(int(fn))) for fn in ev["func"])
    return 12, want


def test_installed_wheel_decodes_a_capture_and_writes_a_trace(installed: Installed) -> None:
    capture, trace = installed.work / "capture.bin", installed.work / "capture.pftrace"
    n, want = _capture(capture)
    py = installed.venv / "bin" / "python"
    out = json.loads(_run([py, "-c", _IN_VENV, capture, trace], installed.work))

    # what ran is the wheel's copy, not the repository's
    site = str(installed.site)
    assert out["files"] and all(f.startswith(site + os.sep) for f in out["files"].values())
    assert not [p for p in out["sys_path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    assert {"backend.dump", "manager.daemon", "trace_export._speedups"} <= set(out["files"])

    assert out["batches"] == 2 and out["slices"] == n
    s = validate_perfetto(trace.read_bytes())
    assert Counter((s.tracks[sl.track_uuid].tid, sl.name) for sl in s.slices) == want

    # and the console script reads the same capture
    lines = _run([installed.venv / "bin" / "xputrace-dump", "--stats", capture],
                 installed.work).splitlines()  # fmt: skip
    assert [json.loads(line)["event_count"] for line in lines] == [6, 6]
