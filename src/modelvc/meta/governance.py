"""Governance records: the hash-chained audit trail, gate runs, keys, signatures,
policies, webhooks and their delivery log (a mixin of MetaStore)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from ..errors import AlreadyExists, NotFound
from .api import AuditEntry, AuditRow, Delivery, GateRun, Signature, SigningKey, Webhook
from .audithash import GENESIS as GENESIS
from .audithash import entry_hash as entry_hash
from .rows import now, utc
from .schema import (
    audit,
    audit_head,
    deliveries,
    gate_runs,
    policies,
    signatures,
    signing_keys,
    webhooks,
)

T = TypeVar("T")
SEAL_SINK = "modelvc_audit_heads"  # conn.info key: heads appended in this transaction


def append_audit(conn: sa.Connection, e: AuditEntry, at: datetime | None = None) -> int:
    """Append inside the caller's transaction; the head row lock keeps the chain linear."""
    at = at or now()
    head = conn.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        .with_for_update()
    ).one()
    h = entry_hash(head.hash, at, e)
    new_id = conn.execute(
        sa.insert(audit).values(at=at, actor=e.actor, action=e.action, model=e.model,
                                target=e.target, before=e.before, after=e.after,
                                reason=e.reason, prev_hash=head.hash, hash=h)
        .returning(audit.c.id)
    ).scalar_one()
    conn.execute(sa.update(audit_head).where(audit_head.c.id == 1)
                 .values(seq=head.seq + 1, hash=h))
    sealed = conn.info.get(SEAL_SINK)
    if sealed is not None:  # MetaStore seals the head once the transaction commits
        sealed.append((int(new_id), h))
    return int(new_id)


def _audit_row(r: Any) -> AuditRow:
    m = r._mapping
    return AuditRow(m["id"], utc(m["at"]), m["actor"], m["action"], m["model"], m["target"],
                    m["before"], m["after"], m["reason"], m["prev_hash"], m["hash"])


class GovernanceMixin:
    _tx: Callable[..., Any]

    # --- audit
    def append_audit(self, entry: AuditEntry) -> int:
        return int(self._tx(lambda conn: append_audit(conn, entry), write=True))

    def audit_entries(self, *, model: str | None = None, actor: str | None = None,
                      action: str | None = None, target: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      after_id: int = 0, limit: int | None = None,
                      newest: int | None = None, before_id: int | None = None
                      ) -> list[AuditRow]:
        """Entries oldest first, ids in (after_id, before_id); `newest=N`: only the N
        newest that match."""
        q = sa.select(audit).where(audit.c.id > after_id).order_by(
            audit.c.id.desc() if newest else audit.c.id)
        if before_id is not None:
            q = q.where(audit.c.id < before_id)
        for col, val in ((audit.c.model, model), (audit.c.actor, actor),
                         (audit.c.action, action), (audit.c.target, target)):
            if val is not None:
                q = q.where(col == val)
        if since is not None:
            q = q.where(audit.c.at >= since)
        if until is not None:
            q = q.where(audit.c.at <= until)
        if limit is not None or newest:
            q = q.limit(newest or limit)
        rows = list(self._tx(lambda conn: [_audit_row(r) for r in conn.execute(q)]))
        return rows[::-1] if newest else rows

    def verify_audit(self) -> list[str]:
        """Problems found re-computing the chain (empty: intact)."""
        def tx(conn: sa.Connection) -> list[str]:
            problems: list[str] = []
            prev = GENESIS
            for r in conn.execute(sa.select(audit).order_by(audit.c.id)):
                row = _audit_row(r)
                if row.prev_hash != prev:
                    problems.append(f"entry {row.id}: previous-hash link broken "
                                    "(an entry was removed or reordered)")
                if entry_hash(row.prev_hash, row.at, row) != row.hash:
                    problems.append(f"entry {row.id} ({row.action} {row.target}) was modified")
                prev = row.hash
            head = conn.execute(sa.select(audit_head.c.hash)).scalar_one()
            if head != prev:
                problems.append("the newest entries were removed (head hash does not match)")
            return problems

        return list(self._tx(tx))

    # --- gate runs
    def record_gate_run(self, *, version_id: str, channel: str, policy_digest: str,
                        passed: bool, report_id: str, summary: dict[str, Any], actor: str,
                        audit_entry: AuditEntry) -> GateRun:
        def tx(conn: sa.Connection) -> GateRun:
            at = now()
            rid = conn.execute(sa.insert(gate_runs).values(
                version_id=version_id, channel=channel, policy_digest=policy_digest,
                passed=passed, report_id=report_id, summary=summary, actor=actor, at=at,
            ).returning(gate_runs.c.id)).scalar_one()
            append_audit(conn, audit_entry, at)
            return GateRun(int(rid), version_id, channel, policy_digest, passed, report_id,
                           summary, actor, at)

        run: GateRun = self._tx(tx, write=True)
        return run

    def gate_runs(self, version_id: str, channel: str | None = None) -> list[GateRun]:
        q = sa.select(gate_runs).where(gate_runs.c.version_id == version_id)
        if channel is not None:
            q = q.where(gate_runs.c.channel == channel)
        q = q.order_by(gate_runs.c.id)

        def rows(conn: sa.Connection) -> list[GateRun]:
            out = []
            for r in conn.execute(q):
                m = r._mapping
                out.append(GateRun(m["id"], m["version_id"], m["channel"], m["policy_digest"],
                                   bool(m["passed"]), m["report_id"], m["summary"], m["actor"],
                                   utc(m["at"])))
            return out

        return list(self._tx(rows))

    # --- keys and signatures
    def add_key(self, key: SigningKey, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            if conn.execute(sa.select(signing_keys.c.id).where(
                    (signing_keys.c.id == key.id) | (signing_keys.c.name == key.name))).first():
                raise AlreadyExists(f"a key named {key.name!r} or with id {key.id[:12]} exists")
            conn.execute(sa.insert(signing_keys).values(**vars(key)))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def list_keys(self) -> list[SigningKey]:
        def tx(conn: sa.Connection) -> list[SigningKey]:
            return [_key(r) for r in conn.execute(sa.select(signing_keys).order_by(
                signing_keys.c.name))]

        return list(self._tx(tx))

    def get_key(self, name_or_id: str) -> SigningKey:
        def tx(conn: sa.Connection) -> SigningKey:
            r = conn.execute(sa.select(signing_keys).where(
                (signing_keys.c.name == name_or_id) | (signing_keys.c.id == name_or_id))).first()
            if r is None:
                raise NotFound(f"no signing key {name_or_id!r}",
                               hint="list keys with `modelvc key list`")
            return _key(r)

        key: SigningKey = self._tx(tx)
        return key

    def revoke_key(self, key_id: str, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            conn.execute(sa.update(signing_keys).where(signing_keys.c.id == key_id)
                         .values(revoked_at=now()))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def add_signature(self, sig: Signature, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            conn.execute(sa.delete(signatures).where(
                (signatures.c.version_id == sig.version_id) & (signatures.c.key_id == sig.key_id)))
            conn.execute(sa.insert(signatures).values(**vars(sig)))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def signatures(self, version_id: str) -> list[Signature]:
        def tx(conn: sa.Connection) -> list[Signature]:
            q = sa.select(signatures).where(signatures.c.version_id == version_id)
            return [Signature(r.version_id, r.key_id, r.signature, utc(r.signed_at), r.signer)
                    for r in conn.execute(q)]

        return list(self._tx(tx))

    # --- policy
    def put_policy(self, digest: str, body: str, actor: str, audit_entry: AuditEntry) -> None:
        def tx(conn: sa.Connection) -> None:
            conn.execute(sa.insert(policies).values(digest=digest, body=body, applied_at=now(),
                                                    applied_by=actor))
            append_audit(conn, audit_entry)

        self._tx(tx, write=True)

    def current_policy(self) -> tuple[str, str] | None:
        """(digest, body) of the newest applied policy, or None."""
        def tx(conn: sa.Connection) -> tuple[str, str] | None:
            r = conn.execute(sa.select(policies.c.digest, policies.c.body)
                             .order_by(policies.c.id.desc()).limit(1)).first()
            return None if r is None else (r.digest, r.body)

        result: tuple[str, str] | None = self._tx(tx)
        return result

    # --- webhooks
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


def _key(r: Any) -> SigningKey:
    return SigningKey(r.id, r.name, r.public_key, utc(r.created_at), r.created_by,
                      utc(r.revoked_at) if r.revoked_at else None)
