"""Which stored objects a principal may see.

Object ids are content hashes: knowing one must not be enough to read it. An object is
readable when a live version of a model the principal may read lists it, or when it is
a delta reference (objects.ref_id, transitively) of an object such a version lists.
Unreadable objects are answered exactly like absent ones, so existence does not leak.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import sqlalchemy as sa

from ..errors import ObjectNotFound
from ..meta.rows import chunks
from ..meta.schema import models, objects, version_objects, versions
from ..registry import Registry
from .auth import Principal, can
from .state import Possession

Usage = dict[str, set[str]]  # object id -> names of models whose live versions use it


def _direct(conn: sa.Connection, ids: list[str]) -> Usage:
    """Models of the live versions that list each object (indexed on object_id)."""
    out: Usage = {}
    for batch in chunks(ids):
        q = (sa.select(version_objects.c.object_id, models.c.name).distinct()
             .join(versions, versions.c.id == version_objects.c.version_id)
             .join(models, models.c.id == versions.c.model_id)
             .where(version_objects.c.object_id.in_(batch), versions.c.deleted_at.is_(None)))
        for oid, name in conn.execute(q):
            out.setdefault(oid, set()).add(name)
    return out


def _through_deltas(conn: sa.Connection, ids: list[str]) -> Usage:
    """Models of the live versions that list an object whose delta chain reaches each
    id: walk down objects.ref_id (indexed) from every id, keeping where it started. (The
    id itself needs no row: a reference recorded without one is still found.)"""
    out: Usage = {}
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


def _run(reg: Registry, fn: partial[Usage]) -> Usage:
    # A read-only query over the meta tables; MetaStore has no public hook for it.
    return reg.meta._tx(fn)


class Scope:
    """The readable / used split of a batch of object ids for one principal."""

    def __init__(self, reg: Registry, principal: Principal, ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(ids))
        self._can: dict[str, bool] = {}
        self._p = principal
        usage = _run(reg, partial(_direct, ids=self.ids))
        # Most objects are listed by a version directly; only the rest (delta
        # references, other models' objects) need the walk down the delta chains.
        rest = [i for i in self.ids if not self._any_readable(usage.get(i, ()))]
        for oid, names in (_run(reg, partial(_through_deltas, ids=rest)) if rest else {}).items():
            usage.setdefault(oid, set()).update(names)
        self.usage = usage

    def _any_readable(self, names: Iterable[str]) -> bool:
        for m in names:
            if m not in self._can:
                self._can[m] = can(self._p, "reader", m)
            if self._can[m]:
                return True
        return False

    def readable(self) -> list[str]:
        return [i for i in self.ids if self._any_readable(self.usage.get(i, ()))]

    def hidden(self) -> set[str]:
        """Used by live versions, none of them readable: must look absent. Objects no
        live version uses (an interrupted push's, awaiting its version) stay visible to
        writers so that a resumed push skips them."""
        return {i for i in self.ids
                if i in self.usage and not self._any_readable(self.usage[i])}


def require_access(reg: Registry, principal: Principal, possession: Possession,
                   ids: Iterable[str], what: str = "object") -> None:
    """ObjectNotFound unless every id is stored and, when another model's live version
    uses it, the principal may read it or has sent its bytes. An absent object and a
    hidden one get the same answer, so the refusal does not reveal which it was."""
    ids = list(dict.fromkeys(ids))
    held = reg.store.has_many(ids)
    hidden = set(possession.unproven(principal.name, Scope(reg, principal, held).hidden()))
    for oid in sorted(set(ids) - held | hidden):
        raise ObjectNotFound(f"{what} {oid} was not uploaded",
                             hint="upload the ids /uploads/missing (or objects/have) "
                                  "does not list, then retry")
