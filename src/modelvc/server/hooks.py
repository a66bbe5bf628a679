"""/api/v1/webhooks: configure and drive webhooks (events.py) over HTTP.

A webhook receives every model's events, so every route here needs the admin role on
the whole registry ('*'), reads included (URLs and delivery errors describe internal
receivers). Changes run as the token's subject and are audited (action "webhook").
Secrets are never sent back, except one the server generated, once, when it is added.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as FPath
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..events import MAX_REMOTE_WAIT
from ..records import Webhook
from ..webhooks import MAX_URL, new_secret
from ..wire.values import encode
from .auth import authorize
from .deps import P, R, least

router = APIRouter(prefix="/webhooks", tags=["webhooks"],
                   dependencies=[least("admin", on=None)])
INT32 = 2**31 - 1  # ids are 32-bit columns: a larger one is a 422, not a database error
WebhookId = Annotated[int, FPath(ge=0, le=INT32)]


def public(hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "events": list(hook.events),
            "cursor": hook.cursor, "created_at": hook.created_at.isoformat(),
            "active": hook.active}


class HookIn(BaseModel):
    url: str = Field(max_length=MAX_URL)
    secret: str | None = Field(default=None, max_length=1024)  # default: generated, sent once
    events: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list,
                                                               max_length=100)


@router.post("")
def add(body: HookIn, p: P, reg: R) -> dict[str, Any]:
    authorize(p, "admin", None)
    secret = body.secret or new_secret()
    hook = reg.events.add(body.url, secret=secret, events=body.events, actor=p.name)
    out: dict[str, Any] = {"webhook": public(hook)}
    if body.secret is None:
        out["secret"] = secret
    return out


@router.get("")
def list_hooks(p: P, reg: R) -> list[dict[str, Any]]:
    authorize(p, "admin", None)
    return [{**public(s.webhook), "pending": s.pending} for s in reg.events.status()]


@router.delete("/{webhook_id}")
def remove(webhook_id: WebhookId, p: P, reg: R) -> dict[str, Any]:
    authorize(p, "admin", None)
    reg.events.remove(webhook_id, actor=p.name)
    return {"removed": webhook_id}


@router.get("/deliveries")
def deliveries(p: P, reg: R, webhook_id: Annotated[int | None, Query(ge=0, le=INT32)] = None,
               limit: int = Query(default=1000, ge=0, le=100_000)) -> Any:
    authorize(p, "admin", None)
    rows = reg.events.log(webhook_id=webhook_id)
    return encode(rows[-limit:] if limit else [])


class DeliverIn(BaseModel):
    wait: float = Field(default=0.0, ge=0.0, le=MAX_REMOTE_WAIT, allow_inf_nan=False)


@router.post("/deliver")
async def deliver(body: DeliverIn, p: P, reg: R) -> dict[str, object]:
    authorize(p, "admin", None)
    report = await run_in_threadpool(reg.events.deliver, body.wait)
    return report.to_json()
