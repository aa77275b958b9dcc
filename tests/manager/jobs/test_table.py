"""The process table: pid reuse never merges two processes; ends are recorded."""

from __future__ import annotations

from typing import Any

from manager.jobs.procfs import Stat
from manager.jobs.table import ProcessKey, ProcessTable


def ev(kind: str, pid: int, start: int, **extra: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "pid": pid,
        "tid": pid,
        "ppid": 1,
        "uid": 0,
        "start_ticks": start,
        "parent_start_ticks": 1,
        "time_ns": start * 10_000_000,
        "comm": "python",
        **extra,
    }


def test_pid_reuse_is_two_processes() -> None:
    t = ProcessTable("m")
    first, _ = t.apply(ev("exec", 4242, 100))
    first.job = {"jobId": str(first.key)}
    t.apply(ev("exit", 4242, 100, exit_code=3, signal=None, core=False))
    second, replaced = t.apply(ev("fork", 4242, 900))
    second.job = {"jobId": str(second.key)}
    assert replaced is None and first is not second
    assert first.key == ProcessKey("m", 4242, 100) and second.key == ProcessKey("m", 4242, 900)
    assert (first.status, first.exit_code) == ("exited", 3)
    assert second.status == "running"
    assert t.get(first.key) is first and t.get(second.key) is second
    assert sorted(r.key.start_ticks for r in t.jobs()) == [100, 900]


def test_reuse_without_exit_marks_the_old_one_lost() -> None:
    t = ProcessTable("m")
    old, _ = t.apply(ev("exec", 7, 100))
    old.job = {}
    new, replaced = t.apply(ev("exec", 7, 500))
    assert replaced is old and old.status == "lost" and new.status == "running"
    # A late record of the older process does not displace the newer one.
    late, _ = t.apply(ev("exit", 7, 100, exit_code=0, signal=None, core=False))
    assert t.live[7] is new and late is not new


def test_exit_by_signal_and_forgetting_non_jobs() -> None:
    t = ProcessTable("m")
    job, _ = t.apply(ev("exec", 10, 1))
    job.job = {}
    plain, _ = t.apply(ev("exec", 11, 1))
    t.apply(ev("exit", 10, 1, exit_code=None, signal=9, core=False))
    t.apply(ev("exit", 11, 1, exit_code=0, signal=None, core=False))
    assert (job.status, job.signal) == ("killed", 9)
    assert t.get(plain.key) is None and t.get(job.key) is job


def test_scan_and_reconcile() -> None:
    t = ProcessTable("m")
    st = Stat(pid=5, comm="x", state="S", ppid=1, pgid=5, utime=0, stime=0, start_ticks=50)
    rec = t.add_scanned(st)
    assert rec is not None and t.add_scanned(st) is None
    rec.job = {}
    assert t.reconcile(set()) == [rec] and rec.status == "lost"
