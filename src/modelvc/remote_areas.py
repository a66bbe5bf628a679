"""RemoteRegistry's sub-objects of RegistryAPI: keys, signatures, gates, tokens, roles,
deployments over a `modelvc server` (routes: server/governance.py, server/admin.py,
server/deployments.py; webhooks: events.RemoteEvents). `call(method, path, **httpx
kwargs)` is the client's transport; the server acts as the token's subject, so
`actor` is accepted for the Protocol's signature and ignored.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import quote

from .names import parse_ref
from .records import (
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
from .wire.values import decode, decode_as

Call = Callable[..., Any]


def _q(name: str) -> str:
    return quote(name, safe="")


def _params(**kw: Any) -> dict[str, Any]:
    return {"params": {k: v for k, v in kw.items() if v is not None}}


class _Area:
    def __init__(self, call: Call) -> None:
        self._call = call


class RemoteKeys(_Area):
    def add(self, name: str, *, public_key: str | bytes, actor: str | None = None
            ) -> SigningKey:
        pem = public_key.decode() if isinstance(public_key, bytes) else public_key
        return decode_as(SigningKey, self._call("POST", "/keys",
                                                json={"name": name, "public_key": pem}))

    def get(self, name_or_id: str) -> SigningKey:
        return decode_as(SigningKey, self._call("GET", f"/keys/{_q(name_or_id)}"))

    def list(self) -> builtins.list[SigningKey]:
        return cast(builtins.list[SigningKey],
                    decode(builtins.list[SigningKey], self._call("GET", "/keys")))

    def revoke(self, name: str, *, reason: str = "", actor: str | None = None) -> SigningKey:
        return decode_as(SigningKey, self._call("DELETE", f"/keys/{_q(name)}",
                                                **_params(reason=reason)))


class RemoteSignatures(_Area):
    def add(self, ref: str, *, bundle: str, imported: bool = False,
            actor: str | None = None) -> Signature:
        url = f"/models/{_q(parse_ref(ref).model)}/signatures"
        return decode_as(Signature, self._call("POST", url, json={
            "ref": ref, "bundle": bundle, "imported": imported}))

    def list(self, ref: str) -> builtins.list[Signature]:
        url = f"/models/{_q(parse_ref(ref).model)}/signatures"
        return cast(builtins.list[Signature],
                    decode(builtins.list[Signature], self._call("GET", url, **_params(ref=ref))))

    def check(self, ref: str, *, keys: Sequence[str] | None = None) -> SignatureReport:
        url = f"/models/{_q(parse_ref(ref).model)}/signatures/check"
        body = {"ref": ref, "keys": builtins.list(keys) if keys is not None else None}
        return decode_as(SignatureReport, self._call("POST", url, json=body))


class RemoteGates(_Area):
    def run(self, ref: str, *, channel: str, policy: str | None = None,
            data: str | None = None, actor: str | None = None) -> GateReport:
        url = f"/models/{_q(parse_ref(ref).model)}/gates/run"
        return decode_as(GateReport, self._call("POST", url, json={
            "ref": ref, "channel": channel, "policy": policy, "data": data}))

    def runs(self, ref: str, *, channel: str | None = None) -> builtins.list[GateRun]:
        url = f"/models/{_q(parse_ref(ref).model)}/gates/runs"
        return cast(builtins.list[GateRun], decode(builtins.list[GateRun], self._call(
            "GET", url, **_params(ref=ref, channel=channel))))

    def report(self, ref: str, *, run_id: int) -> dict[str, Any]:
        url = f"/models/{_q(parse_ref(ref).model)}/gates/runs/{int(run_id)}/report"
        return cast(dict[str, Any], self._call("GET", url, **_params(ref=ref)))

    def policy(self) -> PolicyInfo | None:
        data = self._call("GET", "/policy")
        return decode_as(PolicyInfo, data) if data else None

    def apply_policy(self, text: str, *, source: str = "<policy>",
                     actor: str | None = None) -> PolicyChange:
        return decode_as(PolicyChange, self._call("PUT", "/policy",
                                                  json={"text": text, "source": source}))


class RemoteTokens(_Area):
    def create(self, name: str, *, subject: str, scopes: Sequence[str] = (),
               expires_in_seconds: float | None = None, actor: str | None = None
               ) -> tuple[str, Token]:
        data = self._call("POST", "/tokens", json={
            "name": name, "subject": subject, "scopes": builtins.list(scopes),
            "expires_in_seconds": expires_in_seconds})
        return data["token"], decode_as(Token, data["info"])

    def list(self, *, subject: str | None = None) -> builtins.list[Token]:
        return cast(builtins.list[Token], decode(builtins.list[Token], self._call(
            "GET", "/tokens", **_params(subject=subject))))

    def revoke(self, token_id: str, *, actor: str | None = None) -> Token:
        return decode_as(Token, self._call("DELETE", f"/tokens/{_q(token_id)}"))


class RemoteRoles(_Area):
    def grant(self, subject: str, role: str, *, on: str, actor: str | None = None
              ) -> RoleBinding:
        return decode_as(RoleBinding, self._call("POST", "/roles", json={
            "subject": subject, "scope": on, "role": role}))

    def revoke(self, subject: str, *, on: str, actor: str | None = None) -> None:
        self._call("DELETE", "/roles", params={"subject": subject, "scope": on})

    def list(self, *, subject: str | None = None) -> builtins.list[RoleBinding]:
        return cast(builtins.list[RoleBinding], decode(builtins.list[RoleBinding], self._call(
            "GET", "/roles", **_params(subject=subject))))


class RemoteDeployments(_Area):
    def create(self, name: str, *, model: str, channel: str = "production",
               strategy: str = "atomic", selector: dict[str, str] | None = None,
               actor: str | None = None) -> Deployment:
        return decode_as(Deployment, self._call("POST", "/deployments", json={
            "name": name, "model": model, "channel": channel, "strategy": strategy,
            "selector": dict(selector or {})}))

    def get(self, name: str) -> Deployment:
        return decode_as(Deployment, self._call("GET", f"/deployments/{_q(name)}"))

    def list(self, *, model: str | None = None) -> builtins.list[Deployment]:
        return cast(builtins.list[Deployment], decode(builtins.list[Deployment], self._call(
            "GET", "/deployments", **_params(model=model))))

    def delete(self, name: str, *, actor: str | None = None) -> None:
        self._call("DELETE", f"/deployments/{_q(name)}")

    def replicas(self, *, model: str | None = None) -> builtins.list[Replica]:
        return cast(builtins.list[Replica], decode(builtins.list[Replica], self._call(
            "GET", "/replicas", **_params(model=model))))
