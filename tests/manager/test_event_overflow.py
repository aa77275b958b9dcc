"""Job events dropped because the control client's queue was full are made good: once the
queue has room again, a snapshot of the jobs is queued (the backend then settles what it
missed), never silently."""

from __future__ import annotations

from pathlib import Path

import zmq.asyncio

from manager import control
from manager.control import ControlClient
from manager.identity import Identity
from manager.job_reports import JobReporter
from manager.jobs.watch import Change, Watcher
from manager.settings import Settings
from manager.supervisor import Supervisor
from tests.manager.test_job_reports import MACHINE, record
from xpucore.job_wire import check_snapshot


async def test_a_full_queue_is_followed_by_a_job_snapshot(tmp_path: Path) -> None:
    settings = Settings("tcp://127.0.0.1:1", b"s" * 40, b"p" * 40, b"k" * 40)
    ctx = zmq.asyncio.Context()
    watcher = Watcher(Path("/nonexistent/xputrace-procwatch"), MACHINE)
    client = ControlClient(
        settings,
        Identity(MACHINE, "h", "linux", (), "0"),
        Supervisor(settings, MACHINE),
        context=ctx,
    )
    reporter = JobReporter(watcher, MACHINE, client.emit)
    client.jobs = reporter
    try:
        for i in range(control.EVENT_QUEUE_MAX):
            client.emit({"event": "FILLER", "n": i})
        live = record(100, 5)
        watcher.table.live[100] = live
        watcher._emit(Change("job", live))  # its JOB_SEEN finds the queue full
        assert client.jobs_missed == 1
        assert not await client.resync_jobs()  # no room yet: nothing queued, nothing lost
        queue = client._events
        while queue.qsize() > control.EVENT_QUEUE_MAX // 2:
            queue.get_nowait()
        assert await client.resync_jobs()
        assert client.jobs_missed == 0
        tail = [queue.get_nowait() for _ in range(queue.qsize())][-2:]
        assert [m["event"] for m in tail] == ["JOB_SNAPSHOT", "JOB_SEEN"]
        assert [k.pid for k in check_snapshot(tail[0])] == [100]
        assert tail[1]["job"]["pid"] == 100
        assert not await client.resync_jobs()  # once
    finally:
        ctx.destroy(linger=0)
