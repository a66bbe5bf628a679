"""/api/v1/tokens and /api/v1/roles: who may do what (admins; every change audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..meta.auth import MAX_TOKEN_NAME
from ..wire.values import encode
from .auth import authorize
from .deps import NAMED, P, R, least

router = APIRouter(tags=["auth"])


def _scope_model(scope: str) -> str | None:
    """An exact model name can be administered by that model's admin; globs need '*'."""
    return scope if not any(c in scope for c in "*?[") else None


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_TOKEN_NAME)
    subject: str = Field(max_length=MAX_TOKEN_NAME)
    scopes: list[str] = Field(default_factory=list, max_length=64)
    # at most ten years; finite (timedelta overflows on 1e300, NaN is no time)
    expires_in_seconds: float | None = Field(default=None, gt=0, le=10 * 366 * 86400,
                                             allow_inf_nan=False)


@router.post("/tokens", dependencies=[least("admin", on=None)])
def create_token(body: TokenIn, p: P, reg: R) -> dict[str, Any]:
    """A new token for SUBJECT; the secret is in this response only."""
    authorize(p, "admin", None)
    token, row = reg.tokens.create(body.name, subject=body.subject, scopes=body.scopes,
                                   expires_in_seconds=body.expires_in_seconds, actor=p.name)
    return {"token": token, "info": encode(row)}


@router.get("/tokens")
def list_tokens(p: P, reg: R, subject: str | None = None) -> Any:
    authorize(p, "admin", None)
    return encode(reg.tokens.list(subject=subject))


@router.delete("/tokens/{token_id}", dependencies=[least("admin", on=None)])
def revoke_token(token_id: str, p: P, reg: R) -> Any:
    authorize(p, "admin", None)
    return encode(reg.tokens.revoke(token_id, actor=p.name))


class RoleIn(BaseModel):
    subject: str
    scope: str
    role: str


@router.post("/roles", dependencies=[least("admin", on=NAMED)])
def grant_role(body: RoleIn, p: P, reg: R) -> Any:
    authorize(p, "admin", _scope_model(body.scope))
    return encode(reg.roles.grant(body.subject, body.role, on=body.scope, actor=p.name))


@router.delete("/roles", dependencies=[least("admin", on=NAMED)])
def revoke_role(subject: str, scope: str, p: P, reg: R) -> None:
    authorize(p, "admin", _scope_model(scope))
    reg.roles.revoke(subject, on=scope, actor=p.name)


@router.get("/roles")
def list_roles(p: P, reg: R, subject: str | None = None) -> Any:
    if subject != p.name:  # everyone may see their own bindings
        authorize(p, "admin", None)
    return encode(reg.roles.list(subject=subject))
