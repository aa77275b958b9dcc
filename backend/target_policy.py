"""Which processes a caller may trace: the target policy a START_MONITOR carries.

An admin may trace any process but the platform's (the manager refuses those itself); an
operator, one process named by pid, of a Unix account an admin granted them (PATCH
/api/v1/users/{id} unix_accounts). The machine's manager checks the process against the
accounts it is sent.
"""

from __future__ import annotations

from typing import Any

from backend.errors import PermissionDenied
from backend.models import MonitorTarget
from backend.repo import users
from backend.roles import Caller

__all__ = ["allowed_accounts"]


async def allowed_accounts(conn: Any, caller: Caller, target: MonitorTarget) -> list[str] | None:
    """The Unix accounts whose processes the caller may trace (None: any, for an admin);
    PermissionDenied when the caller may not trace this target at all."""
    if caller.role == "admin":
        return None
    user = await users.get_user(conn, caller.user_id)
    accounts = list(user.unix_accounts) if user is not None else []
    if not accounts:
        raise PermissionDenied(
            f"{caller.email} may trace no process: an admin grants Unix "
            "accounts (PATCH /api/v1/users/{id} unix_accounts)"
        )
    if target.pid is None or target.library_path is not None:
        raise PermissionDenied(
            "target: an operator traces one process named by target.pid "
            "(of a granted Unix account); a library or task name in every "
            "process needs an admin"
        )
    return accounts
