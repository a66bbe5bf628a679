"""Authentication (API tokens) and authorization (roles per model or namespace).

CONTRACT used by every router:
    principal = authenticate(request, state)          # 401 unless anonymous read allowed
    authorize(principal, role, model)                 # 403 unless the role is held
Roles, weakest first: reader < writer < promoter < admin. A role binding's scope is a
model name, a namespace prefix ending in "/*"-free glob like "team-*", or "*".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from .state import ServerState

ROLES = ("reader", "writer", "promoter", "admin")


@dataclass(frozen=True)
class Principal:
    name: str
    bindings: dict[str, str] = field(default_factory=dict)  # scope pattern -> role
    anonymous: bool = False
    token_id: str | None = None


def authenticate(request: Request, state: ServerState) -> Principal:
    """TODO(server engineer): tokens. Until then everyone is an admin (no auth)."""
    return Principal("anonymous", {"*": "admin"}, anonymous=True)


def authorize(principal: Principal, role: str, model: str | None) -> None:
    """TODO(server engineer): role checks; raise modelvc.errors.PermissionDenied."""
    return None
