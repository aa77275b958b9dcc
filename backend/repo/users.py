"""Users and their roles, invites, login sessions and refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from backend import emails
from backend.errors import AlreadyExists, Conflict, PermissionDenied
from backend.filters import FieldSpec
from backend.roles import Role

__all__ = [
    "FIELDS",
    "User",
    "any_user",
    "create_invite",
    "create_user",
    "find_user_by_email",
    "get_user",
    "grant_accounts",
    "list_users",
    "live_refresh_token",
    "revoke_session",
    "rotate_refresh_token",
    "session_caller",
    "set_role",
    "start_session",
]

Conn = AsyncConnection[Any]
_COLS = "id, email, display_name, password_hash, role, created_at, unix_accounts"
# What GET /api/v1/users' filter may name, and the columns behind the names
FIELDS = {
    "email": FieldSpec("email", "str"),
    "display_name": FieldSpec("display_name", "str"),
    "role": FieldSpec("role", "str"),
    "create_time": FieldSpec("created_at", "timestamp"),
}
# pg_advisory_xact_lock key serialising registrations, so two first accounts cannot both
# become the bootstrap admin ("xputusr").
_REGISTER_LOCK = 0x78707574757372


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    display_name: str
    password_hash: str
    role: Role
    created_at: datetime
    unix_accounts: list[str]  # whose processes an operator may trace (the target policy)


async def _taken(conn: Conn, email: str, *, name_it: bool) -> None:
    """AlreadyExists naming the field when email, or an address that looks like it (the same
    backend.emails.skeleton), has an account. name_it: say which (to an admin only)."""
    cur = await conn.execute("SELECT 1 FROM users WHERE email = %s", (email,))
    if await cur.fetchone():
        raise AlreadyExists(f"email: '{email}' is already registered")
    # every address is compared: registrations are rare and serialised, accounts few
    target = emails.skeleton(email)
    cur = await conn.execute("SELECT email FROM users")
    for (other,) in await cur.fetchall():
        if emails.skeleton(other) == target:
            which = f" '{other}'" if name_it else ""
            raise AlreadyExists(
                f"email: '{email}' looks like the address of an existing "
                f"account{which} (letters from another script or look-alike "
                "characters); use another address"
            )


async def any_user(conn: Conn) -> bool:
    cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM users)")
    row = await cur.fetchone()
    return bool(row and row[0])


async def create_user(
    conn: Conn,
    email: str,
    display_name: str,
    password_hash: str,
    *,
    invite_hash: bytes | None = None,
    open_registration: bool = False,
) -> User:
    """Registers an account. The first one is the admin; after it, an unused, unexpired invite
    for this e-mail gives its role, or open_registration makes a viewer; otherwise
    PermissionDenied. AlreadyExists when the e-mail, or one that looks like it, is taken."""
    email = emails.normalise(email)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REGISTER_LOCK,))
        await _taken(conn, email, name_it=False)
        role: Role
        if not await any_user(conn):
            role = "admin"
        elif invite_hash is not None:
            cur = await conn.execute(
                "UPDATE invites SET used_at = now() WHERE token_hash = %s AND email = %s "
                "AND used_at IS NULL AND expires_at > now() RETURNING role",
                (invite_hash, email),
            )
            row = await cur.fetchone()
            if row is None:
                raise PermissionDenied(
                    "invite_token is not a valid, unused invite for this "
                    "email (it may have expired)"
                )
            role = row[0]
        elif open_registration:
            role = "viewer"
        else:
            raise PermissionDenied("registration is closed: ask an admin for an invite")
        async with conn.cursor(row_factory=class_row(User)) as cur:
            await cur.execute(
                "INSERT INTO users (id, email, display_name, password_hash, role) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLS}".encode(),
                (uuid.uuid4(), email, display_name, password_hash, role),
            )
            user = await cur.fetchone()
    assert user is not None
    return user


async def create_invite(
    conn: Conn, token_hash: bytes, email: str, role: Role, created_by: uuid.UUID, ttl_s: int
) -> datetime:
    """Stores an invite; its expiry. AlreadyExists when the e-mail, or one that looks like
    it, is already registered."""
    email = emails.normalise(email)
    await _taken(conn, email, name_it=True)
    expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
    await conn.execute(
        "INSERT INTO invites (token_hash, email, role, created_by, expires_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        (token_hash, email, role, created_by, expires),
    )
    return expires


async def find_user_by_email(conn: Conn, email: str) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM users WHERE email = %s".encode(), (emails.normalise(email),)
        )
        return await cur.fetchone()


async def get_user(conn: Conn, user_id: uuid.UUID) -> User | None:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(f"SELECT {_COLS} FROM users WHERE id = %s".encode(), (user_id,))
        return await cur.fetchone()


async def list_users(
    conn: Conn, where: str, params: list[Any], limit: int, after: tuple[Any, ...] | None
) -> list[User]:
    """Users matching a compiled filter, oldest first, after a (created_at, id) key."""
    clauses, args = [f"({where})"], list(params)
    if after is not None:
        clauses.append("(created_at, id) > (%s, %s)")
        args += list(after)
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            f"SELECT {_COLS} FROM users WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at, id LIMIT %s".encode(),
            [*args, limit],
        )
        return await cur.fetchall()


async def set_role(conn: Conn, user_id: uuid.UUID, role: Role) -> User | None:
    """Gives a user a role; None when there is no such user. Conflict when it would leave no
    admin (the last admin cannot be demoted: nobody could manage users any more)."""
    async with conn.transaction():
        # every admin row locked: two admins demoting each other at once cannot both win
        await conn.execute("SELECT id FROM users WHERE role = 'admin' FOR UPDATE")
        user = await get_user(conn, user_id)
        if user is None:
            return None
        if user.role == "admin" and role != "admin":
            cur = await conn.execute("SELECT count(*) FROM users WHERE role = 'admin'")
            row = await cur.fetchone()
            if row is None or row[0] <= 1:
                raise Conflict(f"user '{user.email}' is the last admin; make another admin first")
        async with conn.cursor(row_factory=class_row(User)) as cur:
            await cur.execute(
                f"UPDATE users SET role = %s WHERE id = %s RETURNING {_COLS}".encode(),
                (role, user_id),
            )
            return await cur.fetchone()


async def grant_accounts(conn: Conn, user_id: uuid.UUID, accounts: list[str]) -> User | None:
    """Sets the Unix accounts whose processes the user may trace; None: no such user."""
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            f"UPDATE users SET unix_accounts = %s WHERE id = %s RETURNING {_COLS}".encode(),
            (sorted(set(accounts)), user_id),
        )
        return await cur.fetchone()


async def _store_refresh_token(
    conn: Conn, token_hash: bytes, user_id: uuid.UUID, session_id: uuid.UUID, ttl_s: int
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, session_id, expires_at) "
        "VALUES (%s, %s, %s, %s)",
        (token_hash, user_id, session_id, datetime.now(UTC) + timedelta(seconds=ttl_s)),
    )


async def start_session(
    conn: Conn, user_id: uuid.UUID, refresh_hash: bytes, ttl_s: int
) -> uuid.UUID:
    """A new login session holding its first refresh token; its id."""
    session_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (id, user_id) VALUES (%s, %s)", (session_id, user_id)
        )
        await _store_refresh_token(conn, refresh_hash, user_id, session_id, ttl_s)
    return session_id


async def live_refresh_token(conn: Conn, token_hash: bytes) -> tuple[uuid.UUID, uuid.UUID] | None:
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


async def rotate_refresh_token(
    conn: Conn, old_hash: bytes, new_hash: bytes, ttl_s: int
) -> tuple[uuid.UUID, uuid.UUID] | None:
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
            "UPDATE refresh_tokens SET rotated_to = %s, revoked_at = now() WHERE token_hash = %s",
            (new_hash, old_hash),
        )
        return user_id, session_id


async def _revoke(conn: Conn, session_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (session_id,),
    )
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE session_id = %s AND revoked_at IS NULL",
        (session_id,),
    )


async def revoke_session(conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID) -> None:
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM sessions WHERE id = %s AND user_id = %s", (session_id, user_id)
        )
        if await cur.fetchone():
            await _revoke(conn, session_id)


async def session_caller(
    conn: Conn, session_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[str, Role] | None:
    """(email, role) of the user of a live session; None when it was revoked."""
    cur = await conn.execute(
        "SELECT u.email, u.role FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.id = %s AND s.user_id = %s AND s.revoked_at IS NULL",
        (session_id, user_id),
    )
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None
