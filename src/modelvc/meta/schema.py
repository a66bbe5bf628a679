"""Tables of the metadata database (SQLAlchemy Core).

This module is the schema the code expects; the Alembic migrations in
`migrations/versions/` must produce exactly it (tests/meta/test_schema.py checks).
Change both together, and bump FORMAT_VERSION in store.py when old modelvc
releases could no longer read the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Fixed names so a migration and this module name constraints identically.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    SQLite has no time zone type: it stores the wall-clock digits and returns naive
    values, so convert to UTC before storing (string order == time order) and
    re-attach UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:  # naive values are taken to be UTC already
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


ID = sa.String(64)  # version ids: hex BLAKE3-256 of the manifest
OBJ_ID = sa.String(128)  # object ids: lowercase hex, room for longer digests
NAME = sa.String(255)

repo_info = sa.Table(
    "repo_info",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Next version number; bumped with UPDATE ... RETURNING inside the commit
    # transaction so concurrent commits serialise on this row.
    sa.Column("next_number", sa.Integer, nullable=False),
    sa.UniqueConstraint("name"),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("parents", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("lineage", sa.JSON, nullable=False),
    sa.Column("raw_size", sa.BigInteger, nullable=False),
    sa.Column("stored_size", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", UtcDateTime, nullable=True),
    sa.Column("deleted_by", sa.Text, nullable=True),
    sa.Column("delete_reason", sa.Text, nullable=True),
    sa.UniqueConstraint("model_id", "number"),
)

refs = sa.Table(
    "refs",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("name", NAME, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("version_id", ID, sa.ForeignKey("versions.id"), nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Index(None, "version_id"),  # "is this version still referenced?"
)

ref_moves = sa.Table(
    "ref_moves",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("name", NAME, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    # No foreign keys on old/new: the history outlives what it points at.
    sa.Column("old", ID, nullable=True),
    sa.Column("new", ID, nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index(None, "model_id", "name", "at"),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("id", OBJ_ID, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("codec", sa.String(32), nullable=False),
    sa.Column("raw_size", sa.BigInteger, nullable=False),
    sa.Column("stored_size", sa.BigInteger, nullable=False),
    # Delta reference; no foreign key so gc may delete in any order it has checked.
    sa.Column("ref_id", OBJ_ID, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index(None, "ref_id"),
)

version_objects = sa.Table(
    "version_objects",
    metadata,
    sa.Column("version_id", ID, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("object_id", OBJ_ID, sa.ForeignKey("objects.id"), primary_key=True),
    sa.Index(None, "object_id"),
)

# --- governance (migration 0002): audit trail, gate runs, keys, signatures, policy,
# webhooks. Additive: registries of format 1 without these tables still open.

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("model", NAME, nullable=True),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    # hash = BLAKE3(prev_hash + canonical entry): editing any entry breaks the chain.
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index(None, "model", "at"),
)

# One row (id=1): appends lock it, so the chain is linear under concurrent writers.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

gate_runs = sa.Table(
    "gate_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", ID, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("channel", NAME, nullable=False),
    sa.Column("policy_digest", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("report_id", OBJ_ID, nullable=False),  # the full report, a stored blob
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index(None, "version_id", "channel"),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the public key (DER)
    sa.Column("name", NAME, nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),  # PEM
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("name"),
)

signatures = sa.Table(
    "signatures",
    metadata,
    sa.Column("version_id", ID, sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("key_id", sa.String(64), sa.ForeignKey("signing_keys.id"), primary_key=True),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("signed_at", UtcDateTime, nullable=False),
    sa.Column("signer", sa.Text, nullable=False),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
    sa.Column("applied_by", sa.Text, nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # HMAC key: must be usable, so not hashed
    sa.Column("events", sa.JSON, nullable=False),  # audit actions it wants, [] = all
    sa.Column("cursor", sa.Integer, nullable=False),  # last audit id delivered
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.id"), nullable=False),
    sa.Column("audit_id", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status; None: no answer
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(None, "webhook_id", "audit_id"),
)

# ---- auth (server): API tokens and role bindings
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public id (list, revoke)
    sa.Column("name", NAME, nullable=False),
    sa.Column("subject", NAME, nullable=False),  # who the token acts as
    # sha256 of the whole token: tokens are 256-bit random, so a fast hash is enough
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),  # ["ROLE:PATTERN", ...] caps
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.UniqueConstraint("secret_hash"),
)

role_bindings = sa.Table(
    "role_bindings",
    metadata,
    sa.Column("subject", NAME, primary_key=True),
    sa.Column("scope", NAME, primary_key=True),  # model name, glob ("team-*") or "*"
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
)

# ---- fleet: deployments as desired state, replicas as reported state (modelvc.fleet)
deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("model", NAME, nullable=False),
    sa.Column("channel", NAME, nullable=False),
    sa.Column("strategy", sa.String(16), nullable=False),  # atomic | rolling | canary
    sa.Column("selector", sa.JSON, nullable=False),  # {label: value} a replica must have
    sa.Column("version_id", ID, nullable=True),  # what the fleet serves from `epoch` on
    sa.Column("previous_id", ID, nullable=True),  # kept warm for a one-step rollback
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("pending_id", ID, nullable=True),  # being staged (two-phase switch)
    sa.Column("pending_epoch", sa.Integer, nullable=True),
    sa.Column("members", sa.JSON, nullable=False),  # replica ids of the current rollout
    sa.Column("rolled", sa.JSON, nullable=True),  # rolling: ids already on pending_id
    sa.Column("share", sa.Float, nullable=True),  # canary by share: pending_id's share
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index(None, "model"),
)

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", NAME, primary_key=True),  # one gateway ...
    sa.Column("model", NAME, primary_key=True),  # ... serving one model
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
    sa.Column("serving_id", ID, nullable=True),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("warm_id", ID, nullable=True),  # the previous version, still loaded
    sa.Column("staged_id", ID, nullable=True),
    sa.Column("staged_epoch", sa.Integer, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

# ---- server: objects each subject proved to hold by sending their bytes (migration
# 0006). Shared by every server process on this database; rows older than the
# server's upload_ttl_hours prove nothing and are deleted (meta/uploads.py).
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("subject", NAME, primary_key=True),
    sa.Column("object_id", OBJ_ID, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),  # the latest upload of it by subject
    sa.Index(None, "at"),  # expiry deletes by age
)
