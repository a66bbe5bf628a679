"""The embedded registry's sub-objects of RegistryAPI: keys, signatures, gates, tokens,
roles, deployments (events: modelvc.events.Events). Each works on the Registry's
metadata and objects; the server's routes call these same objects, so a verb behaves
the same embedded and over HTTP (checks, audit entries, errors).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ModelvcError, NotFound, PermissionDenied, SignatureInvalid, UsageError
from ..lineage import author
from ..meta.api import AuditEntry
from ..names import check_name
from ..records import (
    Deployment,
    GateReport,
    GateRun,
    PolicyChange,
    PolicyInfo,
    Replica,
    RoleBinding,
    Signature,
    SignatureReport,
    SigningKey,
    Token,
)
from .parts import RegistryParts

if TYPE_CHECKING:
    from ..api.protocol import RegistryAPI

STRATEGIES = ("atomic", "rolling", "canary")


class LocalKeys:
    def __init__(self, reg: RegistryParts) -> None:
        self._reg = reg

    def add(self, name: str, *, public_key: str | bytes, actor: str | None = None
            ) -> SigningKey:
        """Register a public key (e.g. one whose owner signs with the model_signing tool)."""
        from ..signing import keys

        check_name(name, "key name")
        pem = keys.public_pem(keys.parse_public(public_key))
        who = actor or author()
        k = SigningKey(keys.key_id(pem), name, pem, datetime.now(UTC), who, None)
        self._reg._meta.add_key(k, AuditEntry(actor=who, action="key-add", target=f"key:{name}",
                                             after={"key": name, "id": k.id}))
        return k

    def get(self, name_or_id: str) -> SigningKey:
        return self._reg._meta.get_key(name_or_id)

    def list(self) -> builtins.list[SigningKey]:
        return self._reg._meta.list_keys()

    def revoke(self, name: str, *, reason: str = "", actor: str | None = None) -> SigningKey:
        meta = self._reg._meta
        k = meta.get_key(name)
        meta.revoke_key(k.id, AuditEntry(actor=actor or author(), action="key-revoke",
                                         target=f"key:{k.name}", before={"key": k.name},
                                         after={"revoked": True}, reason=reason))
        return meta.get_key(k.id)


class LocalSignatures:
    def __init__(self, reg: RegistryParts) -> None:
        self._reg = reg

    def _usable_key(self, key_id: str) -> SigningKey:
        try:
            k = self._reg._meta.get_key(key_id)
        except NotFound as exc:
            raise NotFound(f"the signing key {key_id[:12]} is not registered",
                           hint="register its public key: `modelvc key add NAME PUBFILE`"
                           ) from exc
        if k.revoked_at is not None:
            raise PermissionDenied(f"key {k.name} was revoked; it cannot sign")
        return k

    def add(self, ref: str, *, bundle: str, imported: bool = False,
            actor: str | None = None) -> Signature:
        from ..signing import keys
        from ..signing.bundle import Bundle, mismatch

        reg = self._reg
        v = reg.resolve(ref)
        b = Bundle.parse(bundle)
        candidates = ([self._usable_key(b.hint)] if b.hint else
                      [k for k in reg._meta.list_keys() if k.revoked_at is None])
        k = next((c for c in candidates if b.verify(keys.parse_public(c.public_key))), None)
        if k is None:
            raise SignatureInvalid("the signature does not verify with "
                                   + (f"key {candidates[0].name}" if b.hint else
                                      "any registered key"))
        why = mismatch(b.statement(), reg._trust.read_manifest(v.id), v.id)
        if why is not None:
            raise SignatureInvalid(f"the signature does not describe {v.model}@v{v.number}: "
                                   f"{why}")
        who = actor or author()
        sig = Signature(v.id, k.id, bundle, datetime.now(UTC), who)
        reg._meta.add_signature(sig, AuditEntry(
            actor=who, action="sign-import" if imported else "sign", model=v.model,
            target=f"{v.model}@v{v.number}", after={"version": v.id, "key": k.name}))
        reg.events.after_mutation()
        return sig

    def list(self, ref: str) -> builtins.list[Signature]:
        return self._reg._meta.signatures(self._reg.resolve(ref).id)

    def check(self, ref: str, *, keys: Sequence[str] | None = None) -> SignatureReport:
        from ..signing.trust import check_signatures

        reg = self._reg
        v = reg.resolve(ref)
        trusted = list(keys) if keys is not None else list(reg._trust.settings().keys)
        checks = check_signatures(reg._meta, reg._trust.read_manifest(v.id), v.id, trusted)
        try:
            ok, message = True, reg._trust.verify(v, trusted)
        except ModelvcError as exc:
            ok, message = False, exc.message
        return SignatureReport(v, ok, message, trusted, checks)


class LocalGates:
    def __init__(self, reg: RegistryParts, api: RegistryAPI) -> None:
        # One registry twice: its parts record the runs, and the gates read through its
        # API (resolve, check out, verify signatures) as any client would.
        self._reg, self._api = reg, api

    def run(self, ref: str, *, channel: str, policy: str | None = None,
            data: str | None = None, actor: str | None = None) -> GateReport:
        from ..gates.policy import parse_policy
        from .gate_runs import run_gates

        pol = parse_policy(policy, "<policy given to the run>") if policy is not None else None
        return run_gates(self._reg, self._api, ref, channel, policy=pol, data=data, actor=actor)

    def runs(self, ref: str, *, channel: str | None = None) -> builtins.list[GateRun]:
        return self._reg._meta.gate_runs(self._reg.resolve(ref).id, channel)

    def report(self, ref: str, *, run_id: int) -> dict[str, Any]:
        from .gate_runs import read_report

        v = self._reg.resolve(ref)
        run = next((r for r in self._reg._meta.gate_runs(v.id) if r.id == run_id), None)
        if run is None:
            raise NotFound(f"{v.model}@v{v.number} has no gate run {run_id}",
                           hint=f"see `modelvc gate show {ref}`")
        return read_report(self._reg, run)

    def policy(self) -> PolicyInfo | None:
        current = self._reg._meta.current_policy()
        return PolicyInfo(*current) if current is not None else None

    def apply_policy(self, text: str, *, source: str = "<policy>",
                     actor: str | None = None) -> PolicyChange:
        from ..gates.policy import parse_policy

        pol = parse_policy(text, source)
        changed = self._reg._governance.apply_policy(pol, actor or author())
        self._reg.events.after_mutation()
        return PolicyChange(pol.digest, changed)


class LocalTokens:
    def __init__(self, reg: RegistryParts) -> None:
        self._reg = reg

    def create(self, name: str, *, subject: str, scopes: Sequence[str] = (),
               expires_in_seconds: float | None = None, actor: str | None = None
               ) -> tuple[str, Token]:
        from ..meta.auth import new_token

        check_name(subject, "subject")
        secret, digest = new_token()
        at = (datetime.now(UTC) + timedelta(seconds=expires_in_seconds)
              if expires_in_seconds is not None else None)
        info = self._reg._meta.create_token(name=name, subject=subject, secret_hash=digest,
                                           scopes=list(scopes), expires_at=at,
                                           actor=actor or author())
        return secret, info

    def list(self, *, subject: str | None = None) -> builtins.list[Token]:
        return self._reg._meta.list_tokens(subject)

    def revoke(self, token_id: str, *, actor: str | None = None) -> Token:
        return self._reg._meta.revoke_token(token_id, actor=actor or author())


class LocalRoles:
    def __init__(self, reg: RegistryParts) -> None:
        self._reg = reg

    def grant(self, subject: str, role: str, *, on: str, actor: str | None = None
              ) -> RoleBinding:
        check_name(subject, "subject")
        return self._reg._meta.grant_role(subject, on, role, actor=actor or author())

    def revoke(self, subject: str, *, on: str, actor: str | None = None) -> None:
        self._reg._meta.revoke_role(subject, on, actor=actor or author())

    def list(self, *, subject: str | None = None) -> builtins.list[RoleBinding]:
        return self._reg._meta.role_bindings(subject)


class LocalDeployments:
    def __init__(self, reg: RegistryParts) -> None:
        self._reg = reg

    def create(self, name: str, *, model: str, channel: str = "production",
               strategy: str = "atomic", selector: dict[str, str] | None = None,
               actor: str | None = None) -> Deployment:
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")
        self._reg._meta.get_model(model)
        return self._reg._meta.create_deployment(name, model, channel, strategy,
                                                dict(selector or {}), actor or author())

    def get(self, name: str) -> Deployment:
        return self._reg._meta.get_deployment(name)

    def list(self, *, model: str | None = None) -> builtins.list[Deployment]:
        return self._reg._meta.list_deployments(model)

    def delete(self, name: str, *, actor: str | None = None) -> None:
        self._reg._meta.delete_deployment(name, actor or author())

    def replicas(self, *, model: str | None = None) -> builtins.list[Replica]:
        return self._reg._meta.list_replicas(model)
