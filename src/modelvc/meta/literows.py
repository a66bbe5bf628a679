"""What meta/lite.py's LiteMeta reads with: its SELECTs and their rows decoded into the
records MetaStore returns (tests/meta/test_lite.py compares the two)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from .api import AuditRow, RefKind, RefMove, RefRow, VersionRow

MAX_NUMBER = 2**31 - 1  # as meta/versions.py: a larger number names no version

VERSION = ("SELECT v.id, m.name, v.number, v.created_at, v.author, v.message, v.parents, "
           "v.params, v.metrics, v.lineage, v.raw_size, v.stored_size, v.deleted_at "
           "FROM versions v JOIN models m ON v.model_id = m.id")
REF = ("SELECT m.name, r.name, r.kind, r.version_id, r.updated_at, r.revision "
       "FROM refs r JOIN models m ON r.model_id = m.id")
MOVE = ("SELECT r.id, m.name, r.name, r.kind, r.old, r.new, r.actor, r.at, r.action, "
        "r.reason FROM ref_moves r JOIN models m ON r.model_id = m.id")
AUDIT = ("SELECT id, at, actor, action, model, target, before, after, reason, prev_hash, "
         "hash FROM audit")


def now() -> datetime:
    return datetime.now(UTC)


def time_of(value: Any) -> datetime:
    """A UtcDateTime column as SQLAlchemy stores it on SQLite (UTC digits, naive)."""
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def json_of(value: Any) -> Any:
    return None if value is None else json.loads(value)


def version_of(r: tuple[Any, ...]) -> VersionRow:
    return VersionRow(
        id=r[0], model=r[1], number=r[2], created_at=time_of(r[3]), author=r[4],
        message=r[5], parents=list(json_of(r[6])), params=dict(json_of(r[7])),
        metrics=dict(json_of(r[8])), lineage=dict(json_of(r[9])), raw_size=r[10],
        stored_size=r[11], deleted_at=None if r[12] is None else time_of(r[12]),
    )


def ref_of(r: tuple[Any, ...]) -> RefRow:
    return RefRow(model=r[0], name=r[1], kind=cast(RefKind, r[2]), version_id=r[3],
                  updated_at=time_of(r[4]), revision=r[5])


def move_of(r: tuple[Any, ...]) -> RefMove:
    return RefMove(id=r[0], model=r[1], name=r[2], kind=cast(RefKind, r[3]), old=r[4],
                   new=r[5], actor=r[6], at=time_of(r[7]), action=r[8], reason=r[9])


def audit_of(r: tuple[Any, ...]) -> AuditRow:
    return AuditRow(r[0], time_of(r[1]), r[2], r[3], r[4], r[5], json_of(r[6]), json_of(r[7]),
                    r[8], r[9], r[10])
