"""Access tokens and refresh tokens (passwords: backend.passwords).

Passwords: Argon2id (argon2-cffi defaults), hashed off the event loop (backend.passwords).
Access tokens: short-lived HS256 JWTs. Refresh tokens: 32 random bytes, stored only as
their SHA-256, revoked on logout, and rotated on every use when the refresh_token_rotation
setting is on (the store lives in backend.repo.users). Invite tokens are made and stored
the same way.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt

__all__ = [
    "AccessClaims",
    "hash_refresh_token",
    "hash_token",
    "issue_access_token",
    "new_refresh_token",
    "verify_access_token",
]

_ALGORITHM = "HS256"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    expires_at: int


def issue_access_token(
    secret: str, user_id: str, session_id: str, ttl_s: int, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    payload = {
        "sub": user_id,
        "sid": session_id,
        "iat": issued,
        "exp": issued + ttl_s,
        "typ": "access",
    }
    return jwt.encode(payload, secret, algorithm=_ALGORITHM)


def verify_access_token(secret: str, token: str) -> AccessClaims | None:
    """The claims of a valid, unexpired access token; None otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            options={"require": ["sub", "sid", "exp", "typ"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "access" or not all(
        isinstance(claims.get(k), str) for k in ("sub", "sid")
    ):
        return None
    return AccessClaims(claims["sub"], claims["sid"], int(claims["exp"]))


def new_refresh_token() -> str:
    """32 random bytes, URL-safe base64; never beginning with '-': a token is typed on
    command lines (``xputrace register EMAIL --invite TOKEN``), where it would read as an
    option (1 in 64 did)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def hash_refresh_token(token: str) -> bytes:
    return hash_token(token)


def hash_token(token: str) -> bytes:
    """What is stored of a bearer secret (refresh token, invite token): its SHA-256."""
    return hashlib.sha256(token.encode()).digest()
