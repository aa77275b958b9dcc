"""CURVE key files: ZeroMQ certificate format, private modes, the agent's key file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.auth

from manager import keys

ROOT = Path(__file__).resolve().parents[2]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_generate_writes_a_zmq_certificate_pair(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        public_path, secret_path = keys.generate(tmp_path / "k")
    finally:
        os.umask(old)
    assert (public_path.name, secret_path.name) == ("manager.key", "manager.key_secret")
    assert mode(secret_path) == 0o600 and mode(public_path) == 0o644
    public, secret = zmq.auth.load_certificate(secret_path)
    assert secret is not None and zmq.curve_public(secret) == public
    assert zmq.auth.load_certificate(public_path) == (public, None)
    assert keys.load_secret(secret_path) == (public, secret)
    assert keys.load_public(public_path) == public
    with pytest.raises(FileExistsError):
        keys.generate(tmp_path / "k")
    assert keys.generate(tmp_path / "k", force=True)[0] == public_path
    assert keys.load_public(public_path) != public


def test_load_refuses_bad_files(tmp_path: Path) -> None:
    _, secret_path = keys.generate(tmp_path)
    secret_path.chmod(0o644)
    with pytest.raises(PermissionError):
        keys.load_secret(secret_path)
    bare = tmp_path / "server.pub"
    pub = next(k for k, _ in iter(zmq.curve_keypair, None) if b"=" in k)  # '=' is Z85
    bare.write_bytes(b"# the backend's key\n" + pub + b"\n")
    assert keys.load_public(bare) == pub
    bad = tmp_path / "bad"
    bad.write_text('public-key = "short"\n')
    with pytest.raises(ValueError):
        keys.load_public(bad)
    mismatched = tmp_path / "mismatched"
    _, sec = zmq.curve_keypair()
    mismatched.write_text(f'public-key = "{pub.decode()}"\nsecret-key = "{sec.decode()}"\n')
    mismatched.chmod(0o600)
    with pytest.raises(ValueError, match="does not belong"):
        keys.load_secret(mismatched)


def test_agent_keyfile(tmp_path: Path) -> None:
    server, _ = zmq.curve_keypair()
    pub, sec = zmq.curve_keypair()
    path = tmp_path / "agent.key"
    keys.write_agent_keyfile(path, server, pub, sec)
    assert mode(path) == 0o600
    assert path.read_text().splitlines() == [
        f"server_public_key={server.decode()}",
        f"public_key={pub.decode()}",
        f"secret_key={sec.decode()}",
    ]


def test_keys_generate_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "manager",
            "keys",
            "generate",
            str(tmp_path / "etc"),
            "--name",
            "node1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "node1.key" in out.stdout
    assert mode(tmp_path / "etc/node1.key_secret") == 0o600
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "manager",
            "keys",
            "generate",
            str(tmp_path / "etc"),
            "--name",
            "node1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "exists" in again.stderr
