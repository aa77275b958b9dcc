"""Reaping agents a dead manager left: only the recorded processes, SIGTERM before SIGKILL."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from manager.reaper import reap_orphans
from manager.settings import Settings
from tests.manager.procs import orphan_process, wait_for

MID = "123e4567-e89b-42d3-a456-426614174000"
MID2 = "223e4567-e89b-42d3-a456-426614174000"


def test_restart_reaps_agents_of_a_dead_manager(
    settings: Callable[..., Settings], agent: Callable[..., Path], tmp_path: Path
) -> None:
    record = tmp_path / "orphan.json"
    s = settings(agent_path=agent(record=str(record)))
    stubborn = agent(behaviour="ignore_term", record=str(tmp_path / "stubborn.json"))
    records = s.runtime_dir / "agents"
    orphan = orphan_process(s.agent_path, MID, records)
    hard = orphan_process(stubborn, MID2, records)
    wait_for(lambda: record.exists() and (tmp_path / "stubborn.json").exists())
    # records that must not lead to a kill: the pid is another program, or was reused
    sleeper = orphan_process(
        s.agent_path, "523e4567-e89b-42d3-a456-426614174000", records, argv=["sleep", "60"]
    )
    reused = orphan_process(s.agent_path, "623e4567-e89b-42d3-a456-426614174000", records, ticks=1)
    (records / "garbage.json").write_text("{")
    try:
        killed = reap_orphans(records, term_timeout_s=0.5, kill_timeout_s=5)
        assert sorted(killed) == sorted([orphan.pid, hard.pid])
        assert orphan.wait(5) == 0, "the orphan did not get SIGTERM first"
        assert Path(f"{record}.signals").read_text() == "SIGTERM\n"
        assert hard.wait(5) == -signal.SIGKILL
        assert sleeper.poll() is None and reused.poll() is None
        assert list(records.iterdir()) == []
    finally:
        for p in (orphan, hard, sleeper, reused):
            p.kill()
            p.wait()
