"""Object rows and version->object links: the statements behind MetaStore's
object methods, each run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc

from ..errors import Conflict
from .api import ASIDE, ObjectRow
from .refops import insert_ignore
from .rows import chunks, object_values, to_object
from .schema import gate_runs, models, objects, version_objects, versions

PAGE = 1000


def link(conn: sa.Connection, version_id: str, objs: Sequence[ObjectRow], at: datetime,
         refs: Sequence[ObjectRow] = ()) -> None:
    """Insert-or-ignore the objects (and delta references) and link the objects to the version.

    Sorted by id so concurrent commits sharing objects lock them in one order
    (no deadlock on PostgreSQL).
    """
    linked = {o.id for o in objs}
    rows = sorted({o.id: o for o in (*refs, *objs)}.values(), key=lambda o: o.id)
    for batch in chunks(rows):
        conn.execute(insert_ignore(conn, objects), [object_values(o, at) for o in batch])
    replace_aside(conn, rows)
    unique = sorted((o for o in rows if o.id in linked), key=lambda o: o.id)
    for batch in chunks(unique):
        conn.execute(
            sa.insert(version_objects),
            [{"version_id": version_id, "object_id": o.id} for o in batch],
        )


def replace_aside(conn: sa.Connection, rows: Sequence[ObjectRow]) -> None:
    """Rows `verify --repair` marked moved aside take the new writer's encoding: it
    stored the bytes afresh (the store no longer had them). One indexed read a chunk."""
    by_id = {o.id: o for o in rows}
    for batch in chunks(list(by_id)):
        for (oid,) in conn.execute(sa.select(objects.c.id).where(
                objects.c.id.in_(batch), objects.c.codec == ASIDE)).all():
            o = by_id[oid]
            conn.execute(sa.update(objects).where(objects.c.id == oid).values(
                kind=o.kind, codec=o.codec, raw_size=o.raw_size,
                stored_size=o.stored_size, ref_id=o.ref_id))


def for_version(conn: sa.Connection, version_id: str) -> list[ObjectRow]:
    q = (
        sa.select(objects)
        .join(version_objects, version_objects.c.object_id == objects.c.id)
        .where(version_objects.c.version_id == version_id)
        .order_by(objects.c.id)
    )
    return [to_object(r) for r in conn.execute(q)]


def versions_using(conn: sa.Connection, ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for batch in chunks(sorted(set(ids))):
        q = (
            sa.select(version_objects.c.object_id, version_objects.c.version_id)
            .join(versions, versions.c.id == version_objects.c.version_id)
            .where(version_objects.c.object_id.in_(batch), versions.c.deleted_at.is_(None))
            .order_by(version_objects.c.object_id, version_objects.c.version_id)
        )
        for oid, vid in conn.execute(q):
            out.setdefault(oid, []).append(vid)
    return out


def get(conn: sa.Connection, ids: Sequence[str]) -> dict[str, ObjectRow]:
    out: dict[str, ObjectRow] = {}
    for batch in chunks(sorted(set(ids))):
        for r in conn.execute(sa.select(objects).where(objects.c.id.in_(batch))):
            out[r.id] = to_object(r)
    return out


def update(conn: sa.Connection, row: ObjectRow) -> int:
    """Rows changed (0 if the object is unknown)."""
    q = (
        sa.update(objects)
        .where(objects.c.id == row.id)
        .values(codec=row.codec, stored_size=row.stored_size, ref_id=row.ref_id)
    )
    return conn.execute(q).rowcount


def delete(conn: sa.Connection, ids: Sequence[str]) -> None:
    for batch in chunks(sorted(set(ids))):
        try:
            conn.execute(sa.delete(objects).where(objects.c.id.in_(batch)))
        except exc.IntegrityError as err:  # a version_objects link still points at it
            raise Conflict(
                "an object to delete is still used by a version",
                hint="delete only objects outside live_object_ids()",
            ) from err


def live_ids(conn: sa.Connection) -> set[str]:
    """Linked to a live version, plus their delta references, transitively."""
    live = (
        sa.select(version_objects.c.object_id.label("id"))
        .join(versions, versions.c.id == version_objects.c.version_id)
        .where(versions.c.deleted_at.is_(None))
        .cte("live", recursive=True)
    )
    # UNION (not UNION ALL) drops repeats, so even a ref_id cycle terminates.
    live = live.union(
        sa.select(objects.c.ref_id)
        .join(live, objects.c.id == live.c.id)
        .where(objects.c.ref_id.is_not(None))
    )
    ids = set(conn.execute(sa.select(live.c.id)).scalars())
    # Gate reports are blobs that no version lists; the gate_runs rows keep them alive.
    ids.update(conn.execute(sa.select(gate_runs.c.report_id)).scalars())
    return ids


def page(conn: sa.Connection, after: str) -> list[ObjectRow]:
    q = sa.select(objects).where(objects.c.id > after).order_by(objects.c.id).limit(PAGE)
    return [to_object(r) for r in conn.execute(q)]


# --- which models use an object (the server's object scope: server/scope.py)
def users_direct(conn: sa.Connection, ids: list[str]) -> dict[str, set[str]]:
    """Models of the live versions that list each object (indexed on object_id)."""
    out: dict[str, set[str]] = {}
    for batch in chunks(ids):
        q = (sa.select(version_objects.c.object_id, models.c.name).distinct()
             .join(versions, versions.c.id == version_objects.c.version_id)
             .join(models, models.c.id == versions.c.model_id)
             .where(version_objects.c.object_id.in_(batch), versions.c.deleted_at.is_(None)))
        for oid, name in conn.execute(q):
            out.setdefault(oid, set()).add(name)
    return out


def users_through_deltas(conn: sa.Connection, ids: list[str]) -> dict[str, set[str]]:
    """Models of the live versions that list an object whose delta chain reaches each
    id: walk down objects.ref_id (indexed) from every id, keeping where it started. (The
    id itself needs no row: a reference recorded without one is still found.)"""
    out: dict[str, set[str]] = {}
    for batch in chunks(ids):
        down = (sa.select(objects.c.ref_id.label("root"), objects.c.id.label("id"))
                .where(objects.c.ref_id.in_(batch)).cte("down", recursive=True))
        # UNION drops repeated (root, id) pairs, so a ref_id cycle still terminates.
        down = down.union(sa.select(down.c.root, objects.c.id)
                          .join(objects, objects.c.ref_id == down.c.id))
        q = (sa.select(down.c.root, models.c.name).distinct()
             .join(version_objects, version_objects.c.object_id == down.c.id)
             .join(versions, versions.c.id == version_objects.c.version_id)
             .join(models, models.c.id == versions.c.model_id)
             .where(versions.c.deleted_at.is_(None)))
        for oid, name in conn.execute(q):
            out.setdefault(oid, set()).add(name)
    return out
