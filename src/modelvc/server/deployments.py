"""/api/v1/deployments and /api/v1/replicas: RegistryAPI's deployments area over HTTP.

The desired state of fleets: reading needs reader on the deployment's model, creating
and deleting one needs admin on it. Rollouts (the two-phase switch) are driven by
`modelvc deploy` where the metadata database is reachable, not through this API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..errors import NotFound
from ..records import Deployment
from ..registry import Registry
from ..wire.values import encode
from .auth import Principal, authorize, can
from .deps import NAMED, P, R, least

router = APIRouter(tags=["deployments"])


class DeploymentIn(BaseModel):
    name: str
    model: str
    channel: str = "production"
    strategy: str = "atomic"
    selector: dict[str, str] = Field(default_factory=dict, max_length=100)


@router.post("/deployments", dependencies=[least("admin", on=NAMED)])
def create(body: DeploymentIn, p: P, reg: R) -> Any:
    authorize(p, "admin", body.model)
    return encode(reg.deployments.create(body.name, model=body.model, channel=body.channel,
                                         strategy=body.strategy, selector=body.selector,
                                         actor=p.name))


@router.get("/deployments")
def list_(p: P, reg: R, model: str | None = None) -> Any:
    return encode([d for d in reg.deployments.list(model=model) if can(p, "reader", d.model)])


def _visible(reg: Registry, p: Principal, name: str) -> Deployment:
    """The deployment NAME, answered as absent (the same NotFound) when the caller may
    not read its model, so that a refusal does not tell which names exist."""
    try:
        d = reg.deployments.get(name)
    except NotFound:
        d = None
    if d is None or not can(p, "reader", d.model):
        raise NotFound(f"no deployment named {name!r}", hint="modelvc deploy status lists them")
    return d


@router.get("/deployments/{name}")
def get(name: str, p: P, reg: R) -> Any:
    return encode(_visible(reg, p, name))


@router.delete("/deployments/{name}")
def delete(name: str, p: P, reg: R) -> None:
    authorize(p, "admin", _visible(reg, p, name).model)
    reg.deployments.delete(name, actor=p.name)


@router.get("/replicas")
def replicas(p: P, reg: R, model: str | None = None) -> Any:
    return encode([r for r in reg.deployments.replicas(model=model)
                   if can(p, "reader", r.model)])
