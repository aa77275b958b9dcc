"""Roles, and the caller of a request as the auth middleware found it.

viewer < operator < admin: a role may do what the roles below it may. Which role each route
needs is written once, in backend.routes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["ROLES", "Caller", "Role", "allows"]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)  # lowest first
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def allows(have: Role, need: Role) -> bool:
    return _RANK[have] >= _RANK[need]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an authenticated request, with the role the database holds now (a role
    changed by an admin applies to the next request, not at the token's expiry)."""

    user_id: uuid.UUID
    email: str
    role: Role
    address: str
