"""Argon2id password hashes, computed in a bounded thread pool, off the event loop.

One Argon2id hash or check takes ~120 ms of CPU and 64 MiB (argon2-cffi defaults); run on
the event loop, 16 concurrent wrong logins stalled unrelated requests for seconds. argon2-cffi
releases the GIL while it hashes, so ``workers`` threads hash in parallel while the loop
serves requests; more concurrent logins queue. A login for an unknown e-mail checks the
password against a hash of a random password made with the same parameters, so it takes as
long as a wrong password for a real account and does not tell which e-mails are registered.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["Passwords", "decoy_hash", "hash_password", "verify_password"]

_hasher = PasswordHasher()


def decoy_hash() -> str:
    """An Argon2id hash with the hasher's parameters, a random salt and a random digest:
    checking a password against it costs what a real check costs, and never matches."""

    def b64(n: int) -> str:
        return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")

    h = _hasher
    return (
        f"$argon2id$v=19$m={h.memory_cost},t={h.time_cost},p={h.parallelism}"
        f"${b64(h.salt_len)}${b64(h.hash_len)}"
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class Passwords:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("password_hash_workers must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._decoy = decoy_hash()

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, hash_password, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether password matches stored_hash; None (no such account) is checked against
        a decoy hash, as slowly, and is always False."""
        ok = await asyncio.get_running_loop().run_in_executor(
            self._pool, verify_password, stored_hash or self._decoy, password
        )
        return ok and stored_hash is not None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
