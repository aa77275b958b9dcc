"""CURVE key pairs: generate, load, and write the agent's key file.

Key pairs are written in ZeroMQ's certificate format (what ``zmq.auth.load_certificate``
reads and what a ZAP authenticator's certificate directory holds): ``NAME.key`` with the
public key (0644, give it to the backend to enroll) and ``NAME.key_secret`` with both keys
(0600, stays on this machine).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import zmq

__all__ = ["generate", "load_public", "load_secret", "write_agent_keyfile", "write_private"]

Z85_KEY = re.compile(rb"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_BANNER = """#   ****  Generated on {now} by xputrace manager  ****
#   ZeroMQ CURVE {what} Certificate
{warning}
metadata
curve
"""


def _check(key: bytes, path: Path) -> bytes:
    if not Z85_KEY.match(key):
        raise ValueError(f"{path}: not a 40-character Z85 CURVE key")
    return key


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Creates path with mode (never wider, whatever the umask), replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def generate(directory: Path, name: str = "manager", *, force: bool = False) -> tuple[Path, Path]:
    """Writes a fresh pair as NAME.key and NAME.key_secret; returns (public, secret) paths."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        raise ValueError(f"invalid key name '{name}'")
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    public_path, secret_path = directory / f"{name}.key", directory / f"{name}.key_secret"
    for p in (public_path, secret_path):
        if p.exists() and not force:
            raise FileExistsError(f"{p} exists (use --force to replace it)")
    public, secret = zmq.curve_keypair()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    write_private(
        secret_path,
        _BANNER.format(
            now=now,
            what="**Secret**",
            warning="#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n",
        )
        + f'    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n',
    )
    write_private(
        public_path,
        _BANNER.format(now=now, what="**Public**", warning="")
        + f'    public-key = "{public.decode()}"\n',
        mode=0o644,
    )
    return public_path, secret_path


def _fields(path: Path) -> dict[str, bytes]:
    """public-key/secret-key from a certificate, or a bare key on its own line."""
    out: dict[str, bytes] = {}
    for raw in path.read_bytes().splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if Z85_KEY.match(line):  # a bare key ('=' is a Z85 digit, so test this first)
            out.setdefault("bare", line)
            continue
        key, sep, value = line.partition(b"=")
        if sep and key.strip() in (b"public-key", b"secret-key"):
            out[key.strip().decode()] = value.strip(b" \t'\"")
    return out


def load_public(path: Path) -> bytes:
    """A public key from a certificate file (NAME.key) or a file holding just the Z85 key."""
    f = _fields(path)
    key = f.get("public-key") or f.get("bare")
    if key is None:
        raise ValueError(f"{path}: no public key")
    return _check(key, path)


def load_secret(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret certificate; refuses one others can read."""
    st = path.stat()
    if st.st_mode & 0o077:
        raise PermissionError(
            f"{path}: secret key file is readable by others "
            f"(mode {st.st_mode & 0o777:o}); chmod 600 it"
        )
    f = _fields(path)
    if "secret-key" not in f:
        raise ValueError(f"{path}: no secret key")
    secret = _check(f["secret-key"], path)
    public = _check(f["public-key"], path) if "public-key" in f else zmq.curve_public(secret)
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{path}: public key does not belong to the secret key")
    return public, secret


def write_agent_keyfile(path: Path, server_public: bytes, public: bytes, secret: bytes) -> None:
    """The agent's --curve-keyfile: server_public_key=, public_key=, secret_key= (0600)."""
    write_private(
        path,
        f"server_public_key={server_public.decode()}\n"
        f"public_key={public.decode()}\nsecret_key={secret.decode()}\n",
    )
