"""`MetaReads`: the metadata reads a one-shot command makes (resolving refs, versions,
ref history, the trust policy, the audit trail, gate runs) and the writes of a commit,
a ref move and a gate run (litewrite.py), which two classes implement: MetaStore (SQLAlchemy,
SQLite or PostgreSQL) and meta/lite.py's LiteMeta (plain sqlite3, no SQLAlchemy import).

mypy ties the three together (`_tied` below): both classes implement the Protocol, and
MetaStore's methods accept nothing the Protocol does not declare. So a parameter added to
one of them on MetaStore fails mypy until it is declared here, and then until LiteMeta
takes it too (a LiteMeta stands in for a MetaStore: a registry calling it with a
parameter only MetaStore knows would fail at run time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .api import (
    AuditEntry,
    AuditRow,
    ModelRow,
    NewVersion,
    RefKind,
    RefMove,
    RefRow,
    VersionRow,
)

if TYPE_CHECKING:
    from ..records import GateRun, Signature, Webhook
    from .lite import LiteMeta
    from .store import MetaStore


class MetaReads(Protocol):
    registry_id: str
    format_version: int
    # Set by the registry: called with (entry id, hash) of the audit head after a write.
    audit_seal: Callable[[int, str], None] | None

    def close(self) -> None: ...

    def will_write(self) -> None:
        """A write is coming (LiteMeta opens its MetaStore in the background)."""
        ...

    # ---- models
    def get_model(self, name: str) -> ModelRow: ...

    def list_models(self) -> list[ModelRow]: ...

    # ---- versions
    def get_version(self, version_id: str) -> VersionRow: ...

    def version_by_number(self, model: str, number: int) -> VersionRow: ...

    def versions_by_prefix(self, model: str | None, prefix: str) -> list[VersionRow]: ...

    def list_versions(self, model: str, *, include_deleted: bool = False
                      ) -> list[VersionRow]: ...

    # ---- refs
    def get_ref(self, model: str, name: str) -> RefRow: ...

    def change_token(self) -> object | None:
        """Cheap to read, and different after any commit since it was read; None when
        there is no cheap way to tell (then read what you need)."""
        ...

    def list_refs(self, model: str, kind: RefKind | None = None) -> list[RefRow]: ...

    def ref_history(self, model: str, name: str | None = None) -> list[RefMove]: ...

    # ---- trust (what every checkout reads)
    def current_policy(self) -> tuple[str, str] | None: ...

    def signatures(self, version_id: str) -> list[Signature]: ...

    def audit_entries(self, *, model: str | None = None, actor: str | None = None,
                      action: str | None = None, target: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      after_id: int = 0, limit: int | None = None,
                      newest: int | None = None, before_id: int | None = None
                      ) -> list[AuditRow]: ...

    # ---- what a commit writes, and reads after it (meta/litewrite.py on SQLite)
    def ensure_model(self, name: str) -> ModelRow: ...

    def insert_version(self, v: NewVersion, *, branch: str | None,
                       expected_head: str | None, create_branch: bool, actor: str,
                       audit: AuditEntry | None = None,
                       tags: Sequence[tuple[str, AuditEntry]] = ()) -> VersionRow: ...

    def list_webhooks(self, *, active_only: bool = True) -> list[Webhook]: ...

    # ---- what promote, rollback, tag and gate run write and read (litewrite.py)
    def set_ref(self, model: str, name: str, kind: RefKind, *, expected: str | None,
                new: str | None, actor: str, action: str, reason: str = "",
                create: bool = False, audit: AuditEntry | None = None) -> RefRow: ...

    def record_gate_run(self, *, version_id: str, channel: str, policy_digest: str,
                        passed: bool, report_id: str, summary: dict[str, Any], actor: str,
                        audit_entry: AuditEntry) -> GateRun: ...

    def gate_runs(self, version_id: str, channel: str | None = None) -> list[GateRun]: ...


if TYPE_CHECKING:
    def _tied(store: MetaStore, lite: LiteMeta, reads: MetaReads) -> list[MetaReads]:
        """Type-checked, never run. Each `f = store.X; f = reads.X` fails when
        MetaStore.X accepts a parameter MetaReads.X does not declare."""
        f0 = store.get_model
        f0 = reads.get_model
        f1 = store.list_models
        f1 = reads.list_models
        f2 = store.get_version
        f2 = reads.get_version
        f3 = store.version_by_number
        f3 = reads.version_by_number
        f4 = store.versions_by_prefix
        f4 = reads.versions_by_prefix
        f5 = store.list_versions
        f5 = reads.list_versions
        f6 = store.get_ref
        f6 = reads.get_ref
        f7 = store.list_refs
        f7 = reads.list_refs
        f8 = store.ref_history
        f8 = reads.ref_history
        f9 = store.current_policy
        f9 = reads.current_policy
        f10 = store.signatures
        f10 = reads.signatures
        f11 = store.audit_entries
        f11 = reads.audit_entries
        f12 = store.ensure_model
        f12 = reads.ensure_model
        f13 = store.insert_version
        f13 = reads.insert_version
        f14 = store.list_webhooks
        f14 = reads.list_webhooks
        f15 = store.set_ref
        f15 = reads.set_ref
        f16 = store.record_gate_run
        f16 = reads.record_gate_run
        f17 = store.gate_runs
        f17 = reads.gate_runs
        del f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17
        return [store, lite]
