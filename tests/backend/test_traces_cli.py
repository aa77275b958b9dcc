"""xputrace traces generate / status / download against a backend on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.app import create_app
from tests.backend.trace_data import calls, chrome_events, perfetto_slices, store
from tests.pg_fixtures import backend_settings

Xputrace = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
async def xputrace(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Xputrace:
    """The CLI against a backend holding 1000 calls of pid 100, logged in: (rc, out, err)."""
    client = await aiohttp_client(create_app(backend_settings(migrated_dsn, tmp_path)))
    await store(migrated_dsn, uuid.uuid4(), calls(1000, 100))
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": "cli password 123")
    monkeypatch.chdir(tmp_path)
    url = str(client.make_url("/")).rstrip("/")

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = await asyncio.to_thread(cli.main, ["--url", url, *argv])
        out = capsys.readouterr()
        return rc, out.out, out.err

    rc, _, err = await run("register", "cli@example.com")
    assert rc == 0, err
    return run


async def test_generate_wait_draws_progress_and_downloads(
    xputrace: Xputrace, tmp_path: Path
) -> None:
    rc, out, err = await xputrace(
        "traces",
        "generate",
        "--filter",
        "pid = 100",
        "--name",
        "cli run",
        "--wait",
        "-o",
        str(tmp_path / "mine.pftrace"),
    )
    assert rc == 0, err
    assert (
        out == f"{tmp_path / 'mine.pftrace'} (1,000 events, "
        f"{(tmp_path / 'mine.pftrace').stat().st_size:,} bytes)\n"
    )
    assert err.startswith("\r[") and err.endswith("] 100%  1,000 / 1,000 events\n"), err
    assert perfetto_slices((tmp_path / "mine.pftrace").read_bytes()) == 1000
    # without -o: the name the backend gives, in the current folder
    rc, out, err = await xputrace(
        "traces",
        "generate",
        "--filter",
        "pid = 100",
        "--name",
        "cli/run",
        "--format",
        "chrome",
        "--gzip",
        "--wait",
    )
    assert rc == 0, err
    assert out.startswith("cli_run.json.gz (1,000 events")
    xs = [e for e in chrome_events((tmp_path / "cli_run.json.gz").read_bytes()) if e["ph"] == "X"]
    assert len(xs) == 1000
    assert [p.name for p in tmp_path.glob("*.part")] == []


async def test_generate_then_status_then_download(xputrace: Xputrace, tmp_path: Path) -> None:
    rc, out, err = await xputrace("traces", "generate", "--filter", "", "--name", "later")
    assert rc == 0, err
    job_id = out.strip()
    uuid.UUID(job_id)
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        rc, out, err = await xputrace("traces", "status", job_id)
        assert rc == 0, err
        job = json.loads(out)
        if job["status"] != "PROCESSING":
            break
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.1)
    assert job["status"] == "COMPLETED" and job["events"] == 1000
    rc, out, err = await xputrace("traces", "download", job["trace_id"], "-o", "x.pftrace")
    assert (rc, out) == (0, "x.pftrace\n"), err
    assert perfetto_slices((tmp_path / "x.pftrace").read_bytes()) == 1000


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ("traces", "generate", "--filter", "pid = 'x'", "--name", "n"),
            "400 filter: field 'pid' expects an integer",
        ),
        (("traces", "generate", "--filter", "", "--name", " "), "400 trace_name:"),
        (("traces", "status", "00000000-0000-4000-8000-000000000000"), "404 trace job"),
        (("traces", "download", "00000000-0000-4000-8000-000000000000"), "404 trace"),
    ],
)
async def test_errors_are_reported(
    xputrace: Xputrace, tmp_path: Path, argv: tuple[str, ...], needle: str
) -> None:
    rc, out, err = await xputrace(*argv)
    assert (rc, out) == (1, "")
    assert err.startswith("xputrace: ") and needle in err, err
    assert list(tmp_path.glob("0000*")) == []
