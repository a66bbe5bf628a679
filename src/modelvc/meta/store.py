"""MetaStore: the registry's metadata (SQL: SQLite or PostgreSQL), one class made of
areas, each a module with one responsibility:

    store.py     opening, transactions, models
    refs.py      branches, channels, tags: CAS moves and history     RefsArea
    versions.py  versions and their object lists                      VersionsArea
    objects.py   stored objects' rows, users, paging (gc, verify)     ObjectsArea
    governance.py  the hash-chained audit trail, gate runs            AuditArea
    keys.py      signing keys, signatures, applied policies           KeysArea
    webhooks.py  webhooks, delivery cursors and log                   WebhooksArea
    auth.py      API tokens and role bindings                         TokensArea
    uploads.py   upload possession (who sent which bytes)             UploadsArea
    fleet.py     deployments and replica reports                      DeploymentsArea

The reads a one-shot command makes are the MetaReads Protocol (reads.py), which
meta/lite.py implements without SQLAlchemy; mypy ties the two.

CONTRACT (the registry codes against exactly this; keep signatures stable):
every public method is one transaction; lower-layer errors are translated to
modelvc.errors with `raise ... from exc`. The schema is unchanged by this split:
existing registries open as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from .. import interrupts
from . import engine as eng
from . import leases, lifecycle
from .api import FORMAT_VERSION, ModelRow
from .auth import TokensArea
from .fleet import DeploymentsArea
from .governance import SEAL_SINK, AuditArea
from .keys import KeysArea
from .objects import ObjectsArea
from .refops import insert_ignore
from .refs import RefsArea
from .rows import (
    model_by_name,
    now,
    to_model,
)
from .schema import models
from .uploads import UploadsArea
from .versions import VersionsArea
from .webhooks import WebhooksArea

T = TypeVar("T")


class MetaStore(RefsArea, VersionsArea, ObjectsArea, AuditArea, KeysArea, WebhooksArea,
                TokensArea, UploadsArea, DeploymentsArea):
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

    def lease(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """Try to take lease `name` (meta/leases.py): whether this process holds it."""
        return leases.hold(self._engine, name)

    def will_write(self) -> None:
        """A write is coming: nothing to prepare here (meta/lite.py's LiteMeta opens its
        MetaStore in the background then)."""

    # Called with (entry id, hash) of the audit head after a write transaction that
    # appended to the chain has committed (auditseal.AuditSeal.seal; None: not sealed).
    audit_seal: Callable[[int, str], None] | None = None

    def _tx(self, fn: Callable[[sa.Connection], T], *, write: bool = False) -> T:
        with interrupts.deferred():  # a Ctrl-C waits for the commit and its seal
            return self._tx_now(fn, write)

    def _tx_now(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
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
