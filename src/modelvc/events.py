"""Events: audit entries delivered to configured webhooks, in order, at least once.

An event IS an audit entry (appended in the same transaction as its mutation), so no
event can be lost between "the mutation happened" and "the event was queued". Each
webhook row keeps a cursor, the last audit id it has been given; delivering means
POSTing the entries after it that match its filter, oldest first, and moving the cursor
by compare-and-swap after each 2xx. A failing event blocks the later ones of that
webhook only. Every attempt is written to the delivery log.

Who delivers: the process that made a mutation (briefly, never failing the mutation),
`modelvc webhook deliver --wait N`, and long-running processes via `run_forever`.

Who configures: a webhook receives every model's events, so adding or removing one is a
registry-wide admin action (`require_admin`). Through a server that is the admin role
on '*' (server/hooks.py checks it; `RemoteEvents` is the client); locally, once the
registry has an admin at all, the actor must be one of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import records
from .errors import PermissionDenied
from .lineage import author
from .meta.api import AuditEntry

if TYPE_CHECKING:
    from .meta.api import AuditRow
    from .meta.store import MetaStore
    from .records import Delivery, DeliveryReport, Webhook, WebhookStatus

log = logging.getLogger(__name__)

BRIEF_BUDGET = 1.0  # seconds after_mutation may spend in total
BRIEF_TRIES = 2  # tries per event after a mutation (connection refused costs ~ms)
TIMEOUT = 5.0  # per HTTP request when delivering on purpose
BATCH = 500  # audit entries read per query
MAX_REMOTE_WAIT = 60.0  # seconds a server spends on one `deliver` request


@dataclass
class Report:
    delivered: int = 0
    failed_attempts: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # webhook id -> events waiting

    def frozen(self) -> DeliveryReport:
        return records.DeliveryReport(self.delivered, self.failed_attempts, dict(self.pending))


def wants(hook: Webhook, entry: AuditRow) -> bool:
    return not hook.events or entry.action in hook.events


def admins(meta: MetaStore) -> set[str]:
    """Who administers the whole registry: subjects bound to the admin role on '*'
    (what the server checks) and the applied policy's roles.admin."""
    out = {b.subject for b in meta.role_bindings() if b.scope == "*" and b.role == "admin"}
    from .gates.policy import applied_policy  # the policy parser loads only when asked

    pol = applied_policy(meta)
    return out | set(pol.admins) if pol is not None else out


def require_admin(meta: MetaStore, actor: str, what: str) -> None:
    """PermissionDenied unless ACTOR administers the registry. A registry with no admin
    at all (no admin role on '*', no policy admins) is a single-user one: anyone may,
    as anyone may promote before a policy is applied."""
    allowed = admins(meta)
    if allowed and actor not in allowed:
        raise PermissionDenied(
            f"{actor} may not {what}: webhooks receive every model's events, so they "
            "need the admin role on the whole registry ('*')",
            hint=f"ask an admin: `modelvc role grant {actor} admin --on '*'`")


class Events:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta
        self._lock = threading.Lock()  # one delivery pass at a time per process
        self._tries: dict[tuple[int, int], int] = {}  # (hook, audit id) -> tries so far
        self._failures: dict[int, int] = {}  # hook -> consecutive failed passes
        self._next_try: dict[int, float] = {}  # hook -> monotonic time it is due again

    # ---- configuration (admins only; audited like every mutation)
    def add(self, url: str, *, secret: str, events: Sequence[str] = (),
            actor: str | None = None) -> Webhook:
        from . import webhooks as wire  # urllib, ssl: loaded when a webhook exists

        wire.check_url(url)
        actor = actor or author()
        require_admin(self.meta, actor, "add a webhook")
        entry = AuditEntry(actor=actor, action="webhook", target=url,
                           after={"added": url, "events": sorted(set(events))})
        hook = self.meta.add_webhook(url, secret, sorted(set(events)), entry)
        self.after_mutation()  # with no filter, its own "webhook" entry acts as a ping
        return hook

    def remove(self, webhook_id: int, *, actor: str | None = None) -> None:
        actor = actor or author()
        require_admin(self.meta, actor, "remove a webhook")
        hook = next((h for h in self.meta.list_webhooks() if h.id == webhook_id), None)
        entry = AuditEntry(actor=actor, action="webhook", target=hook.url if hook else "",
                           before={"removed": webhook_id})
        self.meta.remove_webhook(webhook_id, entry)
        self.after_mutation()

    def hooks(self) -> list[Webhook]:
        return self.meta.list_webhooks()

    def log(self, webhook_id: int | None = None) -> list[Delivery]:
        return self.meta.delivery_log(webhook_id)

    def pending(self, hook: Webhook) -> int:
        """Events waiting for HOOK now (its cursor re-read: the object may be stale, as
        over a server, where the answer is the server's)."""
        now = next((h for h in self.meta.list_webhooks() if h.id == hook.id), hook)
        return self._pending(now)

    def _pending(self, hook: Webhook) -> int:
        return sum(1 for e in self.meta.audit_entries(after_id=hook.cursor) if wants(hook, e))

    def status(self) -> list[WebhookStatus]:
        """Each active webhook with the number of events waiting for it."""
        return [records.WebhookStatus(h, self._pending(h)) for h in self.hooks()]

    # ---- delivery
    def after_mutation(self) -> None:
        """Push new entries right after a mutation: one cheap query when no webhook
        exists, about a second at most otherwise, and never an exception (the mutation
        already happened; undelivered events stay pending for the next deliverer)."""
        try:
            hooks = self.meta.list_webhooks()
            if not hooks or not self._lock.acquire(blocking=False):
                return  # busy here: the running pass or the next deliverer sends them
            try:
                deadline = time.monotonic() + BRIEF_BUDGET
                for hook in hooks:
                    self._deliver_hook(hook, deadline, BRIEF_TRIES, TIMEOUT)
            finally:
                self._lock.release()
        except Exception as exc:  # delivery must never fail the command that mutated
            log.warning("webhook delivery deferred: %s", exc)

    def deliver(self, wait: float = 0.0) -> DeliveryReport:
        """Deliver pending events; retry failing webhooks with backoff for up to `wait`
        seconds (one pass when 0). Returns what was delivered and what still waits."""
        report = Report()
        deadline = time.monotonic() + max(wait, 0.0)
        first = True
        while True:
            self._pass(report, max(deadline, time.monotonic() + TIMEOUT), due_only=not first)
            first = False
            report.pending = {h.id: n for h in self.meta.list_webhooks()
                              if (n := self._pending(h))}
            now = time.monotonic()
            if not report.pending or now >= deadline:
                return report.frozen()
            due = min(self._next_try.get(i, now) for i in report.pending)
            time.sleep(min(max(due - now, 0.05), deadline - now))

    def run_forever(self, stop: threading.Event, interval: float = 5.0) -> None:
        """For long-running processes (the serving gateway): deliver what other
        processes left pending, each failing webhook retried on its own backoff."""
        while not stop.is_set():
            try:
                self._pass(Report(), time.monotonic() + max(interval, TIMEOUT), due_only=True)
            except Exception as exc:
                log.warning("webhook delivery failed: %s", exc)
            now = time.monotonic()
            due = min([interval, *(t - now for t in self._next_try.values())])
            stop.wait(max(due, 0.05))

    def _pass(self, report: Report, deadline: float, *, due_only: bool) -> None:
        with self._lock:
            now = time.monotonic()
            hooks = self.meta.list_webhooks()
            active = {h.id for h in hooks}  # forget the state of removed webhooks
            self._tries = {k: n for k, n in self._tries.items() if k[0] in active}
            for gone in set(self._next_try) - active:
                self._next_try.pop(gone, None)
                self._failures.pop(gone, None)
            for hook in hooks:
                if due_only and self._next_try.get(hook.id, 0.0) > now:
                    continue
                sent, failed = self._deliver_hook(hook, deadline, 1, TIMEOUT)
                report.delivered += sent
                report.failed_attempts += failed

    def _deliver_hook(self, hook: Webhook, deadline: float, tries: int,
                      timeout: float) -> tuple[int, int]:
        """Deliver, then keep this process's backoff state for the webhook: a failure
        pushes its next pass back, anything else clears it."""
        from . import webhooks as wire  # urllib, ssl: loaded when a webhook exists

        sent, failed, blocked = self._drain(hook, deadline, tries, timeout)
        if blocked:
            n = self._failures[hook.id] = self._failures.get(hook.id, 0) + 1
            self._next_try[hook.id] = time.monotonic() + wire.backoff(n)
        else:
            self._failures.pop(hook.id, None)
            self._next_try.pop(hook.id, None)
        return sent, failed

    def _drain(self, hook: Webhook, deadline: float, tries: int,
               timeout: float) -> tuple[int, int, bool]:
        """Send this webhook's pending entries in order until one fails (blocked), the
        deadline passes or another process moves the cursor.
        Returns (delivered, failed tries, blocked)."""
        sent = failed = 0
        cursor = hook.cursor
        while time.monotonic() < deadline:
            entries = self.meta.audit_entries(after_id=cursor, limit=BATCH)
            if not entries:
                break
            skip_to = cursor  # entries the filter drops are passed over with the cursor
            for e in entries:
                if not wants(hook, e):
                    skip_to = e.id
                    continue
                if skip_to != cursor:
                    if not self.meta.advance_webhook(hook.id, cursor, skip_to):
                        return sent, failed, False  # another deliverer is on this webhook
                    cursor = skip_to
                ok, n_failed = self._send(hook, e, deadline, tries, timeout)
                failed += n_failed
                if not ok:
                    return sent, failed, True
                sent += 1
                if not self.meta.advance_webhook(hook.id, cursor, e.id):
                    # Delivered concurrently too: at least once, receivers dedupe.
                    return sent, failed, False
                cursor = skip_to = e.id
                if time.monotonic() >= deadline:
                    return sent, failed, False
            if skip_to != cursor and not self.meta.advance_webhook(hook.id, cursor, skip_to):
                break
            cursor = skip_to
            if len(entries) < BATCH:
                break
        return sent, failed, False

    def _send(self, hook: Webhook, e: AuditRow, deadline: float, tries: int,
              timeout: float) -> tuple[bool, int]:
        from . import webhooks as wire  # urllib, ssl: loaded when a webhook exists

        delivery = wire.delivery_id(hook.id, e.id)
        data = wire.body(e, delivery)
        failed = 0
        for i in range(tries):
            remaining = deadline - time.monotonic()
            if i and remaining <= 0:
                break
            key = (hook.id, e.id)
            attempt = self._tries[key] = self._tries.get(key, 0) + 1
            out = wire.post(hook.url, hook.secret, e.action, delivery, data,
                            min(timeout, max(remaining, 0.1)))
            self.meta.log_delivery(hook.id, e.id, attempt, out.status, out.error)
            if out.ok:
                self._tries.pop(key, None)
                return True, failed
            failed += 1
            if i + 1 < tries:
                time.sleep(min(wire.backoff(i + 1, base=0.1), max(remaining, 0.0)))
        return False, failed


def _webhook(d: dict[str, Any]) -> Webhook:
    # The server never sends a secret back: it was shown once, when the hook was added.
    return records.Webhook(id=int(d["id"]), url=d["url"], secret="", events=list(d["events"]),
                           cursor=int(d["cursor"]),
                           created_at=datetime.fromisoformat(d["created_at"]),
                           active=bool(d["active"]))


def _delivery(d: dict[str, Any]) -> Delivery:
    return records.Delivery(id=int(d["id"]), webhook_id=int(d["webhook_id"]),
                            audit_id=int(d["audit_id"]), attempt=int(d["attempt"]),
                            at=datetime.fromisoformat(d["at"]), status=d["status"],
                            error=d["error"])


class RemoteEvents:
    """The configuration and delivery side of Events for a registry behind a `modelvc
    server` (/api/v1/webhooks, admin on '*'). `call(method, path, **httpx_kwargs)` is the
    client's transport (RemoteRegistry._call). Every change is made, and audited, as the
    token's subject; `actor` is accepted for the same signature and ignored."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self._call = call

    def add(self, url: str, *, secret: str, events: Sequence[str] = (),
            actor: str | None = None) -> Webhook:
        from . import webhooks as wire  # urllib, ssl: loaded when a webhook exists

        wire.check_url(url)
        out = self._call("POST", "/webhooks",
                         json={"url": url, "secret": secret, "events": list(events)})
        return _webhook(out["webhook"])

    def remove(self, webhook_id: int, *, actor: str | None = None) -> None:
        self._call("DELETE", f"/webhooks/{int(webhook_id)}")

    def status(self) -> list[WebhookStatus]:
        return [records.WebhookStatus(_webhook(d), int(d["pending"]))
                for d in self._call("GET", "/webhooks")]

    def hooks(self) -> list[Webhook]:
        return [s.webhook for s in self.status()]

    def pending(self, hook: Webhook) -> int:
        return next((s.pending for s in self.status() if s.webhook.id == hook.id), 0)

    def log(self, webhook_id: int | None = None) -> list[Delivery]:
        params = {} if webhook_id is None else {"webhook_id": webhook_id}
        return [_delivery(d) for d in self._call("GET", "/webhooks/deliveries", params=params)]

    def deliver(self, wait: float = 0.0) -> DeliveryReport:
        """The server delivers; it waits at most MAX_REMOTE_WAIT per request, so a
        longer wait is several requests."""
        report = Report()
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            step = min(max(deadline - time.monotonic(), 0.0), MAX_REMOTE_WAIT)
            d = self._call("POST", "/webhooks/deliver", json={"wait": step})
            report.delivered += int(d["delivered"])
            report.failed_attempts += int(d["failed_attempts"])
            report.pending = {int(k): int(v) for k, v in d["pending"].items()}
            if not report.pending or time.monotonic() >= deadline:
                return report.frozen()
