"""auth:register, auth:login, auth:refreshToken, auth:logout (seeds/003 section 1), and the
middleware that authenticates every other request and rate-limits it per user."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from backend import tokens
from backend.errors import PermissionDenied, TooManyRequests, Unauthorized
from backend.models import LoginBody, RefreshBody, RegisterBody, decode_body
from backend.ratelimit import TokenBuckets, retry_after
from backend.repo import users
from backend.roles import Caller
from backend.typedefs import CALLER, DB, PASSWORDS, RATE_LIMITS, SETTINGS, USER

__all__ = ["PUBLIC", "login", "logout", "refresh", "register", "require_user", "user_view"]

PUBLIC = {
    "/api/v1/auth:login",
    "/api/v1/auth:register",
    "/api/v1/auth:refreshToken",
    "/api/v1/openapi.json",
}


def user_view(user: users.User) -> dict[str, Any]:
    return {
        "user_id": str(user.id),
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "create_time": user.created_at.isoformat(),
        "unix_accounts": list(user.unix_accounts),
    }


def _take(buckets: TokenBuckets, key: str, what: str) -> None:
    wait = buckets.take(key)
    if wait:
        seconds = retry_after(wait)
        raise TooManyRequests(f"too many {what}; retry in {seconds} s", seconds)


def _address(request: web.Request) -> str:
    return request.remote or ""


async def register(request: web.Request) -> web.Response:
    """Creates an account: the first one is the admin; then an invite (or open registration)."""
    body = await decode_body(request, RegisterBody)
    app, settings = request.app, request.app[SETTINGS]
    _take(app[RATE_LIMITS].login_address, _address(request), "attempts from this address")
    if body.invite_token is None and not settings.open_registration:
        async with app[DB].connection() as conn:  # refused before paying for the hash
            if await users.any_user(conn):
                raise PermissionDenied("registration is closed: ask an admin for an invite")
    password_hash = await app[PASSWORDS].hash(body.password)
    invite = None if body.invite_token is None else tokens.hash_token(body.invite_token)
    async with app[DB].connection() as conn:
        user = await users.create_user(
            conn,
            body.email,
            body.display_name,
            password_hash,
            invite_hash=invite,
            open_registration=settings.open_registration,
        )
    return web.json_response(user_view(user), status=201)


async def login(request: web.Request) -> web.Response:
    body = await decode_body(request, LoginBody)
    app, settings = request.app, request.app[SETTINGS]
    limits = app[RATE_LIMITS]
    _take(limits.login_address, _address(request), "login attempts from this address")
    _take(limits.login_account, body.email.lower(), "login attempts for this account")
    async with app[DB].connection() as conn:
        user = await users.find_user_by_email(conn, body.email)
    # no connection held while hashing; an unknown e-mail costs a check all the same
    if not await app[PASSWORDS].verify(user.password_hash if user else None, body.password):
        raise Unauthorized("wrong email or password")
    assert user is not None
    refresh_token = tokens.new_refresh_token()
    async with app[DB].connection() as conn:
        session_id = await users.start_session(
            conn, user.id, tokens.hash_refresh_token(refresh_token), settings.refresh_token_ttl_s
        )
    return web.json_response(
        {
            "access_token": tokens.issue_access_token(
                settings.jwt_secret, str(user.id), str(session_id), settings.access_token_ttl_s
            ),
            "refresh_token": refresh_token,
            "expires_in": settings.access_token_ttl_s,
        }
    )


async def refresh(request: web.Request) -> web.Response:
    """A new access token for a refresh token; with refresh_token_rotation, a new refresh
    token too (the one sent stops working)."""
    body = await decode_body(request, RefreshBody)
    settings = request.app[SETTINGS]
    old_hash = tokens.hash_refresh_token(body.refresh_token)
    new_token = tokens.new_refresh_token() if settings.refresh_token_rotation else None
    async with request.app[DB].connection() as conn:
        if new_token is None:
            owner = await users.live_refresh_token(conn, old_hash)
        else:
            owner = await users.rotate_refresh_token(
                conn, old_hash, tokens.hash_refresh_token(new_token), settings.refresh_token_ttl_s
            )
    if owner is None:
        raise Unauthorized("refresh_token is invalid, expired or revoked")
    user_id, session_id = owner
    answer = {
        "access_token": tokens.issue_access_token(
            settings.jwt_secret, str(user_id), str(session_id), settings.access_token_ttl_s
        ),
        "expires_in": settings.access_token_ttl_s,
    }
    if new_token is not None:
        answer["refresh_token"] = new_token
    return web.json_response(answer)


async def logout(request: web.Request) -> web.Response:
    """Ends the session of the access token: its refresh and access tokens stop working."""
    user = request[USER]
    async with request.app[DB].connection() as conn:
        await users.revoke_session(conn, uuid.UUID(user.session_id), uuid.UUID(user.user_id))
    return web.Response(status=204)


@web.middleware
async def require_user(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every endpoint but login, register, refresh and the OpenAPI document needs a token;
    each user may send api_requests_per_s (api_burst at once) before getting 429s."""
    if request.path in PUBLIC or not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization: Bearer <access_token> is required")
    claims = tokens.verify_access_token(request.app[SETTINGS].jwt_secret, token.strip())
    if claims is None:
        raise Unauthorized("access token is invalid or expired")
    try:
        session_id, user_id = uuid.UUID(claims.session_id), uuid.UUID(claims.user_id)
    except ValueError:
        raise Unauthorized("access token is invalid or expired") from None
    _take(request.app[RATE_LIMITS].api_user, str(user_id), "requests from this user")
    async with request.app[DB].connection() as conn:
        found = await users.session_caller(conn, session_id, user_id)
    if found is None:
        raise Unauthorized("access token was revoked (logged out)")
    request[USER] = claims
    request[CALLER] = Caller(user_id, found[0], found[1], _address(request))
    return await handler(request)
