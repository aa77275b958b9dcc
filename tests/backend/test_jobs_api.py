"""AI jobs (issue #14) on a real PostgreSQL, reported by a scripted manager over the real CURVE
control channel: events applied and their history, a snapshot applied twice, lost and unknown
jobs, filters and pages, stop and batch stop with roles and the audit log, bad input dropped
by field, secrets absent from the database."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend import cli
from backend.app import create_app
from backend.repo import jobs as jobs_repo
from backend.typedefs import DB
from tests.backend.accounts import PASSWORD, Team, add_user, make_team
from tests.backend.scripted_manager import ScriptedManager, enroll
from tests.pg_fixtures import backend_settings
from tests.platform import eventually
from xpucore import protocol

MACHINE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
T0 = 1_767_000_000_000  # Unix ms


def now() -> datetime:
    return datetime.now(UTC)


def description(
    pid: int,
    ticks: int,
    *,
    machine: str = MACHINE,
    name: str = "train.py",
    framework: str | None = "torch",
    job_type: str = "training",
    user: str = "root",
    start: int = T0,
) -> dict[str, Any]:
    """A job as manager.jobs.describe makes it."""
    return {
        "jobId": f"{machine}:{pid}:{ticks}",
        "nodeId": machine,
        "jobName": name,
        "jobType": job_type,
        "jobTypeEvidence": {"argv": "--lr"},
        "framework": framework,
        "frameworkVersion": "2.5.1",
        "frameworkVersionSource": "torch-2.5.1.dist-info",
        "frameworks": [framework] if framework else [],
        "accelerator": "cuda",
        "runtimes": ["libcudart"],
        "evidence": [{"kind": "maps", "what": "libcudart.so.12"}],
        "modelFormat": "safetensors",
        "modelFiles": ["/m/model.safetensors"],
        "pid": pid,
        "ppid": 1,
        "pgid": pid,
        "processName": "python3",
        "commandLine": f"python3 {name} --lr 0.1 --config cfg.yaml",
        "exe": "/usr/bin/python3",
        "cwd": "/work",
        "user": user,
        "uid": 0,
        "startTime": start,
        "startTicks": ticks,
        "container": None,
        "status": "running",
        "exitCode": None,
        "signal": None,
        "coreDumped": False,
        "endTime": None,
        "parameters": {
            "parameterRaw": "--lr 0.1 --config cfg.yaml",
            "parameterData": {"lr": 0.1, "config": "cfg.yaml"},
            "parameterSource": "command_line",
            "configFiles": [
                {
                    "configFilePath": "cfg.yaml",
                    "configFileContent": "epochs: 3\n",
                    "parameterData": {"epochs": 3},
                }
            ],
            # a manager never sends a secret-looking variable; one that does is not believed
            "envVars": {"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "hf_leaked"},
            "envVarsWithheld": ["HCCL_AUTH_TOKEN"],
        },
        "code": {
            "scriptPath": name,
            "scriptKind": "script",
            "scriptContent": "import torch\n",
            "importedLibraries": ["torch"],
            "configFiles": ["cfg.yaml"],
            "shScriptPath": "run.sh",
            "shScriptContent": "python3 train.py\n",
        },
    }


@dataclass
class Env:
    team: Team
    manager: ScriptedManager
    settings: Any

    @property
    def client(self) -> Any:
        return self.team.client

    async def get(self, path: str, role: str = "viewer", **params: Any) -> Any:
        r = await self.client.get(path, headers=self.team.auth(role), params=params)
        assert r.status == 200, await r.text()
        return await r.json()

    async def job(self, pid: int, ticks: int, machine: str = MACHINE) -> dict[str, Any]:
        jid = jobs_repo.job_id(machine, pid, ticks)
        return await self.get(f"/api/v1/jobs/{jid}")  # type: ignore[no-any-return]

    async def status_of(self, pid: int, ticks: int, status: str) -> dict[str, Any]:
        jid = jobs_repo.job_id(MACHINE, pid, ticks)

        async def check() -> Any:
            r = await self.client.get(f"/api/v1/jobs/{jid}", headers=self.team.viewer)
            if r.status == 404:
                return None
            body = await r.json()
            return body if body["status"] == status else None

        return await eventually(check, f"job {pid} {status}", 10.0)  # type: ignore[no-any-return]

    async def history(self, pid: int, ticks: int) -> list[tuple[Any, str, str]]:
        jid = jobs_repo.job_id(MACHINE, pid, ticks)
        body = await self.get(f"/api/v1/jobs/{jid}/status-history")
        return [(h["oldStatus"], h["newStatus"], h["reason"]) for h in body["items"]]

    async def seen(self, pid: int, ticks: int, **kw: Any) -> None:
        await self.manager.send(protocol.job_seen(MACHINE, description(pid, ticks, **kw), now()))

    async def ended(
        self,
        pid: int,
        ticks: int,
        status: str,
        code: int | None = None,
        sig: int | None = None,
        reason: str = "why",
    ) -> None:
        await self.manager.send(
            protocol.job_changed(
                MACHINE, pid, ticks, status, code, sig, False, T0 + 5000, reason, now()
            )
        )

    async def snapshot(self, *keys: tuple[int, int]) -> None:
        await self.manager.send(protocol.job_snapshot(MACHINE, list(keys), now()))


@contextlib.asynccontextmanager
async def open_env(
    aiohttp_client: Any, dsn: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[Env]:
    """A backend (settings: backend_settings with these overrides), its team, and a scripted
    manager registered as MACHINE."""
    values = {"job_stop_grace_s": 1.0, "reconcile_interval_s": 3600.0, **settings}
    backend = backend_settings(dsn, tmp_path, **values)
    cert = enroll(backend, tmp_path / "manager")
    client = await aiohttp_client(create_app(backend))
    team = await make_team(client)
    manager = ScriptedManager(backend, cert, MACHINE)
    try:
        await manager.connected()
        await manager.hello()

        async def registered() -> Any:
            r = await client.get(f"/api/v1/machines/{MACHINE}", headers=team.viewer)
            return r.status == 200

        await eventually(registered, "HELLO applied", 10.0)
        yield Env(team, manager, backend)
    finally:
        manager.close()


@pytest.fixture
async def env(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> AsyncIterator[Env]:
    async with open_env(aiohttp_client, migrated_dsn, tmp_path) as e:
        yield e


async def test_seen_then_exited_with_its_history(env: Env) -> None:
    await env.seen(100, 5000)
    job = await env.status_of(100, 5000, "running")
    assert job["jobName"] == "train.py" and job["framework"] == "torch"
    assert job["nodeId"] == MACHINE and job["node"] == {"nodeId": MACHINE, "hostname": "gpu1"}
    assert (job["pid"], job["startTicks"], job["startTime"]) == (100, 5000, T0)
    assert job["runtimes"] == ["libcudart"] and job["user"] == "root"
    await env.ended(100, 5000, "exited", code=3, reason="exited with code 3")
    job = await env.status_of(100, 5000, "exited")
    assert (job["exitCode"], job["signal"], job["endTime"]) == (3, None, T0 + 5000)
    assert job["statusReason"] == "exited with code 3"
    assert await env.history(100, 5000) == [
        (None, "running", "discovered by its manager"),
        ("running", "exited", "exited with code 3"),
    ]
    # final: a late description or end moves nothing
    await env.seen(100, 5000)
    await env.ended(100, 5000, "lost")
    await env.seen(101, 1)  # a sentinel: what came before it has been applied
    await env.status_of(101, 1, "running")
    assert (await env.job(100, 5000))["status"] == "exited"
    assert len(await env.history(100, 5000)) == 2


async def test_parameters_and_code_without_secrets(env: Env) -> None:
    await env.seen(200, 7)
    await env.status_of(200, 7, "running")
    jid = jobs_repo.job_id(MACHINE, 200, 7)
    params = await env.get(f"/api/v1/jobs/{jid}/parameters")
    first, cfg = params["items"]
    assert first["parameterData"] == {"lr": 0.1, "config": "cfg.yaml"}
    assert first["envVars"] == {"CUDA_VISIBLE_DEVICES": "0"}
    assert first["envVarsWithheld"] == ["HCCL_AUTH_TOKEN"]
    assert (cfg["parameterSource"], cfg["configFilePath"], cfg["parameterData"]) == (
        "config_file",
        "cfg.yaml",
        {"epochs": 3},
    )
    code = (await env.get(f"/api/v1/jobs/{jid}/code"))["items"][0]
    assert (code["scriptContent"], code["shScriptPath"]) == ("import torch\n", "run.sh")
    for path in ("", "/parameters", "/code"):
        assert (
            "hf_leaked"
            not in await (
                await env.client.get(f"/api/v1/jobs/{jid}{path}", headers=env.team.viewer)
            ).text()
        )
    async with env.client.server.app[DB].connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs WHERE jobs::text LIKE '%hf_leaked%'")
        assert (await cur.fetchone()) == (0,)
        with pytest.raises(psycopg.errors.CheckViolation):  # the database refuses one too
            await conn.execute(
                'UPDATE jobs SET parameters = \'{"envVars": {"A_PASSWORD": "x"}}\' WHERE id = %s',
                (jid,),
            )


async def test_snapshot_twice_lost_and_unknown(env: Env) -> None:
    for pid in (300, 301, 302):
        await env.seen(pid, 9)
    await env.status_of(302, 9, "running")
    await env.ended(302, 9, "killed", sig=9, reason="killed by signal 9")
    await env.status_of(302, 9, "killed")
    # the manager goes away: its running jobs are not known to run
    await env.manager.send(protocol.goodbye(MACHINE, now()))
    await env.status_of(301, 9, "unknown")
    assert (await env.job(300, 9))["status"] == "unknown"
    assert (await env.job(302, 9))["status"] == "killed"
    # back: 300 still runs, 301 ended unseen; the same snapshot and descriptions twice
    for _ in range(2):
        await env.manager.hello()
        await env.snapshot((300, 9))
        await env.seen(300, 9)
    await env.status_of(301, 9, "lost")
    await env.status_of(300, 9, "running")
    await env.seen(303, 1)  # sentinel
    await env.status_of(303, 1, "running")
    assert [h[:2] for h in await env.history(300, 9)] == [
        (None, "running"),
        ("running", "unknown"),
        ("unknown", "running"),
    ]
    lost = await env.history(301, 9)
    assert [h[:2] for h in lost] == [(None, "running"), ("running", "unknown"), ("unknown", "lost")]
    assert "ended unseen" in lost[-1][2]
    job = await env.job(301, 9)
    assert (job["endTime"], job["exitCode"]) == (None, None)
    # a lost job whose end is reported after all ends as it did
    await env.ended(301, 9, "exited", code=0)
    await env.status_of(301, 9, "exited")


async def test_filters_order_and_pages(env: Env) -> None:
    await env.seen(400, 1, name="a.py", framework="torch", user="alice", start=T0 + 1)
    await env.seen(401, 1, name="b.py", framework="vllm", job_type="inference", start=T0 + 2)
    await env.seen(402, 1, name="c.py", framework="jax", start=T0 + 3)
    await env.seen(403, 1, name="d.py", framework="torch", start=T0 + 4)
    await env.seen(404, 1, name="e.py", framework=None, job_type="other", start=T0 + 5)
    await env.status_of(404, 1, "running")
    await env.ended(402, 1, "exited", code=0)
    await env.status_of(402, 1, "exited")

    async def names(filter: str = "", **kw: Any) -> list[str]:
        body = await env.get("/api/v1/jobs", filter=filter, **kw)
        return [j["jobName"] for j in body["jobs"]]

    assert await names() == ["e.py", "d.py", "c.py", "b.py", "a.py"]  # newest first
    assert await names('status = "running"', order_by="name") == ["a.py", "b.py", "d.py", "e.py"]
    assert await names('framework = "torch"') == ["d.py", "a.py"]
    assert await names('jobType = "inference"') == ["b.py"]
    assert await names('user = "alice"') == ["a.py"]
    assert await names('name = "c.py" AND status = "exited"') == ["c.py"]
    assert await names(f'machine = "{MACHINE}" AND pid >= 403', order_by="startTime") == [
        "d.py",
        "e.py",
    ]
    assert await names(f'machine = "{OTHER}"') == []
    seen, token = [], ""
    while True:
        body = await env.get(
            "/api/v1/jobs",
            order_by="name desc",
            page_size=2,
            **({"page_token": token} if token else {}),
        )
        assert len(body["jobs"]) <= 2
        seen += [j["jobName"] for j in body["jobs"]]
        token = body["next_page_token"]
        if not token:
            break
    assert seen == ["e.py", "d.py", "c.py", "b.py", "a.py"]
    body = await env.get(f"/api/v1/machines/{MACHINE}/jobs", filter='status = "exited"')
    assert [j["jobName"] for j in body["jobs"]] == ["c.py"]
    r = await env.client.get(
        "/api/v1/jobs", headers=env.team.viewer, params={"filter": 'secret = "x"'}
    )
    assert r.status == 400 and "filter" in (await r.json())["error"]["message"]
    r = await env.client.get("/api/v1/jobs", headers=env.team.viewer, params={"order_by": "pid"})
    assert r.status == 400 and "order_by" in (await r.json())["error"]["message"]
    r = await env.client.get(f"/api/v1/machines/{OTHER}/jobs", headers=env.team.viewer)
    assert r.status == 404


async def test_bad_reports_are_dropped_by_field(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "backend.job_events")
    bad: list[tuple[dict[str, Any], str]] = []
    good = description(500, 1)
    for field, value, named in (
        ("pid", "500", "job.pid"),
        ("nodeId", OTHER, "job.nodeId"),
        ("startTicks", -1, "job.startTicks"),
        ("commandLine", "x" * 40_000, "job.commandLine"),
        ("status", "zombie", "job.status"),
        ("cwd", "/a\0b", "job.cwd"),
    ):
        job = copy.deepcopy(good)
        job[field] = value
        bad.append((protocol.job_seen(MACHINE, job, now()), named))
    big = copy.deepcopy(good)
    big["code"]["scriptContent"] = "x" * (800 << 10)
    bad.append((protocol.job_seen(MACHINE, big, now()), "job:"))
    wrong = protocol.job_seen(MACHINE, good, now())
    wrong["machine_id"] = OTHER
    bad.append((wrong, "machine_id"))
    end = protocol.job_changed(MACHINE, 500, 1, "zombie", None, None, False, None, None, now())
    bad.append((end, "status"))
    snap = protocol.job_snapshot(MACHINE, [(0, 1)], now())
    bad.append((snap, "jobs[0].pid"))
    for msg, _ in bad:
        await env.manager.send(msg)
    await env.seen(501, 1)  # sentinel
    await env.status_of(501, 1, "running")
    body = await env.get("/api/v1/jobs")
    assert [j["pid"] for j in body["jobs"]] == [501]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == len(bad), dropped
    for (_, named), line in zip(bad, dropped, strict=True):
        assert f": {named}" in line, (named, line)


async def _answer_stop(env: Env, *, reply: dict[str, Any] | None = None) -> dict[str, Any]:
    """Receives a STOP_JOB and answers it (by default: stopped by SIGTERM)."""
    cmd = await env.manager.command()
    assert cmd["command"] == "STOP_JOB"
    await env.manager.send(
        {
            **(
                reply
                or {
                    "status": "SUCCESS",
                    "job_status": "stopped",
                    "exit_code": None,
                    "signal": 15,
                    "end_time": T0 + 9000,
                    "signals_sent": ["SIGTERM"],
                    "message": "stopped (SIGTERM)",
                }
            ),
            "request_id": cmd["request_id"],
        }
    )
    return cmd


async def test_stop_roles_refusals_and_audit(env: Env) -> None:
    c, team = env.client, env.team
    await env.seen(600, 1)
    await env.seen(601, 1, user="alice")
    await env.seen(602, 1)
    await env.status_of(602, 1, "running")
    jid = jobs_repo.job_id(MACHINE, 600, 1)
    # a viewer may read, not stop
    r = await c.post(f"/api/v1/jobs/{jid}:stop", headers=team.viewer)
    assert r.status == 403
    # an operator granted root stops a root job: SIGTERM through the manager, then stopped
    answer = asyncio.create_task(_answer_stop(env))
    r = await c.post(f"/api/v1/jobs/{jid}:stop", headers=team.operator)
    assert r.status == 200, await r.text()
    cmd = await answer
    assert {k: cmd[k] for k in ("pid", "start_ticks", "grace_s", "allowed_users")} == {
        "pid": 600,
        "start_ticks": 1,
        "grace_s": 1.0,
        "allowed_users": ["root"],
    }
    body = await r.json()
    assert (body["status"], body["signal"], body["endTime"]) == ("stopped", 15, T0 + 9000)
    assert body["statusReason"] == "stopped by op@example.com (SIGTERM)"
    # the manager's own report of the end, after the reply, changes nothing
    await env.ended(600, 1, "stopped", sig=15, reason="stopped on request (SIGTERM)")
    r = await c.post(f"/api/v1/jobs/{jid}:stop", headers=team.operator)
    assert r.status == 409  # not running any more
    assert [h[1] for h in await env.history(600, 1)] == ["running", "stopped"]
    # a job of an account not granted: refused before the manager hears of it
    alice = jobs_repo.job_id(MACHINE, 601, 1)
    r = await c.post(f"/api/v1/jobs/{alice}:stop", headers=team.operator)
    assert r.status == 403 and "alice" in (await r.json())["error"]["message"]
    # the manager refuses (a platform process, say): 403 with its reason
    other = jobs_repo.job_id(MACHINE, 602, 1)
    answer = asyncio.create_task(
        _answer_stop(
            env,
            reply=protocol.failure(
                None,
                None,
                protocol.ErrorCode.PERMISSION_DENIED,
                "pid: 602 is a process the platform does not stop",
            ),
        )
    )
    r = await c.post(f"/api/v1/jobs/{other}:stop", headers=team.admin)
    cmd = await answer
    assert "allowed_users" not in cmd  # an admin's: any account
    assert r.status == 403 and "platform" in (await r.json())["error"]["message"]
    assert (await env.job(602, 1))["status"] == "running"
    logs = (await env.get("/api/v1/auditLogs", "admin", filter='action = "STOP_JOB"'))["audit_logs"]
    got = sorted((e["actor_role"], e["result"], e["http_status"]) for e in logs)
    assert got == [
        ("admin", "FAILURE", 403),
        ("operator", "FAILURE", 403),
        ("operator", "FAILURE", 409),
        ("operator", "SUCCESS", 200),
        ("viewer", "FAILURE", 403),
    ]
    assert {e["target"] for e in logs} >= {f"jobs/{jid}:stop"}


async def test_batch_stop_answers_each_job(env: Env) -> None:
    c, team = env.client, env.team
    await env.seen(700, 1)
    await env.seen(701, 1)
    await env.status_of(701, 1, "running")
    await env.ended(701, 1, "exited", code=0)
    await env.status_of(701, 1, "exited")
    running, ended = jobs_repo.job_id(MACHINE, 700, 1), jobs_repo.job_id(MACHINE, 701, 1)
    missing = "00000000-0000-4000-8000-000000000000"
    answer = asyncio.create_task(_answer_stop(env))
    r = await c.post(
        "/api/v1/jobs:batchStop",
        headers=team.operator,
        json={"jobIds": [str(running), str(ended), missing]},
    )
    assert r.status == 200, await r.text()
    await answer
    body = await r.json()
    assert body["success"] == [str(running)]
    assert sorted((f["jobId"], f["code"]) for f in body["failed"]) == sorted(
        [(str(ended), 409), (missing, 404)]
    )
    assert (await env.job(700, 1))["status"] == "stopped"
    r = await c.post("/api/v1/jobs:batchStop", headers=team.operator, json={"jobIds": []})
    assert r.status == 400 and "jobIds" in (await r.json())["error"]["message"]
    r = await c.post("/api/v1/jobs:batchStop", headers=team.viewer, json={"jobIds": [str(running)]})
    assert r.status == 403
    logs = (await env.get("/api/v1/auditLogs", "admin", filter='action = "BATCH_STOP_JOBS"'))[
        "audit_logs"
    ]
    assert sorted(e["result"] for e in logs) == ["FAILURE", "FAILURE", "SUCCESS"]
    done = next(e for e in logs if e["result"] == "SUCCESS")
    assert f"stopped 1: {running}" in done["message"]


async def test_operator_without_accounts_cannot_stop(env: Env) -> None:
    op = await add_user(
        env.client, env.team.admin, "none@example.com", "operator", unix_accounts=()
    )
    await env.seen(800, 1)
    await env.status_of(800, 1, "running")
    r = await env.client.post(f"/api/v1/jobs/{jobs_repo.job_id(MACHINE, 800, 1)}:stop", headers=op)
    assert r.status == 403


async def test_cli_lists_shows_and_stops(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": PASSWORD)
    url = str(env.client.make_url("/")).rstrip("/")

    async def xputrace(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = await asyncio.to_thread(cli.main, ["--url", url, *argv])
        out = capsys.readouterr()
        return rc, out.out, out.err

    assert (await xputrace("login", "op@example.com"))[0] == 0
    await env.seen(900, 1, name="a.py", start=T0 + 1)
    await env.seen(901, 1, name="b.py", start=T0 + 2)
    await env.status_of(901, 1, "running")
    rc, out, err = await xputrace("jobs")
    assert rc == 0, err
    assert [json.loads(line)["jobName"] for line in out.splitlines()] == ["b.py", "a.py"]
    rc, out, _ = await xputrace("jobs", "list", "--filter", 'name = "a.py"', "--machine", MACHINE)
    assert [json.loads(line)["pid"] for line in out.splitlines()] == [900]
    jid = str(jobs_repo.job_id(MACHINE, 900, 1))
    rc, out, _ = await xputrace("jobs", "show", jid, "--history", "--parameters")
    shown = json.loads(out)
    assert (shown["jobId"], shown["status-history"][0]["newStatus"]) == (jid, "running")
    assert shown["parameters"][0]["parameterData"] == {"lr": 0.1, "config": "cfg.yaml"}
    answer = asyncio.create_task(_answer_stop(env))
    rc, out, err = await xputrace("jobs", "stop", jid)
    await answer
    assert rc == 0, err
    assert json.loads(out)["status"] == "stopped"
    rc, _, err = await xputrace("jobs", "stop", jid, str(jobs_repo.job_id(MACHINE, 901, 9)))
    assert rc == 1 and "2 of 2 not stopped" in err


async def test_a_silent_manager_leaves_its_jobs_unknown(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    async with open_env(
        aiohttp_client, migrated_dsn, tmp_path, heartbeat_timeout_s=1.0
    ) as e:  # the scripted manager sends none
        await e.seen(950, 1)
        job = await e.status_of(950, 1, "unknown")
        assert job["statusReason"] == "its manager is silent (no heartbeat for 1 s)"
        # heard from again on the same connection: what it queued came first, in order
        await e.manager.send(protocol.heartbeat(MACHINE, 1, [], now()))
        job = await e.status_of(950, 1, "running")
        assert job["statusReason"] == "its manager is heard from again"
        await e.status_of(950, 1, "unknown")  # silent again
        await e.manager.hello()
        await e.snapshot()  # reconnected, and it no longer runs
        await e.status_of(950, 1, "lost")
