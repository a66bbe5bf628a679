"""MetaStore's governance area: the hash-chained audit trail and gate runs (keys,
signatures and policies: keys.py; webhooks: webhooks.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from ..records import GateRun
from .api import AuditEntry, AuditRow
from .area import Area
from .audithash import GENESIS as GENESIS
from .audithash import entry_hash as entry_hash
from .rows import now, utc
from .schema import (
    audit,
    audit_head,
    gate_runs,
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


class AuditArea(Area):

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
