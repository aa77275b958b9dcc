"""Whatever the backend accepts, the machine can do: POST monitors is checked against the
monitor types and keys the machine's manager announced (its real HELLO, through the backend's
real event handler), and refused with 400 naming the field instead of 201 then
FAILED_TO_START."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.control_events import handle_event
from manager.supervisor import AGENT_TYPES
from tests.pg_fixtures import backend_settings
from xpucore import protocol

MACHINE = "a" * 64
OLD_MANAGER = "b" * 64


@pytest.fixture
async def api(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> tuple[TestClient, dict]:
    client = await aiohttp_client(create_app(backend_settings(migrated_dsn, tmp_path)))
    app = client.server.app
    types = {name: kind.options() for name, kind in AGENT_TYPES.items()}
    hello = protocol.hello(MACHINE, "gpu1", "Linux", [], "0.1.0", types, [], datetime.now(UTC))
    await handle_event(app, MACHINE, "key-a", hello)
    old = {**hello, "machine_id": OLD_MANAGER, "monitor_types": ["CUDA", "SYSCALL"]}
    await handle_event(app, OLD_MANAGER, "key-b", old)
    user = {"email": "e@example.com", "password": "long enough pw"}
    await client.post("/api/v1/auth:register", json=user)
    r = await client.post("/api/v1/auth:login", json=user)
    return client, {"Authorization": f"Bearer {(await r.json())['access_token']}"}


PID = {"pid": 4242}


STEPS = {"function": "Optimizer.step", "skip": 100, "count": 10}


@pytest.mark.parametrize(
    ("config", "field", "needle"),
    [
        ({"window": {**STEPS, "count": 0}}, "config.window.count", "Expected `int` >= 1"),
        ({"window": {**STEPS, "skip": -1}}, "config.window.skip", "Expected `int` >= 0"),
        ({"window": {**STEPS, "function": "a b"}}, "config.window.function", "matching regex"),
        ({"window": {"function": "step"}}, "config.window.count", "is required"),
        ({"window": {**STEPS, "every": 2}}, "config.window.every", "is not allowed"),
    ],
)
async def test_a_bad_window_is_400_naming_its_field(
    api: Any, config: dict[str, Any], field: str, needle: str
) -> None:
    client, auth = api
    body = {"monitor_type": "CUDA", "target": PID, "config": config}
    r = await client.post(f"/api/v1/machines/{MACHINE}/monitors", json=body, headers=auth)
    answer = await r.json()
    assert r.status == 400, answer
    message = answer["error"]["message"]
    assert message.startswith(f"{field}: ") and needle in message, answer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"monitor_type": "SYSCALL", "target": PID, "config": {"window": STEPS}}, "config.window"),
        (
            {"monitor_type": "CUDA", "target": {"library_path": "/usr/lib/libcudart.so.12"},
             "config": {"window": STEPS}},
            "config.window",
        ),
    ],
)  # fmt: skip
async def test_a_window_needs_a_process_of_a_type_that_takes_it(
    api: Any, body: dict[str, Any], field: str
) -> None:
    client, auth = api
    r = await client.post(f"/api/v1/machines/{MACHINE}/monitors", json=body, headers=auth)
    answer = await r.json()
    assert r.status == 400, answer
    assert answer["error"]["message"].startswith(f"{field}: a step window needs"), answer


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        (
            {"monitor_type": "OLLAMA", "target": PID},
            "monitor_type",
            "this machine cannot run OLLAMA monitors (it runs: ACL, CUDA, PYTHON, SYSCALL)",
        ),
        (
            {"monitor_type": "CUDA", "target": {**PID, "binary_path": "/usr/bin/python3.9"}},
            "target.binary_path",
            "not supported by CUDA monitors on this machine",
        ),
        (
            {"monitor_type": "PYTHON", "target": {**PID, "binary_path": "/usr/bin/python3.11"}},
            "target.binary_path",
            "not supported by PYTHON monitors",
        ),
        (
            {"monitor_type": "CUDA", "target": PID, "config": {"sampling_rate": 0.5}},
            "config.sampling_rate",
            "not supported by CUDA monitors",
        ),
        (
            {"monitor_type": "SYSCALL", "target": PID, "config": {"enable_profiling": True}},
            "config.enable_profiling",
            "not supported by SYSCALL monitors",
        ),
        (
            {"monitor_type": "CUDA", "target": PID, "config": {"sample_hz": 99}},
            "config.sample_hz",
            "(they take config python_stacks, window)",
        ),
        (
            {"monitor_type": "SYSCALL", "target": PID, "config": {"python_stacks": True}},
            "config.python_stacks",
            "not supported by SYSCALL monitors",
        ),
    ],
)
async def test_what_the_machine_cannot_do_is_400(
    api: Any, body: dict[str, Any], field: str, needle: str
) -> None:
    client, auth = api
    r = await client.post(f"/api/v1/machines/{MACHINE}/monitors", json=body, headers=auth)
    answer = await r.json()
    assert r.status == 400, answer
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["message"].startswith(f"{field}: "), answer
    assert needle in answer["error"]["message"], answer


@pytest.mark.parametrize(
    "body",
    [
        # the seed's own example values: defaults, accepted
        {
            "monitor_type": "CUDA",
            "target": {**PID, "comm": "python"},
            "config": {"sampling_rate": 1.0, "enable_profiling": False},
        },
        {"monitor_type": "PYTHON", "target": {**PID, "comm": "python3"}},
        {"monitor_type": "PYTHON", "target": PID, "config": {"sample_hz": 49}},
        {"monitor_type": "SYSCALL", "target": {"comm": "python3", "syscalls": ["read"]}},
        {"monitor_type": "CUDA", "target": PID, "config": {"window": STEPS}},
        {"monitor_type": "PYTHON", "target": PID, "config": {"window": {**STEPS, "skip": 0}}},
    ],
)
async def test_what_it_can_do_is_accepted(api: Any, body: dict[str, Any]) -> None:
    client, auth = api
    r = await client.post(f"/api/v1/machines/{MACHINE}/monitors", json=body, headers=auth)
    assert r.status == 201, await r.text()


async def test_announcement_is_shown_and_an_older_manager_is_held_to_its_types(api: Any) -> None:
    client, auth = api
    r = await client.get(f"/api/v1/machines/{MACHINE}", headers=auth)
    types = (await r.json())["monitor_types"]
    assert sorted(types) == ["ACL", "CUDA", "PYTHON", "SYSCALL"]
    assert types["PYTHON"] == {
        "target": ["comm", "pid"],
        "config": ["batch_events", "flush_ms", "functions", "ringbuf_kb", "sample_hz", "window"],
    }
    mon = f"/api/v1/machines/{OLD_MANAGER}/monitors"
    r = await client.post(mon, json={"monitor_type": "PYTHON", "target": PID}, headers=auth)
    assert r.status == 400 and "cannot run PYTHON" in (await r.json())["error"]["message"]
    r = await client.post(mon, json={"monitor_type": "CUDA", "target": PID}, headers=auth)
    assert r.status == 201
