"""The registry verbs the UI uses: a subset of `modelvc.api.RegistryAPI`.

Both the embedded `Registry` and the server's per-request guarded registry
(`server/ui.py`) satisfy it; nothing here reaches into metadata tables. `_is_subset`
makes mypy prove that every RegistryAPI is a UIRegistry, so the UI asks for nothing the
public interface lacks.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..diff import VersionDiff
from ..manifest import Manifest
from ..records import (
    AuditRecord,
    Deployment,
    FileStorage,
    GateReport,
    GateRun,
    PolicyInfo,
    Ref,
    RefMove,
    Replica,
    SignatureReport,
    Version,
)

if TYPE_CHECKING:
    from ..api import RegistryAPI


class UIGates(Protocol):
    def run(self, ref: str, *, channel: str, policy: str | None = None,
            data: str | None = None, actor: str | None = None) -> GateReport: ...
    def runs(self, ref: str, *, channel: str | None = None) -> builtins.list[GateRun]: ...
    def report(self, ref: str, *, run_id: int) -> dict[str, Any]: ...
    def policy(self) -> PolicyInfo | None: ...


class UISignatures(Protocol):
    def check(self, ref: str, *, keys: Sequence[str] | None = None) -> SignatureReport: ...


class UIDeployments(Protocol):
    def list(self, *, model: str | None = None) -> builtins.list[Deployment]: ...
    def replicas(self, *, model: str | None = None) -> builtins.list[Replica]: ...


class UIRegistry(Protocol):
    @property
    def gates(self) -> UIGates: ...
    @property
    def signatures(self) -> UISignatures: ...
    @property
    def deployments(self) -> UIDeployments: ...

    def models(self) -> list[str]: ...
    def versions(self, model: str) -> list[Version]: ...
    def resolve(self, ref: str, *, deleted: bool = False) -> Version: ...
    def manifest(self, ref: str) -> Manifest: ...
    def storage(self, ref: str) -> list[FileStorage]: ...
    def refs(self, model: str, *, kind: str | None = None) -> list[Ref]: ...
    def history(self, model: str, *, name: str | None = None) -> list[RefMove]: ...
    def at(self, model: str, name: str, *, when: datetime) -> Version | None: ...
    def diff(self, a: str, b: str, *, numeric: bool = True) -> VersionDiff: ...
    def audit(self, *, model: str | None = None, channel: str | None = None,
              actor: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after: int | None = None, before: int | None = None,
              limit: int | None = None, newest: bool = False) -> list[AuditRecord]: ...
    def verify_audit(self) -> list[str]: ...
    def create_branch(self, model: str, name: str, *, at: str | None = None,
                      actor: str | None = None) -> Ref: ...
    def tag(self, ref: str, name: str, *, actor: str | None = None) -> Ref: ...
    def promote(self, ref: str, channel: str, *, reason: str = "", actor: str | None = None,
                force: bool = False, create: bool = False) -> Ref: ...
    def rollback(self, model: str, channel: str, *, to: str | None = None, reason: str = "",
                 actor: str | None = None) -> Ref: ...


def _is_subset(reg: RegistryAPI) -> UIRegistry:
    return reg  # mypy: every RegistryAPI is a UIRegistry
