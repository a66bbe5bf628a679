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
from typing import Any

from ..errors import PermissionDenied, Unauthenticated
from ..meta.auth import check_token_live, hash_token, rank, role_on, strongest, token_caps
from ..registry import Registry

DEFAULT_ACTOR = "modelvc-serve"
NEEDED_ROLE = "promoter"


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
        # One query, as the server's authenticate: the token and its subject's bindings.
        grant = reg.token_grant(hash_token(self.token))
        if grant is None:
            raise Unauthenticated("the gateway's API token is not known to this registry",
                                  hint="check `token` / $MODELVC_SERVE_TOKEN, or ask an "
                                       "admin for one (`modelvc token create`)")
        tok, held = grant
        check_token_live(tok, "the gateway's API token")
        bindings = {b.scope: b.role for b in held}
        caps = token_caps(tok.scopes)
        if role_on(bindings, caps, model) < rank(NEEDED_ROLE):
            why = (f"token {tok.id} is limited to {sorted(caps)}"
                   if strongest(bindings, model) >= rank(NEEDED_ROLE)
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
        pol = reg.applied_policy()
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
