"""/ui on `modelvc server`: the web UI with the API's tokens and roles.

Logging in takes an API token; the session cookie (HttpOnly, SameSite=Strict, Secure
over https) names the token by its hash under a MAC and expires (uisession.py), and
every request resolves the token again exactly as the API resolves a bearer token (so a
revoked token or role counts from the next page). Reads are
authorized per model as the /api/v1 routes do; actions call those routes' own
functions, so roles, gates and audit are the API's to the letter.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from starlette.applications import Starlette

from ..diff import VersionDiff
from ..errors import Unauthenticated, UsageError
from ..manifest import Manifest
from ..meta.auth import hash_token
from ..records import (
    AuditRecord,
    Deployment,
    FileStorage,
    GateReport,
    GateRun,
    PolicyInfo,
    Ref,
    RefMove,
    Replica,
    SignatureReport,
    Version,
)
from ..registry import Registry
from ..ui.access import Viewer
from ..ui.app import create_ui_app
from ..ui.port import UIRegistry
from . import api
from .auth import ANONYMOUS, Principal, authorize, can, principal_for_hash
from .state import ServerState
from .uisession import Sessions, load_key


class _Gates:
    def __init__(self, reg: Registry, p: Principal) -> None:
        self._reg, self._p = reg, p

    def run(self, ref: str, *, channel: str, policy: str | None = None,
            data: str | None = None, actor: str | None = None) -> GateReport:
        """As POST /api/v1/models/M/gates/run: writers; the applied policy's gates only
        (a policy text or a server path would need the admin role there)."""
        if policy is not None or data is not None:
            raise UsageError("the UI runs the applied policy's gates only",
                             hint="use `modelvc gate run --policy/--data` as an admin")
        authorize(self._p, "writer", api.model_of(ref))
        return self._reg.gates.run(ref, channel=channel, actor=self._p.name)

    def runs(self, ref: str, *, channel: str | None = None) -> builtins.list[GateRun]:
        authorize(self._p, "reader", api.model_of(ref))
        return self._reg.gates.runs(ref, channel=channel)

    def report(self, ref: str, *, run_id: int) -> dict[str, Any]:
        authorize(self._p, "reader", api.model_of(ref))
        return self._reg.gates.report(ref, run_id=run_id)

    def policy(self) -> PolicyInfo | None:
        return self._reg.gates.policy()  # as GET /api/v1/policy: any caller


class _Signatures:
    def __init__(self, reg: Registry, p: Principal) -> None:
        self._reg, self._p = reg, p

    def check(self, ref: str, *, keys: Sequence[str] | None = None) -> SignatureReport:
        authorize(self._p, "reader", api.model_of(ref))
        return self._reg.signatures.check(ref, keys=keys)


class _Deployments:
    """As /api/v1/deployments and /replicas: only those of models the caller reads."""

    def __init__(self, reg: Registry, p: Principal) -> None:
        self._reg, self._p = reg, p

    def list(self, *, model: str | None = None) -> builtins.list[Deployment]:
        return [d for d in self._reg.deployments.list(model=model)
                if can(self._p, "reader", d.model)]

    def replicas(self, *, model: str | None = None) -> builtins.list[Replica]:
        return [r for r in self._reg.deployments.replicas(model=model)
                if can(self._p, "reader", r.model)]


class GuardedRegistry:
    """The registry as one principal may use it (a UIRegistry)."""

    def __init__(self, reg: Registry, p: Principal) -> None:
        self._reg = reg
        self._p = p
        self.gates = _Gates(reg, p)
        self.signatures = _Signatures(reg, p)
        self.deployments = _Deployments(reg, p)

    def _read(self, model: str | None) -> None:
        authorize(self._p, "reader", model)

    # ---- reading
    def models(self) -> list[str]:
        return [m for m in self._reg.models() if can(self._p, "reader", m)]

    def versions(self, model: str) -> list[Version]:
        self._read(model)
        return self._reg.versions(model)

    def resolve(self, ref: str, *, deleted: bool = False) -> Version:
        self._read(api.model_of(ref))
        return self._reg.resolve(ref, deleted=deleted)

    def manifest(self, ref: str) -> Manifest:
        self._read(api.model_of(ref))
        return self._reg.manifest(ref)

    def storage(self, ref: str) -> list[FileStorage]:
        self._read(api.model_of(ref))
        return self._reg.storage(ref)

    def refs(self, model: str, *, kind: str | None = None) -> list[Ref]:
        self._read(model)
        return self._reg.refs(model, kind=kind)

    def history(self, model: str, *, name: str | None = None) -> list[RefMove]:
        self._read(model)
        return self._reg.history(model, name=name)

    def at(self, model: str, name: str, *, when: datetime) -> Version | None:
        self._read(model)
        return self._reg.at(model, name, when=when)

    def diff(self, a: str, b: str, *, numeric: bool = True) -> VersionDiff:
        self._read(api.model_of(a))
        self._read(api.model_of(b))
        return self._reg.diff(a, b, numeric=numeric)

    def audit(self, *, model: str | None = None, channel: str | None = None,
              actor: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after: int | None = None, before: int | None = None,
              limit: int | None = None, newest: bool = False) -> list[AuditRecord]:
        # As GET /api/v1/audit: the whole trail (tokens, roles) is for admins.
        authorize(self._p, "reader" if model else "admin", model)
        return self._reg.audit(model=model, channel=channel, actor=actor, action=action,
                               since=since, until=until, after=after, before=before,
                               limit=limit, newest=newest)

    def verify_audit(self) -> list[str]:
        authorize(self._p, "admin", None)
        return self._reg.verify_audit()

    # ---- actions: the API routes themselves
    def create_branch(self, model: str, name: str, *, at: str | None = None,
                      actor: str | None = None) -> Ref:
        api.create_branch(model, api.BranchIn(name=name, at=at), self._p, self._reg)
        return self._ref(model, name)

    def tag(self, ref: str, name: str, *, actor: str | None = None) -> Ref:
        model = api.model_of(ref)
        api.tag(model, api.TagIn(ref=ref, name=name), self._p, self._reg)
        return self._ref(model, name)

    def promote(self, ref: str, channel: str, *, reason: str = "", actor: str | None = None,
                force: bool = False, create: bool = False) -> Ref:
        model = api.model_of(ref)
        api.promote(model, channel,
                    api.PromoteIn(ref=ref, reason=reason, force=force, create=create),
                    self._p, self._reg)
        return self._ref(model, channel)

    def rollback(self, model: str, channel: str, *, to: str | None = None, reason: str = "",
                 actor: str | None = None) -> Ref:
        api.rollback(model, channel, api.RollbackIn(to=to, reason=reason), self._p,
                     self._reg)
        return self._ref(model, channel)

    def _ref(self, model: str, name: str) -> Ref:
        return next(r for r in self._reg.refs(model) if r.name == name)


class ServerAccess:
    """The UI's Access on the server: API tokens, role bindings, anonymous reads."""

    login_hint = ("paste an API token (an admin makes one with `modelvc token create "
                  "NAME --subject YOU`)")
    login_label = "API token"

    def __init__(self, state: ServerState, sessions: Sessions | None = None) -> None:
        self.state = state
        self._sessions = sessions

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:  # on first use: the registry opens lazily
            self._sessions = Sessions(load_key(self.state.registry().location))
        return self._sessions

    def _principal(self, token_hash: str) -> Principal | None:
        try:
            return principal_for_hash(token_hash, self.state)
        except Unauthenticated:
            return None

    def login(self, secret: str) -> str | None:
        secret = secret.strip()
        if not secret or self._principal(hash_token(secret)) is None:
            return None
        return self.sessions.issue(hash_token(secret))

    def viewer(self, session: str | None) -> Viewer | None:
        if not session:
            if self.state.config.anonymous_read:
                return Viewer(ANONYMOUS, "", handle=Principal(
                    ANONYMOUS, {"*": "reader"}, anonymous=True))
            return None
        token_hash = self.sessions.token_hash(session)
        p = None if token_hash is None else self._principal(token_hash)
        return None if p is None else Viewer(p.name, session, handle=p)

    def registry(self, viewer: Viewer) -> UIRegistry:
        return GuardedRegistry(self.state.registry(), _p(viewer))

    def can(self, viewer: Viewer, role: str, model: str | None) -> bool:
        return can(_p(viewer), role, model)

    def may_see_all_audit(self, viewer: Viewer) -> bool:
        return can(_p(viewer), "admin", None)


def _p(viewer: Viewer) -> Principal:
    p: Any = viewer.handle
    assert isinstance(p, Principal)
    return p


def ui_app(state: ServerState) -> Starlette:
    return create_ui_app(ServerAccess(state), title="modelvc server")
