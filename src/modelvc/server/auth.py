"""Authentication (API tokens) and authorization (roles per model or namespace).

CONTRACT used by every router:
    principal = authenticate(request, state)          # 401 unless anonymous read allowed
    authorize(principal, role, model)                 # 403 unless the role is held
Roles, weakest first: reader < writer < promoter < admin; each implies the weaker ones.
A role binding's scope is a model name, a glob over model names like "team-*", or "*".
`model=None` means the whole registry (gc, verify, tokens, roles): only "*" counts.
A token may carry caps ("ROLE:PATTERN"): it then acts with at most that role there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from ..errors import PermissionDenied, Unauthenticated
from ..meta.auth import ROLES, check_token_live, hash_token, rank, strongest, token_caps
from ..meta.auth import role_on as _role_on
from .state import ServerState

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    name: str
    bindings: dict[str, str] = field(default_factory=dict)  # scope pattern -> role
    anonymous: bool = False
    token_id: str | None = None
    caps: dict[str, str] | None = None  # token scopes: pattern -> strongest role; None: no cap


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer T` (huggingface_hub sends the same header)."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not token.strip():
        return None
    return token.strip()


def authenticate(request: Request, state: ServerState) -> Principal:
    """Who is calling: a valid token's subject, or anonymous (reader) when configured.
    Once per request: the body guard (limits.py) may have asked before the body."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    token = bearer(request)
    if token is None:
        if state.config.anonymous_read:
            p = Principal(ANONYMOUS, {"*": "reader"}, anonymous=True)
            request.state.principal = p
            return p
        raise Unauthenticated("this registry needs an API token",
                              hint="set MODELVC_TOKEN (push, pull and clone also take "
                                   "--token; over HTTP send `Authorization: Bearer TOKEN`); "
                                   "an admin creates one with `modelvc token create`")
    p = principal_for(token, state)
    request.state.principal = p
    return p


def principal_for(token: str, state: ServerState) -> Principal:
    """The principal of a token (the API's bearer header)."""
    return principal_for_hash(hash_token(token), state)


def principal_for_hash(token_hash: str, state: ServerState) -> Principal:
    """The principal of the token whose sha256 is TOKEN_HASH (the UI's session)."""
    # One query: the token row joined to its subject's role bindings. No cache, so a
    # revoked or expired token (and a revoked role) is refused from the next request.
    grant = state.registry().token_grant(token_hash)
    if grant is None:
        raise Unauthenticated("the API token is not known to this registry",
                              hint="check MODELVC_TOKEN (or push/pull/clone's --token), or "
                                   "ask an admin for a new one (`modelvc token create`)")
    tok, held = grant
    check_token_live(tok)
    bindings = {b.scope: b.role for b in held}
    caps = token_caps(tok.scopes)
    return Principal(tok.subject, bindings, token_id=tok.id, caps=caps)


def role_on(principal: Principal, model: str | None) -> int:
    """Rank of the strongest role the principal may use on MODEL (-1: none)."""
    return _role_on(principal.bindings, principal.caps, model)


def can(principal: Principal, role: str, model: str | None) -> bool:
    return role_on(principal, model) >= rank(role)


def authorize_somewhere(principal: Principal, role: str) -> None:
    """As `authorize`, unless the principal may hold ROLE on some model: what a route
    whose model is named in its body checks before the body is read (then the model)."""
    held = max((rank(r) for r in principal.bindings.values()), default=-1)
    if principal.caps is not None:
        held = min(held, max((rank(r) for r in principal.caps.values()), default=-1))
    if held >= rank(role):
        return
    if principal.anonymous:
        raise Unauthenticated(f"anonymous callers may only read; this needs the {role} role "
                              "on the model the request names")
    raise PermissionDenied(
        f"{principal.name} needs the {role} role on the model the request names, and "
        f"holds it on no model" + (f" (token {principal.token_id} is limited to "
                                   f"{_caps(principal.caps)})" if principal.caps else ""),
        hint=f"ask an admin: `modelvc role grant {principal.name} {role} --on MODEL`")


def _caps(caps: dict[str, str]) -> str:
    """A token's caps as a person reads them: "reader on *, writer on team-*"."""
    return ", ".join(f"{role} on {pattern}" for pattern, role in sorted(caps.items()))


def authorize(principal: Principal, role: str, model: str | None) -> None:
    """PermissionDenied (403), or Unauthenticated (401) for anonymous callers, unless
    the principal holds ROLE (or a stronger one) on MODEL."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if can(principal, role, model):
        return
    where = f"model {model}" if model is not None else "the whole registry ('*')"
    if principal.anonymous:
        raise Unauthenticated(f"anonymous callers may only read; this needs the {role} role "
                              f"on {where}")
    capped = principal.caps is not None and strongest(principal.bindings, model) >= rank(role)
    if capped:
        raise PermissionDenied(f"token {principal.token_id} is limited to "
                               f"{_caps(principal.caps or {})} and may not act as {role} "
                               f"on {where}", hint="use a token created with a wider --scope")
    raise PermissionDenied(
        f"{principal.name} needs the {role} role on {where}",
        hint=f"ask an admin: `modelvc role grant {principal.name} {role} --on "
             f"{model or '*'}`")
