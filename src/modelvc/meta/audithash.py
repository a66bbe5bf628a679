"""The audit chain's hash, without SQLAlchemy: MetaStore (governance.py) and the
SQLite writer of a commit (litewrite.py) both append with it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import blake3

if TYPE_CHECKING:
    from .api import AuditEntry, AuditRow

GENESIS = "0" * 64


def entry_hash(prev: str, at: datetime, e: AuditEntry | AuditRow) -> str:
    """BLAKE3 over the previous hash and the entry's canonical JSON."""
    from ..canonical import canonical_json

    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    body = {"at": at.isoformat(timespec="microseconds"), "actor": e.actor,
            "action": e.action, "model": e.model, "target": e.target, "before": e.before,
            "after": e.after, "reason": e.reason}
    return str(blake3.blake3(prev.encode() + canonical_json(body)).hexdigest())
