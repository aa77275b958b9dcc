"""Settings from flags and XPUTRACE_MANAGER_* variables; where agents may send data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from manager import keys
from manager.settings import Settings


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path, bytes]:
    _, secret = keys.generate(tmp_path, "manager")
    server_pub, _ = zmq.curve_keypair()
    server = tmp_path / "backend.key"
    server.write_bytes(server_pub + b"\n")
    return server, secret, server_pub


def test_flags_env_and_defaults(key_files: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    server, secret, server_pub = key_files
    env = {
        "XPUTRACE_MANAGER_BACKEND": "tcp://env-host:5557",
        "XPUTRACE_MANAGER_SERVER_KEY": str(server),
        "XPUTRACE_MANAGER_KEY": str(secret),
        "XPUTRACE_MANAGER_HEARTBEAT_INTERVAL": "2.5",
        "XPUTRACE_MANAGER_NO_PDEATHSIG": "true",
        "XPUTRACE_MANAGER_DATA_HOST": "a,b",
    }
    s = Settings.from_args([], env)
    assert s.backend == "tcp://env-host:5557" and s.server_public_key == server_pub
    assert (s.public_key, s.secret_key) == keys.load_secret(secret)
    assert s.heartbeat_interval_s == 2.5 and s.pdeathsig is False
    assert s.data_hosts == ("a", "b")
    assert s.runtime_dir == Path("/run/xputrace-manager") and s.max_monitors == 64
    s = Settings.from_args(
        [
            "--backend",
            "tcp://flag-host:1",
            "--heartbeat-interval",
            "1",
            "--runtime-dir",
            str(tmp_path / "r"),
        ],
        env,
    )
    assert s.backend == "tcp://flag-host:1" and s.heartbeat_interval_s == 1.0
    assert s.runtime_dir == tmp_path / "r"
    assert s.secret_key.decode() not in repr(s)


def test_jobs_on_by_default_with_procwatch_next_to_the_agent(
    key_files: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    server, secret, _ = key_files
    base = [
        "--backend",
        "tcp://h:1",
        "--server-key",
        str(server),
        "--key",
        str(secret),
        "--agent-path",
        str(tmp_path / "bin" / "xputrace-agent"),
    ]
    s = Settings.from_args(base, {})
    assert s.jobs and s.procwatch == tmp_path / "bin" / "xputrace-procwatch"
    s = Settings.from_args(
        [*base, "--procwatch-path", "/opt/pw"], {"XPUTRACE_MANAGER_NO_JOBS": "1"}
    )
    assert not s.jobs and s.procwatch == Path("/opt/pw")
    assert s.jobs_root_pid is None and s.hostname is None
    s = Settings.from_args(
        [*base, "--jobs-root-pid", "42"], {"XPUTRACE_MANAGER_HOSTNAME": "node-b"}
    )
    assert (s.jobs_root_pid, s.hostname) == (42, "node-b")
    help_text = " ".join(Settings.parser().format_help().split())
    assert "only this process and its descendants" in help_text
    assert "monitors may still target any process" in help_text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--backend"),
        (["--backend", "tcp://h:1"], "--server-key"),
        (["--backend", "http://h:1", "--server-key", "{server}", "--key", "{secret}"], "tcp://"),
        (
            ["--backend", "tcp://h:1", "--server-key", "{server}", "--key", "/nonexistent"],
            "nonexistent",
        ),
        (
            [
                "--backend",
                "tcp://h:1",
                "--server-key",
                "{server}",
                "--key",
                "{secret}",
                "--jobs-root-pid",
                "0",
            ],
            "jobs root pid 0",
        ),
    ],
)
def test_bad_flags_exit_with_a_message(
    key_files: tuple[Path, Path, bytes],
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, secret, _ = key_files
    argv = [a.format(server=server, secret=secret) for a in argv]
    with pytest.raises(SystemExit) as e:
        Settings.from_args(argv, {})
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_data_endpoints_allowed(settings: Callable[..., Settings]) -> None:
    s = settings(backend="tcp://10.0.0.5:5557")
    assert s.data_endpoint_allowed("tcp://10.0.0.5:5556")
    assert not s.data_endpoint_allowed("tcp://10.0.0.6:5556")
    assert not s.data_endpoint_allowed("tcp://10.0.0.5")
    assert not s.data_endpoint_allowed("tcp://10.0.0.5:99999")
    assert not s.data_endpoint_allowed("ipc:///tmp/ingest")
    s = settings(backend="tcp://10.0.0.5:5557", data_hosts=("ingest.local",), allow_ipc_data=True)
    assert s.data_endpoint_allowed("tcp://ingest.local:5556")
    assert not s.data_endpoint_allowed("tcp://10.0.0.5:5556")
    assert s.data_endpoint_allowed("ipc:///run/ingest")
    assert settings(backend="ipc:///run/control").data_endpoint_allowed("ipc:///run/ingest")
    s = settings(backend="tcp://[::1]:5557")
    assert s.data_endpoint_allowed("tcp://[::1]:5556")
    assert s.data_key == s.server_public_key
