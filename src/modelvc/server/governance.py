"""/api/v1 keys, signatures, gates and policy: RegistryAPI's keys, signatures and gates
areas over HTTP (modelvc.remote_areas speaks it). Each route authorizes, then calls the
embedded registry's same verb as the token's subject, so checks and audit entries are
those of a local call.

Who may: reading public keys, the policy, signatures and gate runs needs a reader role
(on the model, or any authenticated caller for keys and the policy); registering and
revoking keys and applying a policy change what every model trusts: admin on '*'.
Storing a signature needs writer on the model (the bundle must verify with a registered
key anyway). Gate runs execute on the server: writer on the model runs the applied
policy's gates; gates from a policy text or a `data` path on the server (either can
name commands and files there) need admin on '*'.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..errors import SignatureInvalid, SignatureRefused, UsageError
from ..names import parse_ref
from ..wire.values import encode
from .auth import authorize
from .deps import P, R, least

router = APIRouter(tags=["governance"])


def _ref_of(ref: str, model: str) -> str:
    if parse_ref(ref).model != model:
        raise UsageError(f"{ref} is not a ref of model {model}")
    return ref


# ---- keys
class KeyIn(BaseModel):
    name: str
    public_key: str = Field(max_length=64 << 10)


@router.get("/keys")
def list_keys(p: P, reg: R) -> Any:
    return encode(reg.keys.list())


@router.get("/keys/{name_or_id}")
def get_key(name_or_id: str, p: P, reg: R) -> Any:
    return encode(reg.keys.get(name_or_id))


@router.post("/keys", dependencies=[least("admin", on=None)])
def add_key(body: KeyIn, p: P, reg: R) -> Any:
    authorize(p, "admin", None)
    return encode(reg.keys.add(body.name, public_key=body.public_key, actor=p.name))


@router.delete("/keys/{name}")
def revoke_key(name: str, p: P, reg: R, reason: str = "") -> Any:
    authorize(p, "admin", None)
    return encode(reg.keys.revoke(name, reason=reason, actor=p.name))


# ---- signatures
class SignatureIn(BaseModel):
    ref: str
    bundle: str = Field(max_length=1 << 20)
    imported: bool = False


class CheckIn(BaseModel):
    ref: str
    keys: list[str] | None = Field(default=None, max_length=1000)


@router.get("/models/{model}/signatures")
def list_signatures(model: str, ref: str, p: P, reg: R) -> Any:
    authorize(p, "reader", model)
    return encode(reg.signatures.list(_ref_of(ref, model)))


@router.post("/models/{model}/signatures", dependencies=[least("writer")])
def add_signature(model: str, body: SignatureIn, p: P, reg: R) -> Any:
    authorize(p, "writer", model)
    try:
        return encode(reg.signatures.add(_ref_of(body.ref, model), bundle=body.bundle,
                                         imported=body.imported, actor=p.name))
    except SignatureInvalid as exc:  # the bundle the client sent, not stored data
        raise SignatureRefused(exc.message, hint=exc.hint) from exc


@router.post("/models/{model}/signatures/check", dependencies=[least("reader")])
def check_signatures(model: str, body: CheckIn, p: P, reg: R) -> Any:
    authorize(p, "reader", model)
    return encode(reg.signatures.check(_ref_of(body.ref, model), keys=body.keys))


# ---- gates
class GateRunIn(BaseModel):
    ref: str
    channel: str
    policy: str | None = Field(default=None, max_length=1 << 20)
    data: str | None = None


@router.post("/models/{model}/gates/run", dependencies=[least("writer")])
async def run_gates(model: str, body: GateRunIn, p: P, reg: R) -> Any:
    authorize(p, "writer", model)
    if body.policy is not None or body.data is not None:
        authorize(p, "admin", None)  # names commands and files on the server
    ref = _ref_of(body.ref, model)
    report = await run_in_threadpool(lambda: reg.gates.run(
        ref, channel=body.channel, policy=body.policy, data=body.data, actor=p.name))
    return encode(report)


@router.get("/models/{model}/gates/runs")
def gate_runs(model: str, ref: str, p: P, reg: R, channel: str | None = None) -> Any:
    authorize(p, "reader", model)
    return encode(reg.gates.runs(_ref_of(ref, model), channel=channel))


@router.get("/models/{model}/gates/runs/{run_id}/report")
def gate_report(model: str, run_id: int, ref: str, p: P, reg: R) -> Any:
    authorize(p, "reader", model)
    return reg.gates.report(_ref_of(ref, model), run_id=run_id)


# ---- policy
class PolicyIn(BaseModel):
    text: str = Field(max_length=1 << 20)
    source: str = "<policy>"


@router.get("/policy")
def get_policy(p: P, reg: R) -> Any:
    return encode(reg.gates.policy())


@router.put("/policy", dependencies=[least("admin", on=None)])
def apply_policy(body: PolicyIn, p: P, reg: R) -> Any:
    authorize(p, "admin", None)
    return encode(reg.gates.apply_policy(body.text, source=body.source, actor=p.name))
