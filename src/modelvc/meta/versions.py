"""Versions: record (number, row, objects, branch CAS in one transaction), read,
tombstone (a mixin of MetaStore; same contract: every method is one transaction)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc

from ..errors import AlreadyExists, Conflict, RefNotFound, UsageError
from . import objectsql
from .api import AuditEntry, NewVersion, ObjectRow, VersionRow
from .area import Area
from .governance import append_audit
from .refops import move_ref
from .rows import (
    VERSION_COLUMNS,
    VERSION_FROM,
    chunks,
    model_by_name,
    no_model,
    now,
    to_version,
    utc,
)
from .schema import models, refs, version_objects, versions

T = TypeVar("T")
MAX_NUMBER = 2**31 - 1  # versions.number is a 32-bit INTEGER on PostgreSQL


class VersionsArea(Area):
    if TYPE_CHECKING:

        def _tx(self, fn: Callable[[sa.Connection], T], *, write: bool = False) -> T: ...

    def insert_version(
        self,
        v: NewVersion,
        *,
        branch: str | None,
        expected_head: str | None,
        create_branch: bool,
        actor: str,
        audit: AuditEntry | None = None,
        tags: Sequence[tuple[str, AuditEntry]] = (),
    ) -> VersionRow:
        """In ONE transaction: allocate the next number for the model (no max()+1
        outside the transaction: use a per-model counter row updated in the same
        transaction), insert the version row, its objects (insert-or-ignore) and
        version->object links, and if `branch` is given move it by compare-and-swap
        from `expected_head` to v.id (create it at v.id when `create_branch` and it
        does not exist; AlreadyExists/RefMoved if it appeared meanwhile), appending a
        RefMove(action="commit" or "create"). RefMoved if the CAS fails; then nothing
        of the version is recorded. AlreadyExists if v.id exists."""
        for field in ("parents", "params", "metrics", "lineage"):
            _check_json(field, getattr(v, field))

        def tx(conn: sa.Connection) -> VersionRow:
            if conn.execute(sa.select(versions.c.id).where(versions.c.id == v.id)).first():
                raise _exists(v.id)
            # The counter row is the per-model commit lock: concurrent commits to one
            # model queue here, and a rolled-back commit gives its number back.
            counter = conn.execute(
                sa.update(models)
                .where(models.c.name == v.model)
                .values(next_number=models.c.next_number + 1)
                .returning(models.c.id, models.c.next_number)
            ).first()
            if counter is None:
                raise no_model(v.model)
            model_id, number = counter.id, counter.next_number - 1
            try:
                conn.execute(sa.insert(versions).values(_version_values(v, model_id, number)))
            except exc.IntegrityError as err:
                raise _exists(v.id) from err
            t = now()
            objectsql.link(conn, v.id, v.objects, t, v.ref_objects)
            if audit is not None:
                append_audit(conn, audit, t)
            if branch is not None:
                move_ref(
                    conn, model_id=model_id, model=v.model, name=branch, kind="branch",
                    expected=expected_head, new=v.id, actor=actor, action="commit",
                    reason=v.message, create=False, create_if_missing=create_branch, at=t,
                    created_action="create",
                )  # fmt: skip
            for name, entry in tags:
                move_ref(conn, model_id=model_id, model=v.model, name=name, kind="tag",
                         expected=None, new=v.id, actor=actor, action="create", reason="",
                         create=True, at=t)
                append_audit(conn, entry, t)
            return _new_version_row(v, number)

        return self._tx(tx, write=True)

    def get_version(self, version_id: str) -> VersionRow:
        """RefNotFound if absent (deleted versions are returned with deleted_at set)."""
        q = sa.select(*VERSION_COLUMNS).select_from(VERSION_FROM)
        row = self._tx(lambda conn: conn.execute(q.where(versions.c.id == version_id)).first())
        if row is None:
            raise RefNotFound(f"no version {version_id}", hint="list versions with `modelvc log`")
        return to_version(row)

    def version_by_number(self, model: str, number: int) -> VersionRow:
        """ModelNotFound / RefNotFound if absent."""

        def tx(conn: sa.Connection) -> VersionRow:
            m = model_by_name(conn, model)
            # A number past the column's range (32-bit on PostgreSQL) names no version;
            # the database would refuse to compare it (OverflowError, DataError).
            row = conn.execute(
                sa.select(*VERSION_COLUMNS)
                .select_from(VERSION_FROM)
                .where(versions.c.model_id == m.id, versions.c.number == number)
            ).first() if 0 <= number <= MAX_NUMBER else None
            if row is None:
                raise RefNotFound(f"{model} has no v{number}", hint=f"run `modelvc log {model}`")
            return to_version(row)

        return self._tx(tx)

    def existing_versions(self, ids: Iterable[str]) -> set[str]:
        """The ids among `ids` that are recorded versions (deleted ones included);
        one query per 500 ids (transfer negotiation asks about whole histories)."""

        def tx(conn: sa.Connection) -> set[str]:
            out: set[str] = set()
            for batch in chunks(sorted(set(ids))):
                q = sa.select(versions.c.id).where(versions.c.id.in_(batch))
                out.update(conn.execute(q).scalars())
            return out

        return self._tx(tx)

    def versions_by_prefix(self, model: str | None, prefix: str) -> list[VersionRow]:
        """Versions whose id starts with `prefix` (hex), in any model if model is None."""
        q = (
            sa.select(*VERSION_COLUMNS)
            .select_from(VERSION_FROM)
            .where(versions.c.id.startswith(prefix.lower(), autoescape=True))
            .order_by(models.c.name, versions.c.number)
        )
        if model is not None:
            q = q.where(models.c.name == model)
        return self._tx(lambda conn: [to_version(r) for r in conn.execute(q)])

    def list_versions(self, model: str, *, include_deleted: bool = False) -> list[VersionRow]:
        """Newest number first. ModelNotFound if the model is absent."""

        def tx(conn: sa.Connection) -> list[VersionRow]:
            m = model_by_name(conn, model)
            q = (
                sa.select(*VERSION_COLUMNS)
                .select_from(VERSION_FROM)
                .where(versions.c.model_id == m.id)
                .order_by(versions.c.number.desc())
            )
            if not include_deleted:
                q = q.where(versions.c.deleted_at.is_(None))
            return [to_version(r) for r in conn.execute(q)]

        return self._tx(tx)

    def version_objects(self, version_id: str) -> list[ObjectRow]:
        """Objects linked to the version, by id (none once it is deleted)."""
        return self._tx(partial(objectsql.for_version, version_id=version_id))

    def versions_using(self, object_ids: Iterable[str]) -> dict[str, list[str]]:
        """object id -> ids of live versions that list it (directly).
        Objects no live version lists are absent from the result."""
        return self._tx(partial(objectsql.versions_using, ids=list(object_ids)))

    def mark_deleted(self, version_id: str, *, actor: str, reason: str,
                     audit: AuditEntry | None = None) -> None:
        """Tombstone a version: keeps its row (number never reused), drops its object
        links. Conflict if any branch/channel/tag points at it. Deleting a deleted
        version again does nothing."""

        def tx(conn: sa.Connection) -> None:
            # FOR UPDATE: a concurrent set_ref onto this version (FOR SHARE) waits.
            row = conn.execute(
                sa.select(versions.c.deleted_at)
                .where(versions.c.id == version_id)
                .with_for_update()
            ).first()
            if row is None:
                raise RefNotFound(f"no version {version_id}")
            if row.deleted_at is not None:
                return
            held = conn.execute(
                sa.select(refs.c.kind, refs.c.name).where(refs.c.version_id == version_id)
            ).all()
            if held:
                names = ", ".join(f"{k} {n}" for k, n in held)
                raise Conflict(
                    f"version {version_id} is still in use by {names}",
                    hint="move or delete those refs first",
                )
            conn.execute(
                sa.update(versions)
                .where(versions.c.id == version_id)
                .values(deleted_at=now(), deleted_by=actor, delete_reason=reason)
            )
            if audit is not None:
                append_audit(conn, audit)
            conn.execute(
                sa.delete(version_objects).where(version_objects.c.version_id == version_id)
            )

        self._tx(tx, write=True)


# --- helpers (module-level so the methods above stay short)


def _exists(version_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"version {version_id} already exists", hint="nothing to commit: it is recorded"
    )


def _check_json(field: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise UsageError(
            f"version {field} must be JSON-serialisable: {err}",
            hint="use str/int/float/bool/None, lists and dicts with string keys",
        ) from err


def _version_values(v: NewVersion, model_id: int, number: int) -> dict[str, Any]:
    return {
        "id": v.id, "model_id": model_id, "number": number, "created_at": v.created_at,
        "author": v.author, "message": v.message, "parents": list(v.parents),
        "params": v.params, "metrics": v.metrics, "lineage": v.lineage,
        "raw_size": v.raw_size, "stored_size": v.stored_size,
    }  # fmt: skip


def _new_version_row(v: NewVersion, number: int) -> VersionRow:
    return VersionRow(
        id=v.id, model=v.model, number=number, created_at=utc(v.created_at),
        author=v.author, message=v.message, parents=list(v.parents), params=dict(v.params),
        metrics=dict(v.metrics), lineage=dict(v.lineage), raw_size=v.raw_size,
        stored_size=v.stored_size,
    )  # fmt: skip
