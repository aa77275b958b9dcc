"""Scope (--jobs-root-pid) on real process trees: the root's descendants are in, the rest out,
judged by walking /proc once per unknown ancestor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.jobs.procfs import ProcessHandle
from manager.jobs.scan import scan
from manager.jobs.scope import Scope
from tests.launchers import Launcher

HOLD = [
    sys.executable,
    "-c",
    "import json, os, sys; print(os.getpid(), flush=True); sys.stdin.read()",
]


def start_ticks(pid: int) -> int:
    with ProcessHandle(pid) as h:
        return h.stat.start_ticks


def judge(scope: Scope, pid: int) -> bool:
    with ProcessHandle(pid) as h:
        st = h.stat
    return scope.contains(pid, st.start_ticks, st.ppid, start_ticks(st.ppid) if st.ppid else None)


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    la = Launcher()
    try:
        yield la
    finally:
        la.finish()
        la.kill()


def test_the_root_and_its_descendants_are_in_the_rest_out(launcher: Launcher) -> None:
    scope = Scope(launcher.pid)
    assert scope.root == (launcher.pid, start_ticks(launcher.pid))
    child, _ = launcher.spawn(HOLD)
    # a grandchild through a shell: sh -> python
    shell, _ = launcher.spawn(["sh", "-c", f"{' '.join(HOLD[:2])} '{HOLD[2]}'; :"])
    grandchild = int(Path(f"/proc/{shell}/task/{shell}/children").read_text().split()[0])
    outside = subprocess.Popen(HOLD, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert judge(scope, launcher.pid)
        assert judge(scope, child)
        assert judge(scope, grandchild)
        assert not judge(scope, outside.pid)
        assert not judge(scope, os.getpid())  # the launcher's parent
        assert not judge(scope, 1)
    finally:
        assert outside.stdin is not None
        outside.stdin.close()
        outside.wait()


def test_a_known_parent_costs_no_read(launcher: Launcher) -> None:
    scope = Scope(launcher.pid)
    first, _ = launcher.spawn(HOLD)
    second, _ = launcher.spawn(HOLD)
    assert judge(scope, first)
    reads = scope.reads
    # as procwatch reports a fork or exec: the parent named with its start time
    assert scope.contains(second, start_ticks(second), launcher.pid, start_ticks(launcher.pid))
    assert scope.reads == reads
    # a process outside: its ancestors are read once, then remembered
    assert not scope.contains(10**7, 1, os.getpid(), start_ticks(os.getpid()))
    reads = scope.reads
    assert not scope.contains(10**7 + 1, 1, os.getpid(), start_ticks(os.getpid()))
    assert scope.reads == reads


def test_a_reused_pid_is_not_its_predecessor(launcher: Launcher) -> None:
    scope = Scope(launcher.pid)
    root_start = start_ticks(launcher.pid)
    # a child of "launcher.pid" started at another time: another process under that pid
    assert not scope.contains(10**7, 1, launcher.pid, root_start + 1)
    assert scope.contains(10**7 + 1, 1, launcher.pid, root_start)
    gone = Scope(2**22 + 1)  # above pid_max: not running, so nothing is in scope
    assert gone.root is None
    assert not gone.contains(launcher.pid, root_start, os.getpid())


def test_an_orphan_stays_in_scope_with_its_later_children(tmp_path: Path) -> None:
    """The root exits; its child, adopted by init, forks again: the new child is in scope,
    from what was judged before (the chain through /proc now ends at init)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    root = Launcher()
    middle = sleeper = 0
    try:
        middle, _ = root.spawn(["sh", "-c", f"echo started; read x < {fifo}; sleep 600 & wait"])
        scope = Scope(root.pid)
        assert judge(scope, middle)
        root.kill()  # middle, waiting on the fifo, is adopted elsewhere
        with open(fifo, "w") as f:
            f.write("go\n")
        sleeper = _child_of(middle)
        reads = scope.reads
        assert scope.contains(sleeper, start_ticks(sleeper), middle, start_ticks(middle))
        assert scope.reads == reads
        assert not judge(Scope(root.pid), sleeper)  # nothing remembered: the chain is lost
    finally:
        root.kill()
        for pid in (sleeper, middle):
            if pid:
                os.kill(pid, signal.SIGKILL)


def _child_of(pid: int) -> int:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    while not (kids := path.read_text().split()):
        os.sched_yield()
    return int(kids[0])


def test_a_scan_is_judged_from_its_own_stats(launcher: Launcher) -> None:
    child, _ = launcher.spawn(HOLD)
    stats = scan()
    by_pid = {st.pid: st for st in stats}
    scope = Scope(launcher.pid)
    reads = scope.reads
    inside = {
        st.pid for st in stats if scope.contains(st.pid, st.start_ticks, st.ppid, known=by_pid)
    }
    assert {launcher.pid, child} <= inside
    assert os.getpid() not in inside and 1 not in inside
    assert scope.reads == reads  # every ancestor was in the scan
