"""auth:register, auth:login, auth:refreshToken, auth:logout (seeds/003 section 1)."""

from __future__ import annotations

import uuid

from aiohttp import web

from backend import tokens
from backend.errors import AlreadyExists, Unauthorized
from backend.models import LoginBody, RefreshBody, RegisterBody, decode_body
from backend.repo import users
from backend.typedefs import DB, SETTINGS, USER

__all__ = ["login", "logout", "refresh", "register", "require_user"]

PUBLIC = {"/api/v1/auth:login", "/api/v1/auth:register", "/api/v1/auth:refreshToken",
          "/api/v1/openapi.json"}


async def register(request: web.Request) -> web.Response:
    body = await decode_body(request, RegisterBody)
    async with request.app[DB].connection() as conn:
        user = await users.create_user(conn, body.email, body.display_name,
                                       tokens.hash_password(body.password))
    if user is None:
        raise AlreadyExists(f"email '{body.email}' is already registered")
    return web.json_response(
        {"user_id": str(user.id), "email": user.email, "display_name": user.display_name},
        status=201,
    )


async def login(request: web.Request) -> web.Response:
    body = await decode_body(request, LoginBody)
    settings = request.app[SETTINGS]
    async with request.app[DB].connection() as conn:
        user = await users.find_user_by_email(conn, body.email)
        if user is None or not tokens.verify_password(user.password_hash, body.password):
            raise Unauthorized("wrong email or password")
        refresh_token = tokens.new_refresh_token()
        session_id = await users.start_session(
            conn, user.id, tokens.hash_refresh_token(refresh_token), settings.refresh_token_ttl_s)
    return web.json_response({
        "access_token": tokens.issue_access_token(settings.jwt_secret, str(user.id),
                                                  str(session_id), settings.access_token_ttl_s),
        "refresh_token": refresh_token,
        "expires_in": settings.access_token_ttl_s,
    })


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
                conn, old_hash, tokens.hash_refresh_token(new_token),
                settings.refresh_token_ttl_s)
    if owner is None:
        raise Unauthorized("refresh_token is invalid, expired or revoked")
    user_id, session_id = owner
    answer = {
        "access_token": tokens.issue_access_token(settings.jwt_secret, str(user_id),
                                                  str(session_id), settings.access_token_ttl_s),
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
    """Every endpoint but login, register, refresh and the OpenAPI document needs a token."""
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
    async with request.app[DB].connection() as conn:
        if not await users.session_is_live(conn, session_id, user_id):
            raise Unauthorized("access token was revoked (logged out)")
    request[USER] = claims
    return await handler(request)

