"""MetaStore: models, versions, refs and their history, objects, locks (SQL).

CONTRACT (the registry codes against exactly this; keep signatures stable):
every public method is one transaction; lower-layer errors are translated to
modelvc.errors with `raise ... from exc`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from .api import ModelRow, NewVersion, ObjectRow, RefKind, RefMove, RefRow, VersionRow

FORMAT_VERSION = 1


class MetaStore:
    @classmethod
    def create(cls, url: str) -> MetaStore:
        """Create the schema (alembic upgrade head) and record FORMAT_VERSION.
        AlreadyExists if the database already holds a registry."""
        raise NotImplementedError

    @classmethod
    def open(cls, url: str) -> MetaStore:
        """Open an existing registry database. RegistryNotFound if empty;
        UnsupportedFormat if its format version is newer than FORMAT_VERSION;
        runs pending alembic migrations of a known older schema."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- models
    def ensure_model(self, name: str) -> ModelRow:
        """Get or create (race-safe: two creators both get the same row)."""
        raise NotImplementedError

    def get_model(self, name: str) -> ModelRow:
        """ModelNotFound if absent."""
        raise NotImplementedError

    def list_models(self) -> list[ModelRow]:
        raise NotImplementedError

    # --- versions
    def insert_version(
        self,
        v: NewVersion,
        *,
        branch: str | None,
        expected_head: str | None,
        create_branch: bool,
        actor: str,
    ) -> VersionRow:
        """In ONE transaction: allocate the next number for the model (no max()+1
        outside the transaction: use a per-model counter row updated in the same
        transaction), insert the version row, its objects (insert-or-ignore) and
        version->object links, and if `branch` is given move it by compare-and-swap
        from `expected_head` to v.id (create it at v.id when `create_branch` and it
        does not exist; AlreadyExists/RefMoved if it appeared meanwhile), appending a
        RefMove(action="commit" or "create"). RefMoved if the CAS fails; then nothing
        of the version is recorded. AlreadyExists if v.id exists."""
        raise NotImplementedError

    def get_version(self, version_id: str) -> VersionRow:
        """RefNotFound if absent (deleted versions are returned with deleted_at set)."""
        raise NotImplementedError

    def version_by_number(self, model: str, number: int) -> VersionRow:
        raise NotImplementedError

    def versions_by_prefix(self, model: str | None, prefix: str) -> list[VersionRow]:
        """Versions whose id starts with `prefix` (hex), in any model if model is None."""
        raise NotImplementedError

    def list_versions(self, model: str, *, include_deleted: bool = False) -> list[VersionRow]:
        """Newest number first."""
        raise NotImplementedError

    def version_objects(self, version_id: str) -> list[ObjectRow]:
        raise NotImplementedError

    def versions_using(self, object_ids: Iterable[str]) -> dict[str, list[str]]:
        """object id -> ids of live versions that list it (directly)."""
        raise NotImplementedError

    def mark_deleted(self, version_id: str, *, actor: str, reason: str) -> None:
        """Tombstone a version: keeps its row (number never reused), drops its object
        links. Conflict if any branch/channel/tag points at it."""
        raise NotImplementedError

    # --- objects
    def get_objects(self, ids: Iterable[str]) -> dict[str, ObjectRow]:
        raise NotImplementedError

    def update_object(self, row: ObjectRow) -> None:
        """Rewrite codec/stored_size/ref_id after a re-base."""
        raise NotImplementedError

    def delete_objects(self, ids: Iterable[str]) -> None:
        raise NotImplementedError

    def live_object_ids(self) -> set[str]:
        """Objects linked to a live version, plus (transitively) their delta refs."""
        raise NotImplementedError

    def iter_objects(self) -> Iterator[ObjectRow]:
        raise NotImplementedError

    # --- refs
    def get_ref(self, model: str, name: str) -> RefRow:
        """RefNotFound if absent. Names are unique per model across kinds."""
        raise NotImplementedError

    def list_refs(self, model: str, kind: RefKind | None = None) -> list[RefRow]:
        raise NotImplementedError

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
    ) -> RefRow:
        """Compare-and-swap in one transaction, appending a RefMove. With create=True
        the ref must not exist (AlreadyExists); otherwise it must exist (RefNotFound)
        and point at `expected` (RefMoved). Tags never move once set (Conflict).
        new=None deletes the ref (its history stays)."""
        raise NotImplementedError

    def ref_history(self, model: str, name: str | None = None) -> list[RefMove]:
        """Oldest first."""
        raise NotImplementedError

    def ref_at(self, model: str, name: str, at: datetime) -> str | None:
        """What the ref pointed to at time `at` (None before it existed)."""
        raise NotImplementedError

