"""The machine's one SYSCALL tracer (`xputrace-agent --monitor-type SYSCALL --hub`, agent_c/
syscall_hub.c): monitors on different targets and syscall lists share one pair of programs and
each gets exactly its own events; ending one leaves the others running; a ring buffer drop is
counted for every monitor that wanted the event and for no other; a platform process (and what
it forks) is never traced by task name; an idle monitor costs no more than none."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.agent.hub import Hub
from tests.agent.procs import Capture, JsonLineProc
from tests.agent.test_agent_zmq import CurveSink
from xpucore import abi

pytestmark = pytest.mark.bpf


def names(cap: Capture) -> np.ndarray:
    return np.array([abi.function_name(int(f), "SYSCALL") for f in cap.events["func"]])


def worker_calls(cap: Capture, tids: list[int]) -> Counter[tuple[int, str]]:
    fn = names(cap)
    return Counter(
        (int(t), str(f)) for t, f in zip(cap.events["tid"], fn, strict=True) if int(t) in tids
    )


def expected(tids: list[int], iters: int, calls: tuple[str, ...]) -> Counter[tuple[int, str]]:
    """syscall_calls: thread t makes iters * (t + 1) rounds of read, write, nanosleep."""
    return Counter({(tid, c): iters * (t + 1) for t, tid in enumerate(tids) for c in calls})


@pytest.fixture
def renamed(build_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """The syscall_calls workload under another name: another task name (comm)."""
    path = tmp_path / "sc_other"
    shutil.copy(build_dir / "tests/workloads/syscall_calls", path)
    yield path


class Workload(JsonLineProc):
    def __init__(self, exe: Path, threads: int, iters: int) -> None:
        super().__init__([str(exe), "--threads", str(threads), "--iters", str(iters)])
        self.fds = self.read_json("fds")["fds"]
        self.ready = self.read_json("ready")
        self.pid: int = self.ready["pid"]
        self.tids: list[int] = self.ready["tids"]

    def run(self) -> None:
        self.send_line("go")
        self.read_json("done")


def test_two_monitors_each_get_exactly_their_own(
    build_dir: Path, tmp_path: Path, renamed: Path
) -> None:
    """M1 traces process A by pid (write only), M2 traces the task name of B and C (read and
    nanosleep): each gets its own targets' calls and syscalls, exactly. M1 is removed before C
    runs: M2 still records all of C."""
    hub = Hub(build_dir)
    a = Workload(build_dir / "tests/workloads/syscall_calls", 2, 3)
    b = Workload(renamed, 3, 2)
    c = None
    try:
        r1 = hub.add("m1", tmp_path / "m1.bin", "--target-pid", str(a.pid), "--syscalls", "write")
        r2 = hub.add(
            "m2", tmp_path / "m2.bin", "--target-comm", "sc_other", "--syscalls", "read,nanosleep"
        )
        assert r1["ready"] and r2["ready"] and r1["pid"] == r2["pid"] == hub.ready["pid"]
        assert r1["slot"] != r2["slot"]
        a.run()
        b.run()
        m1 = hub.remove("m1", tmp_path / "m1.bin")
        c = Workload(renamed, 1, 4)  # starts after M1 ended: M2 is still tracing
        c.run()
        m2 = hub.remove("m2", tmp_path / "m2.bin")
    finally:
        for w in (a, b, c):
            if w is not None:
                w.send_line("exit")
                w.finish()
                w.kill()
        hub.kill()

    assert set(m1.events["pid"].tolist()) == {a.pid}
    assert set(names(m1).tolist()) == {"write"}
    assert worker_calls(m1, a.tids) == expected(a.tids, 3, ("write",))
    assert (m1.events["arg0"][np.isin(m1.events["tid"], a.tids)] == a.fds["null"]).all()

    assert set(m2.events["pid"].tolist()) <= {b.pid, c.pid}
    assert set(names(m2).tolist()) == {"read", "nanosleep"}
    assert worker_calls(m2, b.tids) == expected(b.tids, 2, ("read", "nanosleep"))
    assert worker_calls(m2, c.tids) == expected(c.tids, 4, ("read", "nanosleep"))

    for cap, mid in ((m1, "m1"), (m2, "m2")):
        assert cap.returncode == 0
        assert cap.stats["events"] == len(cap.events)
        assert cap.stats["kernel_drops"] == cap.stats["inflight_drops"] == 0
        assert {bt.monitor_id for bt in cap.batches} == {mid}
        assert [bt.seq for bt in cap.batches] == list(range(len(cap.batches)))
        assert cap.batches[-1].flags & abi.BATCH_FINAL
        assert {bt.monitor_type for bt in cap.batches} == {abi.MONITOR_TYPES["SYSCALL"]}


def test_ring_drop_counted_for_each_monitor_that_wanted_it(build_dir: Path, tmp_path: Path) -> None:
    """A 4 KB ring the hub only empties when asked: two monitors of the same writes both count
    every write they lost; a third, of another process, loses nothing."""
    hub = Hub(build_dir, "--ringbuf-kb", "4", "--wakeup-kb", "8", "--poll-ms", "60000")
    a = Workload(build_dir / "tests/workloads/syscall_calls", 2, 100)
    idle = subprocess.Popen(["sleep", "60"])
    try:
        small = ("--ringbuf-kb", "4", "--syscalls", "write")
        for mid in ("d1", "d2"):
            r = hub.add(mid, tmp_path / f"{mid}.bin", "--target-pid", str(a.pid), *small)
            assert r["ready"]
        assert hub.add("d3", tmp_path / "d3.bin", "--target-pid", str(idle.pid), *small)["ready"]
        a.run()
        d1, d2, d3 = (hub.remove(m, tmp_path / f"{m}.bin") for m in ("d1", "d2", "d3"))
    finally:
        a.send_line("exit")
        a.finish()
        a.kill()
        idle.kill()
        idle.wait()
        hub.kill()
    writes = sum(n for _, n in expected(a.tids, 100, ("write",)).items())  # 300
    assert d1.stats["kernel_drops"] > 0
    for d in (d1, d2):
        assert d.stats["kernel_drops"] == d1.stats["kernel_drops"]
        assert d.stats["events"] == len(d.events) == len(d1.events)
        assert d.batches[-1].kernel_drops == d.stats["kernel_drops"]
        mine = int(np.isin(d.events["tid"], a.tids).sum())
        # every worker write is recorded or counted lost (the main thread's lines add a few)
        assert mine + d.stats["kernel_drops"] >= writes
        assert len(d.events) + d.stats["kernel_drops"] <= writes + 4
    assert d3.stats["kernel_drops"] == 0 and len(d3.events) == 0


def test_platform_process_named_by_comm_is_not_traced(
    build_dir: Path, tmp_path: Path, renamed: Path
) -> None:
    """Two processes named sc_other: one the hub was told is the platform's (a shell that then
    forks it: exclusion follows the fork), one not. A monitor of that name sees the second
    only; the hub itself is never traced by its own name either."""
    hub = Hub(build_dir)
    shell = JsonLineProc(["bash", "-c", f"read x; {renamed} --threads 1 --iters 2; true"])
    other = None
    try:
        hub.exclude(shell.proc.pid)
        shell.send_line("start")  # only now does bash fork the workload
        shell.read_json("fds")
        platform = shell.read_json("ready")
        other = Workload(renamed, 1, 2)
        assert hub.add(
            "p1", tmp_path / "p1.bin", "--target-comm", "sc_other", "--syscalls", "write"
        )["ready"]
        assert hub.add("p2", tmp_path / "p2.bin", "--target-comm", "xputrace-agent")["ready"]
        shell.send_line("go")
        shell.read_json("done")
        other.run()
        p1 = hub.remove("p1", tmp_path / "p1.bin")
        p2 = hub.remove("p2", tmp_path / "p2.bin")
    finally:
        for w in (shell, other):
            if w is not None:
                w.send_line("exit")
                w.finish()
                w.kill()
        hub.kill()
    assert platform["pid"] != shell.proc.pid  # a child of the excluded shell
    assert set(p1.events["pid"].tolist()) == {other.pid}
    assert worker_calls(p1, other.tids) == expected(other.tids, 2, ("write",))
    # its own syscalls, answering us, are not traced (other agents on this machine may be)
    assert hub.ready["pid"] not in set(p2.events["pid"].tolist())


def test_bad_monitor_is_refused_and_the_hub_goes_on(build_dir: Path, tmp_path: Path) -> None:
    hub = Hub(build_dir)
    try:
        for args, code, message in (
            (["--target-pid", "999999999"], "TARGET_NOT_FOUND", "process 999999999 not found"),
            (["--target-pid", "1", "--syscalls", "bogus"], "INVALID_CONFIG",
             "unknown syscall 'bogus'"),
            ([], "INVALID_CONFIG", "missing --target-pid or --target-comm"),
            (["--target-pid", "1", "--ringbuf-kb", "65536"], "INVALID_CONFIG",
             "shared SYSCALL tracer's ring buffer"),
        ):  # fmt: skip
            r = hub.add("bad", tmp_path / "bad.bin", *args)
            assert r["error"] == code and message in r["message"], r
        ok = hub.add("fine", tmp_path / "ok.bin", "--target-pid", "1", "--syscalls", "read")
        assert ok["ready"]
        again = hub.add("fine", tmp_path / "ok2.bin", "--target-pid", "1")
        assert again["error"] == "INVALID_CONFIG" and "already running" in again["message"]
        hub.send_line("remove\tnobody")
        assert hub.wait(lambda o: o.get("monitor_id") == "nobody")["error"] == "INVALID_CONFIG"
        hub.remove("fine", tmp_path / "ok.bin")
    finally:
        hub.kill()


def test_restarted_monitor_continues_its_sequence(build_dir: Path, tmp_path: Path) -> None:
    """The backend stores a batch once by (monitor, agent pid, seq): a monitor id started again
    on the same hub goes on numbering where it stopped."""
    hub = Hub(build_dir)
    try:
        seqs: list[int] = []
        for run in range(2):
            out = tmp_path / f"r{run}.bin"
            assert hub.add("again", out, "--target-pid", "1")["ready"]
            seqs += [b.seq for b in hub.remove("again", out).batches]
        assert seqs == list(range(len(seqs))) and len(seqs) >= 2
    finally:
        hub.kill()


def test_stdin_eof_ends_every_monitor(build_dir: Path, tmp_path: Path) -> None:
    """The manager's end closes the pipe: each monitor's final batch and stopped line, exit 0."""
    hub = Hub(build_dir)
    try:
        for mid in ("e1", "e2"):
            assert hub.add(mid, tmp_path / f"{mid}.bin", "--target-pid", "1")["ready"]
        assert hub.finish() == 0
        ended = [hub.wait(lambda o, m=m: o.get("monitor_id") == m) for m in ("e1", "e2")]  # type: ignore[misc]
    finally:
        hub.kill()
    assert all(e["stopped"] and e["exit_code"] == 0 for e in ended)


def test_batches_over_curve_acknowledged(build_dir: Path, tmp_path: Path) -> None:
    """A hub monitor sends over ZeroMQ with CURVE as an agent does; its stopped line comes once
    every batch is acknowledged, and counts exactly what arrived."""
    hub = Hub(build_dir)
    sink = CurveSink(tmp_path)
    a = Workload(build_dir / "tests/workloads/syscall_calls", 2, 3)
    try:
        assert hub.add(
            "z1",
            None,
            "--backend-zmq-endpoint",
            sink.endpoint,
            "--curve-keyfile",
            str(sink.keyfile),
            "--target-pid",
            str(a.pid),
            "--syscalls",
            "write",
        )["ready"]
        a.run()
        hub.send_line("remove\tz1")
        end = hub.wait(lambda o: o.get("monitor_id") == "z1" and "stopped" in o)
        batches = sink.received()
    finally:
        a.send_line("exit")
        a.finish()
        a.kill()
        sink.close()
        hub.kill()
    got = Counter(
        (int(e["tid"]), "write") for b in batches for e in b.events if int(e["tid"]) in a.tids
    )
    assert got == expected(a.tids, 3, ("write",))
    assert end["stats"]["events"] == sum(b.event_count for b in batches)
    assert end["stats"]["send_drops"] == 0 and end["exit_code"] == 0
    assert {b.agent_pid for b in batches} == {hub.ready["pid"]}
