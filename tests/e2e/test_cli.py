"""The xputrace CLI against the running platform: log in, start, wait, query, stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from backend import cli
from tests.agent.procs import JsonLineProc
from tests.backend.accounts import grant
from tests.e2e.conftest import Platform, eventually
from tests.workloads import cuda_expect

pytestmark = pytest.mark.bpf


async def test_cli_session(
    platform: Platform,
    build_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": "cli password 123")
    url = str(platform.client.make_url("/")).rstrip("/")

    async def xputrace(*argv: str) -> str:
        capsys.readouterr()
        rc = await asyncio.to_thread(cli.main, ["--url", url, *argv])
        out = capsys.readouterr()
        assert rc == 0, out.err
        return out.out

    # registration is closed after the first account: the platform's admin invites this one
    r = await platform.client.post(
        "/api/v1/users:invite",
        headers=platform.auth,
        json={"email": "cli@example.com", "role": "operator"},
    )
    assert r.status == 201, await r.text()
    await xputrace("register", "cli@example.com", "--invite", (await r.json())["invite_token"])
    r = await platform.client.get("/api/v1/users", headers=platform.auth)
    user = next(u for u in (await r.json())["users"] if u["email"] == "cli@example.com")
    await grant(platform.client, platform.auth, user["user_id"], ["root"])  # its workloads'
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600
    machines = json.loads(await xputrace("machines"))["machines"]
    assert [m["id"] for m in machines] == [platform.machine_id]
    work = JsonLineProc(
        [str(build_dir / "tests/workloads/cuda_calls"), "--threads", "1", "--iters", "2"]
    )
    try:
        ready = work.read_json("ready")
        mon = json.loads(await xputrace("monitors", "start", "--pid", str(ready["pid"]), "--wait"))
        assert mon["status"] == "RUNNING"
        work.send_line("go")
        work.read_json("done")
        await xputrace("monitors", "stop", mon["id"])
        work.send_line("exit")
    finally:
        work.kill()
    calls = cuda_expect.expected_calls(1, 2)

    async def stored() -> int:
        out = await xputrace("events", "--filter", f"monitor_id = '{mon['id']}'")
        return len(out.splitlines()) if len(out.splitlines()) >= len(calls) else 0

    assert await eventually(stored, "events via the CLI") == len(calls)
    out = await xputrace(
        "events",
        "--filter",
        f"pid = {ready['pid']} AND event_type = 'cudaLaunchKernel'",
        "--fields",
        "event_type,event_data.grid",
        "--limit",
        "1",
    )
    (line,) = out.splitlines()
    ev = json.loads(line)
    assert ev["event_type"] == "cudaLaunchKernel" and len(ev["event_data"]["grid"]) == 3
    rc = await asyncio.to_thread(cli.main, ["--url", url, "events", "--filter", "pid = 'x'"])
    assert rc == 1
    assert "filter: field 'pid' expects an integer" in capsys.readouterr().err
