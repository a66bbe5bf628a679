"""Build the api records from result rows (one place that knows column names), and
the model lookup every part of MetaStore shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from ..errors import ModelNotFound
from .api import ModelRow, ObjectKind, ObjectRow, RefKind, RefMove, RefRow, VersionRow
from .schema import models, objects, ref_moves, refs, versions

T = TypeVar("T")

# Keep IN (...) lists well under SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 500


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def utc(value: datetime) -> datetime:
    """Aware UTC (UtcDateTime already does this; kept for values from raw SQL)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


# refs and ref_moves have their own "name" column: label the model's.
MODEL_NAME = models.c.name.label("model_name")


def to_model(r: sa.Row[Any]) -> ModelRow:
    m = r._mapping
    return ModelRow(
        id=m[models.c.id], name=m[models.c.name], created_at=utc(m[models.c.created_at])
    )


def to_version(r: sa.Row[Any]) -> VersionRow:
    """Expects VERSION_COLUMNS selected from VERSION_FROM."""
    m = r._mapping
    deleted = m[versions.c.deleted_at]
    return VersionRow(
        id=m[versions.c.id],
        model=m["model_name"],
        number=m[versions.c.number],
        created_at=utc(m[versions.c.created_at]),
        author=m[versions.c.author],
        message=m[versions.c.message],
        parents=list(m[versions.c.parents]),
        params=dict(m[versions.c.params]),
        metrics=dict(m[versions.c.metrics]),
        lineage=dict(m[versions.c.lineage]),
        raw_size=m[versions.c.raw_size],
        stored_size=m[versions.c.stored_size],
        deleted_at=None if deleted is None else utc(deleted),
    )


def model_by_name(conn: sa.Connection, name: str) -> ModelRow:
    """ModelNotFound if absent."""
    row = conn.execute(sa.select(models).where(models.c.name == name)).first()
    if row is None:
        raise no_model(name)
    return to_model(row)


def no_model(name: str) -> ModelNotFound:
    return ModelNotFound(f"no model {name!r}", hint="list models with `modelvc models`")


VERSION_COLUMNS = (*versions.c, MODEL_NAME)
VERSION_FROM = versions.join(models, versions.c.model_id == models.c.id)


def to_ref(r: sa.Row[Any]) -> RefRow:
    m = r._mapping
    return RefRow(
        model=m["model_name"],
        name=m[refs.c.name],
        kind=cast(RefKind, m[refs.c.kind]),
        version_id=m[refs.c.version_id],
        updated_at=utc(m[refs.c.updated_at]),
        revision=m[refs.c.revision],
    )


REF_COLUMNS = (*refs.c, MODEL_NAME)
REF_FROM = refs.join(models, refs.c.model_id == models.c.id)


def to_move(r: sa.Row[Any]) -> RefMove:
    m = r._mapping
    return RefMove(
        id=m[ref_moves.c.id],
        model=m["model_name"],
        name=m[ref_moves.c.name],
        kind=cast(RefKind, m[ref_moves.c.kind]),
        old=m[ref_moves.c.old],
        new=m[ref_moves.c.new],
        actor=m[ref_moves.c.actor],
        at=utc(m[ref_moves.c.at]),
        action=m[ref_moves.c.action],
        reason=m[ref_moves.c.reason],
    )


MOVE_COLUMNS = (*ref_moves.c, MODEL_NAME)
MOVE_FROM = ref_moves.join(models, ref_moves.c.model_id == models.c.id)


def to_object(r: sa.Row[Any]) -> ObjectRow:
    m = r._mapping
    return ObjectRow(
        id=m[objects.c.id],
        kind=cast(ObjectKind, m[objects.c.kind]),
        codec=m[objects.c.codec],
        raw_size=m[objects.c.raw_size],
        stored_size=m[objects.c.stored_size],
        ref_id=m[objects.c.ref_id],
    )


def object_values(o: ObjectRow, created_at: datetime) -> dict[str, Any]:
    return {
        "id": o.id,
        "kind": o.kind,
        "codec": o.codec,
        "raw_size": o.raw_size,
        "stored_size": o.stored_size,
        "ref_id": o.ref_id,
        "created_at": created_at,
    }
