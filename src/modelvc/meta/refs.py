"""MetaStore's refs area: branches, channels and tags, their compare-and-swap moves
(`set_ref`, with the move recorded and an audit entry in the same transaction) and
their history."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..errors import RefNotFound
from .api import AuditEntry, RefKind, RefMove, RefRow
from .area import Area
from .governance import append_audit
from .refops import check_target, move_ref
from .rows import (
    MOVE_COLUMNS,
    MOVE_FROM,
    REF_COLUMNS,
    REF_FROM,
    model_by_name,
    now,
    to_move,
    to_ref,
)
from .schema import ref_moves, refs


class RefsArea(Area):
    def change_token(self) -> object | None:
        """No cheap change check here (pooled connections; PostgreSQL): callers read."""
        return None

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
