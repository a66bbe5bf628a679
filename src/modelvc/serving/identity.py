"""Who the gateway is when its canary policy moves a channel (promote or roll back).

By default the gateway acts as the actor `modelvc-serve`. Once an applied policy names
roles (roles.promoter, roles.admin or a channel's promoters), that name must be listed
there, or the gateway is configured with an identity that is:

- `actor = "NAME"`: an actor name the policy lists (trusted as written: whoever can
  open the registry's database can act as anyone, as with `modelvc promote --actor`);
- `token = "mvc_..."` (or $MODELVC_SERVE_TOKEN): an API token of this registry; the
  gateway acts as its subject, and only while the token is valid (not revoked, not
  expired) and its subject holds the promoter role (or admin) on the model through the
  registry's role bindings, within the token's scopes: exactly what `modelvc server`
  requires of a promotion made over HTTP.

Either way `Registry.promote/rollback` then asks the policy (gates.authority) as for
any other actor. A refusal is not lost: the gateway logs it, counts it
(`modelvc_canary_refusals_total`), shows it in /modelvc/status and retries later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from ..errors import PermissionDenied, Unauthenticated
from ..meta.auth import ROLES, hash_token
from ..registry import Registry

DEFAULT_ACTOR = "modelvc-serve"
NEEDED_ROLE = "promoter"


def _rank(role: str | None) -> int:
    return ROLES.index(role) if role in ROLES else -1


def _strongest(patterns: dict[str, str], model: str) -> int:
    return max((_rank(r) for p, r in patterns.items() if fnmatchcase(model, p)), default=-1)


@dataclass(frozen=True)
class Identity:
    actor: str = DEFAULT_ACTOR
    token: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"actor": None if self.token else self.actor, "token": self.token is not None}

    def actor_for(self, reg: Registry, model: str) -> str:
        """The actor to record for a move of `model`'s channels; raises Unauthenticated
        or PermissionDenied when the token does not (or no longer) allow it."""
        if self.token is None:
            return self.actor
        meta = reg.meta
        tok = meta.token_by_hash(hash_token(self.token))
        if tok is None:
            raise Unauthenticated("the gateway's API token is not known to this registry",
                                  hint="check `token` / $MODELVC_SERVE_TOKEN, or ask an "
                                       "admin for one (`modelvc token create`)")
        if tok.revoked_at is not None:
            raise Unauthenticated(f"the gateway's API token {tok.id} was revoked",
                                  hint="ask an admin for a new one (`modelvc token create`)")
        if tok.expires_at is not None and tok.expires_at <= datetime.now(UTC):
            raise Unauthenticated(f"the gateway's API token {tok.id} expired at "
                                  f"{tok.expires_at:%Y-%m-%d %H:%M}",
                                  hint="ask an admin for a new one (`modelvc token create`)")
        bindings = {b.scope: b.role for b in meta.role_bindings(tok.subject)}
        held = _strongest(bindings, model)
        caps: dict[str, str] = {}
        for s in tok.scopes:
            role, _, pattern = s.partition(":")
            if _rank(role) > _rank(caps.get(pattern)):
                caps[pattern] = role
        if min(held, _strongest(caps, model)) < _rank(NEEDED_ROLE):
            why = (f"token {tok.id} is limited to {sorted(caps)}" if held >= _rank(NEEDED_ROLE)
                   else f"{tok.subject} needs the {NEEDED_ROLE} role on model {model}")
            raise PermissionDenied(f"the gateway may not move {model}'s channels: {why}",
                                   hint=f"`modelvc role grant {tok.subject} {NEEDED_ROLE} "
                                        f"--on {model}`, or a token with a wider --scope")
        return tok.subject

    def preflight(self, reg: Registry, model: str, moves: list[tuple[str, str]]
                  ) -> str | None:
        """Why a later automatic move would be refused on roles (None: it would not):
        `moves` lists (verb, channel). Gates are not checked: a version passes them
        (or not) when it is tried."""
        try:
            actor = self.actor_for(reg, model)
        except PermissionDenied as exc:
            return exc.message
        pol = reg.governance.policy()
        if pol is None:
            return None
        for verb, channel in moves:
            rule = pol.rule(model, channel)
            if rule is not None and not pol.may_move(actor, rule):
                allowed = rule.promoters if rule.promoters is not None else pol.promoters
                who = ", ".join(sorted((allowed or frozenset()) | pol.admins)) or "nobody"
                return (f"{actor} may not {verb} {model}@{channel} under the applied policy "
                        f"(allowed: {who}); configure the gateway's actor or token")
        return None
