"""MetaStore: models, versions, refs and their history, objects, locks (SQL).

The methods live in parts: models, objects and refs here; versions in versions.py;
audit, gates, keys, policy, webhooks in governance.py; tokens and roles in auth.py;
upload possession in uploads.py; fleet desired state in fleet.py.

CONTRACT (the registry codes against exactly this; keep signatures stable):
every public method is one transaction; lower-layer errors are translated to
modelvc.errors with `raise ... from exc`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from typing import TypeVar

import sqlalchemy as sa

from ..errors import ObjectNotFound, RefNotFound
from . import engine as eng
from . import lifecycle, objectsql
from .api import FORMAT_VERSION, AuditEntry, ModelRow, ObjectRow, RefKind, RefMove, RefRow
from .auth import AuthMixin
from .fleet import FleetMixin
from .governance import SEAL_SINK, GovernanceMixin, append_audit
from .refops import check_target, insert_ignore, move_ref
from .rows import (
    MOVE_COLUMNS,
    MOVE_FROM,
    REF_COLUMNS,
    REF_FROM,
    model_by_name,
    now,
    to_model,
    to_move,
    to_ref,
)
from .schema import models, ref_moves, refs
from .uploads import UploadsMixin
from .versions import VersionsMixin

T = TypeVar("T")


class MetaStore(VersionsMixin, GovernanceMixin, AuthMixin, UploadsMixin, FleetMixin):
    def __init__(self, engine: sa.Engine, info: dict[str, str]) -> None:
        """Use create() or open()."""
        self._engine = engine
        self.registry_id = info.get("registry_id", "")
        self.format_version = int(info.get("format_version", FORMAT_VERSION))

    @classmethod
    def create(cls, url: str) -> MetaStore:
        """Create the schema (alembic upgrade head) and record FORMAT_VERSION.
        AlreadyExists if the database already holds a registry."""
        return cls(*lifecycle.create(url, FORMAT_VERSION))

    @classmethod
    def open(cls, url: str) -> MetaStore:
        """Open an existing registry database. RegistryNotFound if empty;
        UnsupportedFormat if its format version is newer than FORMAT_VERSION;
        runs pending alembic migrations of a known older schema."""
        return cls(*lifecycle.open_(url, FORMAT_VERSION))

    def close(self) -> None:
        self._engine.dispose()

    def will_write(self) -> None:
        """A write is coming: nothing to prepare here (meta/lite.py's LiteMeta opens its
        MetaStore in the background then)."""

    # Called with (entry id, hash) of the audit head after a write transaction that
    # appended to the chain has committed (auditseal.AuditSeal.seal; None: not sealed).
    audit_seal: Callable[[int, str], None] | None = None

    def _tx(self, fn: Callable[[sa.Connection], T], *, write: bool = False) -> T:
        seal = self.audit_seal
        if seal is None or not write:
            return eng.run(self._engine, fn, write=write)
        heads: list[tuple[int, str]] = []

        def sealed(conn: sa.Connection) -> T:
            heads.clear()  # a retried attempt starts over
            conn.info[SEAL_SINK] = heads
            try:
                return fn(conn)
            finally:
                conn.info.pop(SEAL_SINK, None)

        out = eng.run(self._engine, sealed, write=True)
        if heads:
            seal(*heads[-1])
        return out

    # --- models
    def ensure_model(self, name: str) -> ModelRow:
        """Get or create (race-safe: two creators both get the same row)."""

        def tx(conn: sa.Connection) -> ModelRow:
            conn.execute(
                insert_ignore(conn, models).values(name=name, created_at=now(), next_number=1)
            )
            return model_by_name(conn, name)

        return self._tx(tx, write=True)

    def get_model(self, name: str) -> ModelRow:
        """ModelNotFound if absent."""
        return self._tx(lambda conn: model_by_name(conn, name))

    def list_models(self) -> list[ModelRow]:
        q = sa.select(models).order_by(models.c.name)
        return self._tx(lambda conn: [to_model(r) for r in conn.execute(q)])

    # --- objects
    def get_objects(self, ids: Iterable[str]) -> dict[str, ObjectRow]:
        """Known objects among `ids` (unknown ids are absent)."""
        return self._tx(partial(objectsql.get, ids=list(ids)))

    def update_object(self, row: ObjectRow) -> None:
        """Rewrite codec/stored_size/ref_id after a re-base. ObjectNotFound if absent."""
        if self._tx(partial(objectsql.update, row=row), write=True) != 1:
            raise ObjectNotFound(f"no object {row.id} in the registry database")

    def delete_objects(self, ids: Iterable[str]) -> None:
        """Conflict if a version still links one of them (nothing is deleted then)."""
        self._tx(partial(objectsql.delete, ids=list(ids)), write=True)

    def object_users(self, ids: Iterable[str], *, through_deltas: bool = False
                     ) -> dict[str, set[str]]:
        """Object id -> names of the models whose live versions list it (or, with
        through_deltas, list an object whose delta chain reaches it)."""
        fn = objectsql.users_through_deltas if through_deltas else objectsql.users_direct
        return self._tx(partial(fn, ids=list(ids)))

    def live_object_ids(self) -> set[str]:
        """Objects linked to a live version, plus (transitively) their delta refs."""
        return self._tx(objectsql.live_ids)

    def iter_objects(self) -> Iterator[ObjectRow]:
        """Every object by id, in pages; each page is its own short read."""
        last = ""
        while True:
            page = self._tx(partial(objectsql.page, after=last))
            yield from page
            if len(page) < objectsql.PAGE:
                return
            last = page[-1].id

    # --- refs
    def get_ref(self, model: str, name: str) -> RefRow:
        """RefNotFound if absent. Names are unique per model across kinds."""

        def tx(conn: sa.Connection) -> RefRow:
            m = model_by_name(conn, model)
            row = conn.execute(
                sa.select(*REF_COLUMNS)
                .select_from(REF_FROM)
                .where(refs.c.model_id == m.id, refs.c.name == name)
            ).first()
            if row is None:
                raise RefNotFound(f"no ref {model}@{name}", hint=f"see `modelvc refs {model}`")
            return to_ref(row)

        return self._tx(tx)

    def list_refs(self, model: str, kind: RefKind | None = None) -> list[RefRow]:
        def tx(conn: sa.Connection) -> list[RefRow]:
            m = model_by_name(conn, model)
            q = (
                sa.select(*REF_COLUMNS)
                .select_from(REF_FROM)
                .where(refs.c.model_id == m.id)
                .order_by(refs.c.name)
            )
            if kind is not None:
                q = q.where(refs.c.kind == kind)
            return [to_ref(r) for r in conn.execute(q)]

        return self._tx(tx)

    def set_ref(
        self,
        model: str,
        name: str,
        kind: RefKind,
        *,
        expected: str | None,
        new: str | None,
        actor: str,
        action: str,
        reason: str = "",
        create: bool = False,
        audit: AuditEntry | None = None,
    ) -> RefRow:
        """Compare-and-swap in one transaction, appending a RefMove (and `audit`). With create=True
        the ref must not exist (AlreadyExists); otherwise it must exist (RefNotFound)
        and point at `expected` (RefMoved). Tags never move once set (Conflict).
        new=None deletes the ref (its history stays); tags may be deleted."""

        def tx(conn: sa.Connection) -> RefRow:
            m = model_by_name(conn, model)
            if new is not None:
                check_target(conn, m.id, model, new)
            at = now()
            row = move_ref(
                conn, model_id=m.id, model=model, name=name, kind=kind, expected=expected,
                new=new, actor=actor, action=action, reason=reason, create=create, at=at,
            )  # fmt: skip
            if audit is not None:
                append_audit(conn, audit, at)
            return row

        return self._tx(tx, write=True)

    def ref_history(self, model: str, name: str | None = None) -> list[RefMove]:
        """Oldest first."""

        def tx(conn: sa.Connection) -> list[RefMove]:
            m = model_by_name(conn, model)
            q = (
                sa.select(*MOVE_COLUMNS)
                .select_from(MOVE_FROM)
                .where(ref_moves.c.model_id == m.id)
                .order_by(ref_moves.c.at, ref_moves.c.id)
            )
            if name is not None:
                q = q.where(ref_moves.c.name == name)
            return [to_move(r) for r in conn.execute(q)]

        return self._tx(tx)

    def ref_at(self, model: str, name: str, at: datetime) -> str | None:
        """What the ref pointed to at time `at` (None before it existed)."""

        def tx(conn: sa.Connection) -> str | None:
            m = model_by_name(conn, model)
            q = (
                sa.select(ref_moves.c.new)
                .where(ref_moves.c.model_id == m.id, ref_moves.c.name == name)
                .where(ref_moves.c.at <= at)
                .order_by(ref_moves.c.at.desc(), ref_moves.c.id.desc())
                .limit(1)
            )
            new: str | None = conn.execute(q).scalar()
            return new

        return self._tx(tx)
