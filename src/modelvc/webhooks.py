"""Webhook wire format: the JSON body of an event, its HMAC signature, one HTTP POST.

Standard library only (urllib), so sending an event costs no import time and no
dependency. Receivers verify `X-Modelvc-Signature: sha256=<hex>` over the raw body
with the shared secret (the same scheme as GitHub webhooks) and dedupe by
`X-Modelvc-Delivery`, which is stable across retries of one event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from .meta.api import AuditRow

SIGNATURE_HEADER = "X-Modelvc-Signature"
EVENT_HEADER = "X-Modelvc-Event"
DELIVERY_HEADER = "X-Modelvc-Delivery"
USER_AGENT = "modelvc-webhook/1"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


MAX_URL = 2048  # what browsers and proxies reliably carry


def check_url(url: str) -> str:
    if len(url) > MAX_URL:
        raise UsageError(f"webhook URL of {len(url)} characters: at most {MAX_URL}")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"webhook URL must start with http:// or https://, got {url!r}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UsageError(f"webhook URL {url[:80]!r} holds spaces or control characters",
                         hint="percent-encode them")
    return url


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """What a receiver does: constant-time compare of the header with its own HMAC."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


def delivery_id(webhook_id: int, audit_id: int) -> str:
    # Deterministic, so a resend after a lost 2xx carries the same id and dedupes.
    return f"{webhook_id}-{audit_id}"


def body(entry: AuditRow, delivery: str) -> bytes:
    doc = {"id": entry.id, "delivery": delivery, "event": entry.action,
           "at": entry.at.isoformat(), "actor": entry.actor, "model": entry.model,
           "target": entry.target, "before": entry.before, "after": entry.after,
           "reason": entry.reason, "hash": entry.hash}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Outcome:
    status: int | None  # HTTP status; None when no answer came
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would re-send (or drop) the signed body somewhere unconfigured.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, secret: str, event: str, delivery: str, data: bytes,
         timeout: float) -> Outcome:
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        EVENT_HEADER: event, DELIVERY_HEADER: delivery, SIGNATURE_HEADER: sign(secret, data)})
    try:
        with _opener.open(req, timeout=max(timeout, 0.05)) as resp:
            resp.read(65536)
            return Outcome(int(resp.status), None)
    except urllib.error.HTTPError as exc:
        return Outcome(int(exc.code), f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Outcome(None, f"{type(reason).__name__}: {reason}"[:500])


def backoff(attempt: int, *, base: float = 0.25, cap: float = 30.0) -> float:
    """Seconds before retry `attempt` (1-based): exponential, capped, half jittered so
    many deliverers retrying one receiver do not arrive in lockstep."""
    d = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return d / 2 + random.random() * d / 2
