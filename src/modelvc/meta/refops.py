"""Compare-and-swap of one ref inside a caller's transaction (invariant 3).

The ref row is read FOR UPDATE (a row lock on PostgreSQL; on SQLite the
BEGIN IMMEDIATE write lock already serialises writers), the decision is made on
that locked value, and the UPDATE repeats the expected value in its WHERE clause
with a rowcount check, so a lost race can never overwrite a newer head.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import AlreadyExists, Conflict, RefMoved, RefNotFound
from .api import RefKind, RefRow
from .fleet import REF_CHANNEL, notify
from .schema import ref_moves, refs, versions


def insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect."""
    mod = sqlite if conn.dialect.name == "sqlite" else postgresql
    return mod.insert(table).on_conflict_do_nothing()


def check_target(conn: sa.Connection, model_id: int, model: str, version_id: str) -> None:
    """The version exists, belongs to `model` and is not deleted.

    FOR SHARE so that a concurrent mark_deleted (FOR UPDATE) waits for us or we for it.
    """
    row = conn.execute(
        sa.select(versions.c.model_id, versions.c.deleted_at)
        .where(versions.c.id == version_id)
        .with_for_update(read=True)
    ).first()
    if row is None:
        raise RefNotFound(
            f"no version {version_id}", hint="commit the version before pointing a ref at it"
        )
    if row.model_id != model_id:
        raise Conflict(
            f"version {version_id} belongs to another model, not {model!r}",
            hint="refs can only point at versions of their own model",
        )
    if row.deleted_at is not None:
        raise Conflict(f"version {version_id} is deleted", hint="point the ref at a live version")


def move_ref(
    conn: sa.Connection,
    *,
    model_id: int,
    model: str,
    name: str,
    kind: RefKind,
    expected: str | None,
    new: str | None,
    actor: str,
    action: str,
    reason: str,
    create: bool,
    create_if_missing: bool = False,
    at: datetime,
    created_action: str | None = None,
) -> RefRow:
    """Move (or create/delete) ref `name` by CAS and append the move to its history.

    create=True: the ref must not exist (AlreadyExists). create_if_missing=True:
    create it when absent, otherwise CAS like a normal move; the history then
    records `created_action` (if given) instead of `action`.
    """
    key = (refs.c.model_id == model_id) & (refs.c.name == name)
    cur = conn.execute(
        sa.select(refs.c.kind, refs.c.version_id, refs.c.revision).where(key).with_for_update()
    ).first()
    where = f"{model}@{name}"

    if cur is None:
        if not (create or create_if_missing):
            raise RefNotFound(f"no ref {where}", hint=f"create the {kind} first")
        # RETURNING tells whether the row was inserted (rowcount of INSERT is not
        # reliable across drivers).
        created = conn.execute(
            insert_ignore(conn, refs)
            .values(model_id=model_id, name=name, kind=kind, version_id=new, updated_at=at,
                    revision=1)
            .returning(refs.c.name)
        ).first()  # fmt: skip
        if created is None:  # another writer created it between our read and insert
            if create:
                raise AlreadyExists(f"{where} already exists", hint="pick another name")
            raise RefMoved(f"{where} was created by another writer", hint="re-read it and retry")
        action = created_action or action
        _log(conn, model_id, name, kind, None, new, actor, action, reason, at)
        return RefRow(model, name, kind, new, at, 1)

    if create:
        raise AlreadyExists(
            f"{where} already exists (a {cur.kind})",
            hint="tags are immutable: pick another tag name" if cur.kind == "tag" and kind == "tag"
            else "pick another name",
        )
    if cur.kind != kind:
        raise Conflict(f"{where} is a {cur.kind}, not a {kind}", hint=f"address it as a {cur.kind}")
    if cur.version_id != expected:
        raise RefMoved(
            f"{where} points at {cur.version_id}, not {expected}",
            hint="another writer moved it first: re-read the ref and retry",
        )
    if kind == "tag" and cur.version_id is not None and new is not None:
        raise Conflict(f"tag {where} is immutable", hint="delete the tag first or create a new one")

    cas = key & refs.c.version_id.is_not_distinct_from(expected)
    if new is None:
        done = conn.execute(sa.delete(refs).where(cas))
    else:
        done = conn.execute(
            sa.update(refs)
            .where(cas)
            .values(version_id=new, updated_at=at, revision=refs.c.revision + 1)
        )
    if done.rowcount != 1:  # cannot happen while we hold the row lock; fail safe
        raise RefMoved(f"{where} moved during the update", hint="re-read it and retry")
    _log(conn, model_id, name, kind, cur.version_id, new, actor, action, reason, at)
    return RefRow(model, name, kind, new, at, cur.revision + 1)


def _log(
    conn: sa.Connection,
    model_id: int,
    name: str,
    kind: str,
    old: str | None,
    new: str | None,
    actor: str,
    action: str,
    reason: str,
    at: datetime,
) -> None:
    # Wake fleet watchers (modelvc deploy watch) at commit; a no-op on SQLite.
    notify(conn, REF_CHANNEL, {"m": model_id, "n": name, "v": new})
    conn.execute(
        sa.insert(ref_moves).values(
            model_id=model_id,
            name=name,
            kind=kind,
            old=old,
            new=new,
            actor=actor,
            at=at,
            action=action,
            reason=reason,
        )
    )
