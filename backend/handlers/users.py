"""Users, for admins: list, get, set a role (PATCH), invite (issue #21)."""

from __future__ import annotations

from aiohttp import web

from backend import audit, request_db, tokens
from backend.errors import NotFound
from backend.handlers.auth import user_view
from backend.handlers.listing import list_query
from backend.models import InviteBody, UserPatch, decode_body, path_uuid
from backend.repo import users
from backend.typedefs import CALLER, SETTINGS

__all__ = ["get_user", "invite_user", "list_users", "patch_user"]

_ORDER = "created_at,id"


async def list_users(request: web.Request) -> web.Response:
    """Users, oldest first, a page at a time (admin)."""
    q = list_query(request, users.FIELDS, _ORDER)
    async with request_db.connection(request) as conn:
        rows = await users.list_users(conn, q.where, q.params, q.size + 1, q.after)
    rows, token = q.page(rows, lambda u: (u.created_at, u.id))
    return web.json_response({"users": [user_view(u) for u in rows], "next_page_token": token})


async def get_user(request: web.Request) -> web.Response:
    """One user (admin)."""
    user_id = path_uuid(request, "user_id")
    async with request_db.connection(request) as conn:
        user = await users.get_user(conn, user_id)
    if user is None:
        raise NotFound(f"user '{user_id}' not found")
    return web.json_response(user_view(user))


@audit.audited("SET_ROLE")
async def patch_user(request: web.Request) -> web.Response:
    """Gives a user a role and/or the Unix accounts they may trace (admin); it applies to
    their next request."""
    user_id = path_uuid(request, "user_id")
    body = await decode_body(request, UserPatch)
    async with request_db.connection(request) as conn:
        user = await users.get_user(conn, user_id)  # an empty patch changes nothing
        if body.role is not None:
            user = await users.set_role(conn, user_id, body.role)
            if user is not None:
                await audit.detail(f"{user.email} is now {user.role}")
        if body.unix_accounts is not None and (body.role is None or user is not None):
            user = await users.grant_accounts(conn, user_id, body.unix_accounts)
            if user is not None:
                await audit.detail(
                    f"{user.email} may trace processes of: "
                    f"{', '.join(user.unix_accounts) or 'no account'}"
                )
    if user is None:
        raise NotFound(f"user '{user_id}' not found")
    return web.json_response(user_view(user))


@audit.audited("INVITE_USER")
async def invite_user(request: web.Request) -> web.Response:
    """Invites an e-mail address with a role (admin); the token registers it, once."""
    body = await decode_body(request, InviteBody)
    settings = request.app[SETTINGS]
    token = tokens.new_refresh_token()
    async with request_db.connection(request) as conn:
        expires = await users.create_invite(
            conn,
            tokens.hash_token(token),
            body.email,
            body.role,
            request[CALLER].user_id,
            settings.invite_ttl_s,
        )
    await audit.detail(f"{body.email} invited as {body.role}")
    return web.json_response(
        {
            "email": body.email,
            "role": body.role,
            "invite_token": token,
            "expire_time": expires.isoformat(),
        },
        status=201,
    )
