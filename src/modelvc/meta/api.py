"""Records the metadata layer hands to the registry (plain dataclasses, no ORM objects).

The implementation is `modelvc.meta.store.MetaStore` (SQLAlchemy 2 Core, SQLite or
PostgreSQL, schema managed by Alembic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..records import AuditRecord, Ref, RefKind, RefMove, Version

# The metadata layer hands out the public records of modelvc.api directly; these are
# their historical names inside the package. The other areas' records (gate runs,
# signatures, webhooks...) come from modelvc.records where they are used, so that a
# command on versions does not create them (records.AREA_RECORDS).
VersionRow = Version
RefRow = Ref
AuditRow = AuditRecord
__all__ = ["FORMAT_VERSION", "HEAD_REVISION", "AuditEntry", "AuditRecord", "AuditRow",
           "ModelRow", "NewVersion", "ObjectKind", "ObjectRow", "RefKind", "RefMove", "RefRow",
           "VersionRow"]

ObjectKind = Literal["tensor", "blob", "chunk", "manifest"]

# The database format this code reads and writes (bump when older modelvc releases
# could no longer read it), and the newest revision in migrations/versions (a test pins
# it to Alembic's head). Here, not in store.py / migrate.py, so that reading them
# imports no SQLAlchemy (meta/lite.py).
FORMAT_VERSION = 1
HEAD_REVISION = "0007"


@dataclass(frozen=True)
class ModelRow:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ObjectRow:
    id: str
    kind: ObjectKind
    codec: str  # "zstd", "planes", "delta", "cast", "mixed", "raw", ...
    raw_size: int
    stored_size: int
    ref_id: str | None = None  # delta reference object, kept alive by gc while this lives


# The codec of a row whose object `verify --repair` moved out of the store (its bytes
# failed their id): the next writer of those bytes stores them afresh and its row
# replaces this one (objectsql.link).
ASIDE = "aside"


@dataclass(frozen=True)
class NewVersion:
    """Everything a commit inserts in one transaction."""

    id: str
    model: str
    author: str
    message: str
    parents: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    raw_size: int
    stored_size: int
    created_at: datetime
    objects: list[ObjectRow] = field(default_factory=list)  # objects the manifest lists
    # Delta references of those objects: recorded (so gc follows ref_id) but not linked
    # to the version, so deleting the version that introduced them can re-base them.
    ref_objects: list[ObjectRow] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    """A mutation to append to the hash-chained audit trail."""

    actor: str
    action: str  # commit, tag, branch, promote, rollback, force, delete, gc, key, policy,
    # deploy-refuse, ...
    target: str  # e.g. "model@production", "model@v3", a key id
    model: str | None = None
    before: Any = None
    after: Any = None
    reason: str = ""


