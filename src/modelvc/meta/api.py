"""Records the metadata layer hands to the registry (plain dataclasses, no ORM objects).

The implementation is `modelvc.meta.store.MetaStore` (SQLAlchemy 2 Core, SQLite or
PostgreSQL, schema managed by Alembic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RefKind = Literal["branch", "channel", "tag"]
ObjectKind = Literal["tensor", "blob", "chunk", "manifest"]


@dataclass(frozen=True)
class ModelRow:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class VersionRow:
    id: str  # 64-hex BLAKE3 of the manifest bytes
    model: str
    number: int  # v1, v2, ... per model, allocated inside the insert transaction
    created_at: datetime
    author: str
    message: str
    parents: list[str]  # version ids
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]  # git, data fingerprints, environment
    raw_size: int  # bytes of the files as checked out
    stored_size: int  # bytes newly stored by this version (objects it introduced)
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class RefRow:
    model: str
    name: str
    kind: RefKind
    version_id: str | None
    updated_at: datetime
    revision: int  # bumped on every move


@dataclass(frozen=True)
class RefMove:
    id: int
    model: str
    name: str
    kind: RefKind
    old: str | None
    new: str | None
    actor: str
    at: datetime
    action: str  # create | commit | promote | rollback | delete | force
    reason: str


@dataclass(frozen=True)
class ObjectRow:
    id: str
    kind: ObjectKind
    codec: str  # "zstd", "planes", "delta", "cast", "mixed", "raw", ...
    raw_size: int
    stored_size: int
    ref_id: str | None = None  # delta reference object, kept alive by gc while this lives


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


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    target: str
    before: Any
    after: Any
    reason: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class GateRun:
    id: int
    version_id: str
    channel: str
    policy_digest: str
    passed: bool
    report_id: str
    summary: dict[str, Any]
    actor: str
    at: datetime


@dataclass(frozen=True)
class SigningKey:
    id: str
    name: str
    public_key: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class Signature:
    version_id: str
    key_id: str
    signature: str
    signed_at: datetime
    signer: str


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    secret: str
    events: list[str]
    cursor: int
    created_at: datetime
    active: bool


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: int
    audit_id: int
    attempt: int
    at: datetime
    status: int | None
    error: str | None
