"""A platform under test: the backend in process (real PostgreSQL, CURVE control and ingest)
and a real manager process (``python -m manager``) dialing it, with the agent binary given:
the real xputrace-agent (tests/e2e, as root) or the stand-in of tests/manager/fake_agent.

More managers, each a "machine" of its own on this host (its own enrolled key, machine-id
file, runtime dir and ``--hostname``), join with ``Platform.add_manager``; their names are
given to ``open_platform(extra_managers=...)``, since the backend reads the enrolled keys
when it starts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from backend.app import create_app, server_keys
from manager import identity
from manager import keys as manager_keys
from tests.pg_fixtures import backend_settings

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 60.0


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = DEADLINE_S
) -> Any:
    """check() until it returns something truthy: awaiting a state the API reports."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s (last: {got!r})")
        await asyncio.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (after SIGCONT: a test may have left it stopped) and wait; a manager still
    running after 30 s prints its stacks (SIGUSR1), is killed, and the test fails."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # its stacks to stderr: where it waits
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)  # the dump is written in the signal handler
        proc.kill()
        proc.wait(30)
        raise


class ManagerProcess:
    """One more manager of the platform: a machine of its own on this host."""

    def __init__(self, name: str, machine_id: str, hostname: str, argv: list[str]) -> None:
        self.name, self.machine_id, self.hostname, self.argv = name, machine_id, hostname, argv
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass(frozen=True)
class ManagerSetup:
    """What every manager of one platform shares, and the extra managers' key pairs."""

    control_endpoint: str
    server_key: Path  # the backend's public key file
    agent_path: Path
    enrolled: dict[str, Path] = field(default_factory=dict)  # extra name -> its secret key file

    def argv(self, secret: Path, run: Path, machine_file: Path) -> list[str]:
        """python -m manager with key pair secret, its own runtime dir and machine id."""
        return [
            sys.executable,
            "-m",
            "manager",
            "--backend",
            self.control_endpoint,
            "--server-key",
            str(self.server_key),
            "--key",
            str(secret),
            "--agent-path",
            str(self.agent_path),
            "--runtime-dir",
            str(run),
            "--heartbeat-interval",
            "0.5",
            "--machine-id-file",
            str(machine_file),
            "--agent-stop-timeout",
            "20",
        ]


class Platform:
    def __init__(
        self,
        client: TestClient,
        token: str,
        machine_id: str,
        manager: subprocess.Popen[bytes],
        manager_argv: list[str],
        setup: ManagerSetup,
        manager_env: Mapping[str, str] | None = None,
    ) -> None:
        self.client, self.token, self.machine_id, self.manager = client, token, machine_id, manager
        self.manager_argv = manager_argv
        self.manager_env = manager_env  # the first manager's environment (None: this one's)
        self.setup = setup
        self.managers: dict[str, ManagerProcess] = {}  # the ones add_manager started

    async def add_manager(
        self, name: str, extra_args: tuple[str, ...] = (), hostname: str | None = None
    ) -> ManagerProcess:
        """Starts manager name (enrolled by open_platform(extra_managers=...)) as a machine of
        its own, shown as hostname (default: name); returns once the backend lists it."""
        secret = self.setup.enrolled.get(name)
        assert secret is not None, f"{name} not in open_platform(extra_managers=...)"
        assert name not in self.managers, f"manager {name} already started"
        home = secret.parent
        raw = hashlib.md5(name.encode()).hexdigest()  # 32 hex digits, as /etc/machine-id
        (home / "machine-id").write_text(raw + "\n")
        argv = self.setup.argv(secret, home / "run", home / "machine-id")
        host = hostname or name
        m = ManagerProcess(
            name,
            identity.protected_id(identity.APP_ID, raw),
            host,
            [*argv, "--hostname", host, *extra_args],
        )
        self.managers[name] = m

        async def online() -> Any:
            r = await self.client.get(f"/api/v1/machines/{m.machine_id}", headers=self.auth)
            return r.status == 200 and (await r.json())["status"] == "ACTIVE"

        await eventually(online, f"manager {name} registration")
        return m

    def stop_all(self) -> None:
        """Stops every manager; the first failure is raised once all were tried."""
        failed: BaseException | None = None
        for proc in [*(m.proc for m in self.managers.values()), self.manager]:
            try:
                stop_process(proc)
            except BaseException as e:  # the others are stopped first
                failed = failed or e
        if failed is not None:
            raise failed

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def monitors_path(self) -> str:
        return f"/api/v1/machines/{self.machine_id}/monitors"

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.client.get(path, headers=self.auth, params=params)
        assert r.status == 200, await r.text()
        return await r.json()

    async def machine(self) -> dict[str, Any]:
        return await self.get(f"/api/v1/machines/{self.machine_id}")  # type: ignore[no-any-return]

    async def monitor(self, monitor_id: str) -> dict[str, Any]:
        return await self.get(f"{self.monitors_path}/{monitor_id}")  # type: ignore[no-any-return]

    async def all_events(self, filter: str = "", page_size: int = 1000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = ""
        while True:
            params: dict[str, Any] = {"filter": filter, "page_size": page_size}
            if token:
                params["page_token"] = token
            body = await self.get("/api/v1/events", **params)
            out += body["events"]
            token = body["next_page_token"]
            if not token:
                return out

    async def start(self, body: dict[str, Any]) -> str:
        """POSTs a monitor; its id."""
        r = await self.client.post(self.monitors_path, headers=self.auth, json=body)
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])

    async def delete(self, monitor_id: str) -> tuple[int, Any]:
        r = await self.client.delete(f"{self.monitors_path}/{monitor_id}", headers=self.auth)
        return r.status, (await r.json() if r.content_type == "application/json" else None)

    async def status_becomes(
        self, monitor_id: str, status: str, timeout: float = DEADLINE_S
    ) -> dict[str, Any]:
        """Waits for the monitor's status; fails at once if it settles on another."""

        async def check() -> Any:
            m = await self.monitor(monitor_id)
            assert m["status"] == status or m["status"] in ("STARTING", "RUNNING", "STOPPING"), m
            return m if m["status"] == status else None

        return await eventually(check, f"monitor {status}", timeout)  # type: ignore[no-any-return]

    def start_manager(self) -> None:
        self.manager = subprocess.Popen(
            self.manager_argv, cwd=ROOT, stdin=subprocess.DEVNULL, env=self.manager_env
        )

    def kill_manager(self) -> None:
        self.manager.send_signal(signal.SIGKILL)
        self.manager.wait(30)

    def stop_manager(self) -> None:
        stop_process(self.manager)


@contextlib.asynccontextmanager
async def open_platform(
    aiohttp_client: Any,
    dsn: str,
    tmp_path: Path,
    agent_path: Path,
    *,
    manager_args: tuple[str, ...] = (),
    manager_env: Mapping[str, str] | None = None,
    extra_managers: tuple[str, ...] = (),
    **backend: Any,
) -> AsyncIterator[Platform]:
    """The backend (settings: backend_settings with the given overrides) and a registered
    manager running agent_path (more flags: manager_args; its environment: manager_env, else
    this process's); the keys of extra_managers are
    enrolled too, for Platform.add_manager. Every manager is stopped at the end."""
    settings = backend_settings(dsn, tmp_path, **{"heartbeat_timeout_s": 5.0, **backend})
    pub, secret = manager_keys.generate(tmp_path / "manager")
    settings.enrolled_dir.mkdir(parents=True)
    shutil.copy(pub, settings.enrolled_dir / "manager.key")
    setup = ManagerSetup(settings.control_endpoint, settings.keys_dir / "backend.key", agent_path)
    for name in extra_managers:
        assert name != "manager", "the first manager's key is manager.key"
        home = tmp_path / "managers" / name
        home.mkdir(parents=True)
        pub_n, setup.enrolled[name] = manager_keys.generate(home, name)
        shutil.copy(pub_n, settings.enrolled_dir / f"{name}.key")
    server_keys(settings)
    client = await aiohttp_client(create_app(settings))
    machine_file = tmp_path / "machine-id"
    machine_file.write_text("0123456789abcdef0123456789abcdef\n")
    argv = [
        *setup.argv(secret, tmp_path / "run", machine_file),
        *manager_args,
    ]
    manager = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, env=manager_env)
    p = Platform(client, "", "", manager, argv, setup, manager_env)
    try:
        r = await client.post(
            "/api/v1/auth:register", json={"email": "ops@example.com", "password": "long enough pw"}
        )
        assert r.status == 201
        r = await client.post(
            "/api/v1/auth:login", json={"email": "ops@example.com", "password": "long enough pw"}
        )
        p.token = (await r.json())["access_token"]

        async def registered() -> Any:
            return (await p.get("/api/v1/machines"))["machines"]

        machines = await eventually(registered, "manager registration")
        p.machine_id = machines[0]["id"]
        yield p
    finally:
        p.stop_all()
