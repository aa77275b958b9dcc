"""GET /api/v1/search (issue #15 section 6) on a real PostgreSQL: machines, jobs, monitors and
traces found by name, part of a name, a command-line flag and a parameter value; ranked
(the exact name first); kinds; pages; each user's traces only; 400s naming the parameter;
`xputrace search`."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend import cli
from backend.app import create_app
from backend.repo import jobs, machines, monitors, trace_jobs
from backend.repo import search as search_repo
from backend.typedefs import DB
from tests.backend.accounts import PASSWORD, Team, make_team
from tests.pg_fixtures import backend_settings

GPU = "machine-gpu"
NPU = "machine-npu"
T0 = 1_767_000_000_000


def job(pid: int, name: str, argv: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job's description as the backend stores it (backend.repo.jobs.upsert)."""
    return {
        "jobName": name,
        "jobType": "training",
        "processName": "python3",
        "commandLine": argv,
        "cwd": "/work",
        "user": "root",
        "pid": pid,
        "startTicks": pid * 10,
        "startTime": T0 + pid,
        "parameters": {
            "parameterData": data or {},
            "configFiles": [{"configFilePath": "/data/exp7/cfg.yaml", "parameterData": {}}]
            if data
            else [],
            "envVars": {"CUDA_VISIBLE_DEVICES": "3"},
        },
    }


@dataclass
class Api:
    client: TestClient
    team: Team
    ids: dict[str, str]

    async def search(self, role: str = "viewer", **params: Any) -> dict[str, Any]:
        r = await self.client.get("/api/v1/search", headers=self.team.auth(role), params=params)
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body

    async def hits(self, q: str, **params: Any) -> list[tuple[str, str]]:
        body = await self.search(q=q, **params)
        return [(h["kind"], h["title"]) for h in body["results"]]


@pytest.fixture
async def api(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Api:
    client: TestClient = await aiohttp_client(
        create_app(backend_settings(migrated_dsn, tmp_path, api_requests_per_s=0))
    )
    team = await make_team(client)
    ids: dict[str, str] = {}
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, GPU, "key-gpu", {"hostname": "gpu-node-07.lab"})
        await machines.record_hello(conn, NPU, "key-npu", {"hostname": "ascend-910b-01"})
        described = [
            job(101, "train_llama.py", "python3 train_llama.py --lr 0.1 --batch-size 32",
                {"lr": 0.1, "batch_size": 32, "optimizer": "adamw"}),
            job(102, "serve.py", "python3 serve.py --model /models/llama-3-8b --port 8000"),
            job(103, "eval.py", "python3 eval.py --lr 0.5 --dataset mmlu",
                {"lr": 0.5, "dataset": "mmlu"}),
            job(104, "llama", "python3 -m vllm.entrypoints.api_server --model llama"),
        ]  # fmt: skip
        for d in described:
            jid = jobs.job_id(GPU, d["pid"], d["startTicks"])
            await jobs.upsert(conn, jid, GPU, d, "running", "", {})
            ids[d["jobName"]] = str(jid)
        for name, kind in (("resnet profiling", "CUDA"), ("llama kernels", "CUDA")):
            m = await monitors.create_monitor(conn, GPU, kind, {"pid": 101}, {}, name)
            ids[name] = str(m["id"])
        cur = await conn.execute("SELECT email, id FROM users")
        users = {email: uid for email, uid in await cur.fetchall()}
        for email, name in (
            ("view@example.com", "llama step trace"),
            ("op@example.com", "operator's llama trace"),
        ):
            t = await trace_jobs.create_job(conn, users[email], name, "", "perfetto", False)
            ids[name] = str(t["id"])
    return Api(client, team, ids)


async def test_each_kind_found_by_name(api: Api) -> None:
    assert await api.hits("gpu-node-07.lab") == [("machine", "gpu-node-07.lab")]
    assert await api.hits("serve.py") == [("job", "serve.py")]
    assert await api.hits("resnet profiling") == [("monitor", "resnet profiling")]
    assert await api.hits("step trace") == [("trace", "llama step trace")]
    body = await api.search(q="resnet")
    (hit,) = body["results"]
    assert hit["url"] == f"/api/v1/machines/{GPU}/monitors/{api.ids['resnet profiling']}"
    assert hit["id"] == api.ids["resnet profiling"] and hit["machine_id"] == GPU
    assert hit["status"] == "STARTING" and hit["matched_field"] == "display_name"
    (machine,) = (await api.search(q="ascend"))["results"]
    assert machine["url"] == f"/api/v1/machines/{NPU}" and machine["kind"] == "machine"
    (trace,) = (await api.search(q="step"))["results"]
    assert trace["url"] == f"/api/v1/traces/jobs/{api.ids['llama step trace']}"


async def test_part_of_a_name(api: Api) -> None:
    """A part of a word (trigram index), in any case; 1 or 2 characters: a name's start."""
    assert await api.hits("NODE-0") == [("machine", "gpu-node-07.lab")]
    assert await api.hits("scend", kinds="machine") == [("machine", "ascend-910b-01")]
    assert await api.hits("rv", kinds="job") == []  # inside serve.py, not its start
    assert await api.hits("se", kinds="job") == [("job", "serve.py")]
    body = await api.search(q="ain_lla")
    (hit,) = body["results"]
    assert (hit["title"], hit["matched_field"], hit["snippet"]) == (
        "train_llama.py",
        "name",
        "train_llama.py",
    )
    assert hit["highlights"] == [[2, 9]]


async def test_flags_and_parameters(api: Api) -> None:
    """A flag, a key=value (the command line's --lr 0.1 or the parsed parameters), a value,
    a config file's path: punctuation separates words, so each is a phrase."""
    assert await api.hits("--batch-size", kinds="job") == [("job", "train_llama.py")]
    assert await api.hits("lr=0.5") == [("job", "eval.py")]
    assert await api.hits("adamw") == [("job", "train_llama.py")]
    assert await api.hits("/data/exp7/cfg.yaml") == [
        ("job", "eval.py"),
        ("job", "train_llama.py"),
    ] or await api.hits("/data/exp7/cfg.yaml") == [
        ("job", "train_llama.py"),
        ("job", "eval.py"),
    ]
    (hit,) = (await api.search(q="adamw"))["results"]
    assert hit["matched_field"] == "parameters"
    a, b = hit["highlights"][0]
    assert hit["snippet"][a:b] == "adamw" and "optimizer=adamw" in hit["snippet"]
    (hit,) = (await api.search(q="--port 8000"))["results"]
    assert hit["matched_field"] == "command_line" and hit["title"] == "serve.py"
    assert [hit["snippet"][a:b] for a, b in hit["highlights"]] == ["--port 8000"]
    # the environment is never searched, nor a phrase whose words are apart
    assert await api.hits("CUDA_VISIBLE_DEVICES") == []
    assert await api.hits("lr=32") == []


async def test_words_phrases_and_or(api: Api) -> None:
    assert await api.hits("mmlu lr", kinds="job") == [("job", "eval.py")]
    assert await api.hits('"lr 0.1"', kinds="job") == [("job", "train_llama.py")]
    both = await api.hits("mmlu OR adamw", kinds="job")
    assert sorted(both) == [("job", "eval.py"), ("job", "train_llama.py")]
    assert await api.hits("mmlu adamw", kinds="job") == []


async def test_exact_name_ranks_first(api: Api) -> None:
    """ "llama" is a job's name; other jobs, monitors and traces only mention it. The exact
    name first, then names holding it, then command lines."""
    body = await api.search(q="llama")
    hits = [(h["kind"], h["title"]) for h in body["results"]]
    assert hits[0] == ("job", "llama")
    assert body["results"][0]["score"] >= 3
    assert ("trace", "operator's llama trace") not in hits  # another user's
    assert set(hits[1:]) == {
        ("job", "train_llama.py"),
        ("monitor", "llama kernels"),
        ("trace", "llama step trace"),
        ("job", "serve.py"),  # --model /models/llama-3-8b
    }
    assert hits[-1] == ("job", "serve.py")  # only its command line mentions it
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    serve = body["results"][-1]
    assert serve["matched_field"] == "command_line" and serve["score"] < 1


async def test_kinds_filter_and_seed_names(api: Api) -> None:
    everything = await api.hits("llama")
    assert {k for k, _ in everything} == {"job", "monitor", "trace"}
    assert {k for k, _ in await api.hits("llama", kinds="monitor,trace")} == {"monitor", "trace"}
    assert await api.hits("llama", kinds="machine") == []
    assert {k for k, _ in await api.hits("llama", type="job")} == {"job"}
    assert await api.hits("gpu", type="node") == [("machine", "gpu-node-07.lab")]
    assert await api.hits("llama", kinds="trace", type="job") == [("trace", "llama step trace")]
    assert len(await api.hits("llama", limit="2")) == 2


async def test_pages(api: Api) -> None:
    whole = (await api.search(q="llama"))["results"]
    assert len(whole) == 5
    seen, token, pages = [], "", 0
    while True:
        params = {"q": "llama", "page_size": "2", **({"page_token": token} if token else {})}
        body = await api.search(**params)
        seen += body["results"]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert pages == 3 and [h["id"] for h in seen] == [h["id"] for h in whole]
    first = await api.search(q="llama", page_size="2")
    r = await api.client.get(
        "/api/v1/search",
        headers=api.team.viewer,
        params={"q": "llama kernels", "page_token": first["next_page_token"]},
    )
    assert r.status == 400 and "page_token" in (await r.json())["error"]["message"]


async def test_traces_only_the_callers(api: Api) -> None:
    """As GET /traces/jobs/{id}: each user finds the traces they generated, admins included."""
    for role, mine in (("viewer", "llama step trace"), ("operator", "operator's llama trace")):
        body = await api.search(role, q="llama", kinds="trace")
        assert [h["title"] for h in body["results"]] == [mine]
    assert (await api.search("admin", q="trace", kinds="trace"))["results"] == []


BAD = [
    ({}, "q"),
    ({"q": ""}, "q"),
    ({"q": " \t "}, "q"),
    ({"q": "x" * 201}, "q"),
    ({"q": "a\x00b"}, "q"),
    ({"q": "llama", "kinds": "job,node"}, "kinds"),
    ({"q": "llama", "kinds": "job,"}, "kinds"),
    ({"q": "llama", "type": "jobs"}, "type"),
    ({"q": "llama", "kinds": "job", "type": "jobs"}, "type"),
    ({"q": "llama", "page_size": "-1"}, "page_size"),
    ({"q": "llama", "limit": "ten"}, "limit"),
    ({"q": "llama", "page_token": "garbage"}, "page_token"),
]


async def test_bad_queries_name_the_parameter(api: Api) -> None:
    for params, name in BAD:
        r = await api.client.get("/api/v1/search", headers=api.team.viewer, params=params)
        body = await r.json()
        assert r.status == 400, (params, body)
        assert body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"].startswith(f"{name}: "), (params, body)
    assert len(await api.hits("x" * 200)) == 0  # as long as it may be


async def test_needs_a_login(api: Api) -> None:
    r = await api.client.get("/api/v1/search", params={"q": "llama"})
    assert r.status == 401
    assert uuid.UUID(api.ids["llama"])  # the fixture made its rows


async def test_cli_prints_a_table(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": PASSWORD)
    url = str(api.client.make_url("/")).rstrip("/")

    async def xputrace(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = await asyncio.to_thread(cli.main, ["--url", url, *argv])
        out = capsys.readouterr()
        return rc, out.out, out.err

    assert (await xputrace("login", "view@example.com"))[0] == 0
    rc, out, err = await xputrace("search", "llama", "--kind", "job", "--limit", "2")
    assert rc == 0, err
    ids = api.ids
    assert out.splitlines() == [
        "KIND  TITLE           MATCHED               ID",
        f"job   llama           name: llama           {ids['llama']}",
        f"job   train_llama.py  name: train_llama.py  {ids['train_llama.py']}",
    ]
    rc, out, _ = await xputrace("search", "--kind", "job,machine", "--", "--port")
    (_, row) = out.splitlines()
    assert row.split()[:3] == ["job", "serve.py", "command_line:"]
    assert "--port 8000" in row and row.endswith(api.ids["serve.py"])
    rc, out, _ = await xputrace("search", "nothing-like-it")
    assert (rc, out) == (0, "no match\n")
    rc, _, err = await xputrace("search", "llama", "--kind", "node")
    assert rc != 0 and "kinds: unknown kind 'node'" in err


def test_search_table_cuts_long_snippets() -> None:
    hit = {
        "kind": "job",
        "title": "t",
        "id": "i",
        "matched_field": "command_line",
        "snippet": "python3 " + "x" * 100,
    }
    (_, row) = cli.search_table({"results": [hit]}).splitlines()
    assert row.endswith("  command_line: python3 " + "x" * 51 + "…  i")


async def test_many_matches_rank_the_newest_and_the_exact_name(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXHAUSTIVE matches, the CANDIDATES newest are ranked, and the exact name besides
    (bench/search.py shows the same at 100k jobs)."""
    monkeypatch.setattr(search_repo, "EXHAUSTIVE", 2)
    monkeypatch.setattr(search_repo, "CANDIDATES", 1)
    # every job's command line holds python3: the newest (pid 104's) is ranked, and the
    # oldest too, being named so
    async with api.client.server.app[DB].connection() as conn:
        d = job(99, "python3", "python3")
        await jobs.upsert(conn, jobs.job_id(GPU, 99, 990), GPU, d, "running", "", {})
    assert await api.hits("python3", kinds="job") == [("job", "python3"), ("job", "llama")]
    monkeypatch.setattr(search_repo, "EXHAUSTIVE", 5)
    assert len(await api.hits("python3", kinds="job")) == 5
