"""MetaStore's webhooks area: subscriptions, their delivery cursors (compare-and-swap)
and the delivery log."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ..errors import NotFound
from ..records import Delivery, Webhook
from .api import AuditEntry
from .area import Area
from .governance import append_audit
from .rows import now, utc
from .schema import audit, deliveries, webhooks


class WebhooksArea(Area):
    def add_webhook(self, url: str, secret: str, events: Sequence[str],
                    audit_entry: AuditEntry) -> Webhook:
        def tx(conn: sa.Connection) -> Webhook:
            cursor = conn.execute(sa.select(sa.func.coalesce(sa.func.max(audit.c.id), 0)))
            start = int(cursor.scalar_one())
            at = now()
            wid = conn.execute(sa.insert(webhooks).values(
                url=url, secret=secret, events=list(events), cursor=start, created_at=at,
                active=True).returning(webhooks.c.id)).scalar_one()
            append_audit(conn, audit_entry)
            return Webhook(int(wid), url, secret, list(events), start, at, True)

        hook: Webhook = self._tx(tx, write=True)
        return hook

    def list_webhooks(self, *, active_only: bool = True) -> list[Webhook]:
        q = sa.select(webhooks).order_by(webhooks.c.id)
        if active_only:
            q = q.where(webhooks.c.active == sa.true())
        return list(self._tx(lambda conn: [
            Webhook(r.id, r.url, r.secret, list(r.events), r.cursor, utc(r.created_at),
                    bool(r.active)) for r in conn.execute(q)]))

    def remove_webhook(self, webhook_id: int, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            n = conn.execute(sa.update(webhooks).where(webhooks.c.id == webhook_id)
                             .values(active=False)).rowcount
            if n != 1:
                raise NotFound(f"no webhook {webhook_id}")
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def advance_webhook(self, webhook_id: int, old_cursor: int, new_cursor: int) -> bool:
        """Move the delivery cursor by compare-and-swap (two deliverers never double-send
        the same range silently: the loser sees False)."""
        def tx(conn: sa.Connection) -> bool:
            n = conn.execute(sa.update(webhooks).where(
                (webhooks.c.id == webhook_id) & (webhooks.c.cursor == old_cursor))
                .values(cursor=new_cursor)).rowcount
            return bool(n == 1)

        return bool(self._tx(tx, write=True))

    def log_delivery(self, webhook_id: int, audit_id: int, attempt: int, status: int | None,
                     error: str | None) -> None:
        self._tx(lambda conn: conn.execute(sa.insert(deliveries).values(
            webhook_id=webhook_id, audit_id=audit_id, attempt=attempt, at=now(),
            status=status, error=error)), write=True)

    def delivery_log(self, webhook_id: int | None = None) -> list[Delivery]:
        q = sa.select(deliveries).order_by(deliveries.c.id)
        if webhook_id is not None:
            q = q.where(deliveries.c.webhook_id == webhook_id)
        return list(self._tx(lambda conn: [
            Delivery(r.id, r.webhook_id, r.audit_id, r.attempt, utc(r.at), r.status, r.error)
            for r in conn.execute(q)]))
