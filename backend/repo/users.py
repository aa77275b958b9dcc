"""Users, login sessions and refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, errors
from psycopg.rows import class_row

__all__ = ["User", "create_user", "find_user_by_email", "live_refresh_token", "revoke_session",
           "rotate_refresh_token", "session_is_live", "start_session"]

Conn = AsyncConnection[Any]


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    display_name: str
    password_hash: str


async def create_user(conn: Conn, email: str, display_name: str,
                      password_hash: str) -> User | None:
    """The new user, or None when the email is taken."""
    try:
        async with conn.cursor(row_factory=class_row(User)) as cur:
            await cur.execute(
                "INSERT INTO users (id, email, display_name, password_hash) "
                "VALUES (%s, %s, %s, %s) RETURNING id, email, display_name, password_hash",
                (uuid.uuid4(), email.lower(), display_name, password_hash),
            )
            return await cur.fetchone()
    except errors.UniqueViolation:
        return None


async def find_user_by_email(conn: Conn, email: str) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            "SELECT id, email, display_name, password_hash FROM users WHERE email = %s",
            (email.lower(),),
        )
        return await cur.fetchone()


async def _store_refresh_token(conn: Conn, token_hash: bytes, user_id: uuid.UUID,
                               session_id: uuid.UUID, ttl_s: int) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, session_id, expires_at) "
        "VALUES (%s, %s, %s, %s)",
        (token_hash, user_id, session_id, datetime.now(UTC) + timedelta(seconds=ttl_s)),
    )


async def start_session(conn: Conn, user_id: uuid.UUID, refresh_hash: bytes,
                        ttl_s: int) -> uuid.UUID:
    """A new login session holding its first refresh token; its id."""
    session_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute("INSERT INTO sessions (id, user_id) VALUES (%s, %s)",
                           (session_id, user_id))
        await _store_refresh_token(conn, refresh_hash, user_id, session_id, ttl_s)
    return session_id


async def live_refresh_token(conn: Conn,
                             token_hash: bytes) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(user id, session id) of a refresh token that is unexpired, unrevoked and of a live
    session; None otherwise. The token stays as it is (no rotation)."""
    cur = await conn.execute(
        "SELECT t.user_id, t.session_id FROM refresh_tokens t "
        "JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = %s "
        "AND t.revoked_at IS NULL AND s.revoked_at IS NULL AND t.expires_at > now()",
        (token_hash,),
    )
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None


async def rotate_refresh_token(conn: Conn, old_hash: bytes, new_hash: bytes,
                               ttl_s: int) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Swaps a live refresh token for a new one: (user id, session id), or None.

    A token that was already swapped is being replayed: its session is revoked.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT t.user_id, t.session_id, t.expires_at, t.revoked_at, t.rotated_to, "
            "s.revoked_at FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
            "WHERE t.token_hash = %s FOR UPDATE",
            (old_hash,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        user_id, session_id, expires_at, revoked_at, rotated_to, session_revoked = row
        if rotated_to is not None:
            await _revoke(conn, session_id)
            return None
        if revoked_at or session_revoked or expires_at <= datetime.now(UTC):
            return None
        await _store_refresh_token(conn, new_hash, user_id, session_id, ttl_s)
        await conn.execute(
            "UPDATE refresh_tokens SET rotated_to = %s, revoked_at = now() "
            "WHERE token_hash = %s",
            (new_hash, old_hash),
        )
        return user_id, session_id


async def _revoke(conn: Conn, session_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (session_id,),
    )
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE session_id = %s AND revoked_at IS NULL",
        (session_id,),
    )


async def revoke_session(conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
    async with conn.transaction():
        cur = await conn.execute("SELECT 1 FROM sessions WHERE id = %s AND user_id = %s",
                                 (session_id, user_id))
        if await cur.fetchone():
            await _revoke(conn, session_id)


async def session_is_live(conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM sessions WHERE id = %s AND user_id = %s AND revoked_at IS NULL",
        (session_id, user_id),
    )
    return await cur.fetchone() is not None
