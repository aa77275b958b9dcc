"""HTTPS: `python -m backend` serves TLS with a certificate and key from its settings, and
refuses to serve plain HTTP on an address other than loopback unless told it may."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from backend.settings import Settings
from backend.tls import check_exposure, is_loopback
from tests.pg_fixtures import free_tcp_endpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as make run makes them."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.1.2.3", False),
        ("gpu1.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_rule(tmp_path: Path) -> None:
    check_exposure(Settings(host="127.0.0.1"))
    check_exposure(Settings(host="0.0.0.0", allow_insecure_http=True))
    check_exposure(
        Settings(host="0.0.0.0", tls_cert_file=tmp_path / "c", tls_key_file=tmp_path / "k")
    )
    with pytest.raises(ValueError, match="XPUTRACE_TLS_CERT_FILE"):
        check_exposure(Settings(host="0.0.0.0"))
    with pytest.raises(ValueError, match="go together"):
        check_exposure(Settings(tls_cert_file=tmp_path / "c"))


def _backend_env(dsn: str, tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPUTRACE_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "XPUTRACE_DATABASE_DSN": dsn,
            "XPUTRACE_PORT": str(port),
            "XPUTRACE_JWT_SECRET": "j" * 40,
            "XPUTRACE_DATA_DIR": str(tmp_path / "data"),
            "XPUTRACE_KEYS_DIR": str(tmp_path / "keys"),
            "XPUTRACE_ENROLLED_DIR": str(tmp_path / "enrolled"),
            "XPUTRACE_INGEST_ENDPOINT": free_tcp_endpoint(),
            "XPUTRACE_CONTROL_ENDPOINT": free_tcp_endpoint(),
            **extra,
        }
    )
    return env


@pytest.fixture
def port() -> int:
    return int(free_tcp_endpoint().rsplit(":", 1)[1])


@pytest.fixture
def run_backend() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started backends, stopped (SIGTERM, then SIGKILL) after the test."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pipe in (p.stdout, p.stderr):
            if pipe is not None:
                pipe.close()


def test_plain_http_off_loopback_is_refused(
    migrated_dsn: str, tmp_path: Path, port: int, run_backend: list[subprocess.Popen[bytes]]
) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "backend", "--host", "0.0.0.0"],
        env=_backend_env(migrated_dsn, tmp_path, port),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    run_backend.append(p)
    _, err = p.communicate(timeout=60)  # old code: serves, and this times out
    assert p.returncode == 2, err.decode()
    assert b"refusing to serve plain HTTP on '0.0.0.0'" in err
    assert b"XPUTRACE_ALLOW_INSECURE_HTTP" in err


async def _get(url: str, tls: ssl.SSLContext | None) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.get(url, ssl=tls) as r:
        return r.status, await r.json()


async def test_https_with_a_certificate(
    migrated_dsn: str,
    tmp_path: Path,
    port: int,
    cert: tuple[Path, Path],
    run_backend: list[subprocess.Popen[bytes]],
) -> None:
    """Every interface, TLS only: a client trusting the certificate gets the API; plain HTTP on
    the same port gets nothing."""
    env = _backend_env(
        migrated_dsn,
        tmp_path,
        port,
        XPUTRACE_TLS_CERT_FILE=str(cert[0]),
        XPUTRACE_TLS_KEY_FILE=str(cert[1]),
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "backend", "--host", "0.0.0.0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run_backend.append(p)
    trust = ssl.create_default_context(cafile=cert[0])
    url = f"https://127.0.0.1:{port}/api/v1/openapi.json"
    deadline = time.monotonic() + 60
    while True:  # until it listens (a deadline, not a guess)
        assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
        try:
            status, doc = await _get(url, trust)
            break
        except aiohttp.ClientConnectorError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert status == 200 and str(doc["openapi"]).startswith("3.")
    with pytest.raises(aiohttp.ClientError):
        await _get(f"http://127.0.0.1:{port}/api/v1/openapi.json", None)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _get(url, ssl.create_default_context())  # not trusted: the system's CAs only
