"""What modelvc.fleet's rollout controller asks of an embedded registry (`reg.rollouts`):
deployments, their replicas, and the steps of a switch, each a compare-and-swap on the
deployment's epoch (Conflict when another controller moved it), plus the audit entries
that record a refused version (fleet/refusals.py), and what a fleet gateway asks
(its deployments, its replica reports: serving/fleet_agent.py). Not part of the
Protocol: a controller and a fleet gateway run beside the registry's database
(`modelvc deploy`, `modelvc serve --fleet`), and the fleet sees nothing else of the
metadata."""

from __future__ import annotations

import builtins
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..meta.api import AuditEntry, AuditRow, RefRow, VersionRow
    from ..meta.store import MetaStore
    from ..records import Deployment, Replica


class Rollouts:
    def __init__(self, meta: MetaStore, url: str, *, owned: bool = False) -> None:
        self._meta, self._url, self._owned = meta, url, owned

    @classmethod
    def connect(cls, url: str) -> Rollouts:
        """A connection of its own to the registry database at `url` (a fleet gateway's:
        with network timeouts on PostgreSQL, so a database that hangs stalls its reports,
        never the gateway's registry reads). `close` it."""
        from ..meta.engine import with_net_timeouts
        from ..meta.store import MetaStore

        return cls(MetaStore.open(with_net_timeouts(url)), url, owned=True)

    @property
    def url(self) -> str:
        """The metadata database URL (a fleet LISTENs on it when it is PostgreSQL)."""
        return self._url

    def close(self) -> None:
        """Close a connection of its own (`connect`); the registry's is the registry's."""
        if self._owned:
            self._meta.close()

    def lease(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """Try to take deployment `name`'s controller lease, held while one rollout
        runs and dropped when its process dies (kill -9 too): whether this process
        holds it. A deployment mid-switch whose lease is free was interrupted."""
        return self._meta.lease(f"modelvc-deploy:{name}")

    # ---- reading
    def get_deployment(self, name: str) -> Deployment:
        return self._meta.get_deployment(name)

    def list_deployments(self, model: str | None = None) -> builtins.list[Deployment]:
        return self._meta.list_deployments(model)

    def list_replicas(self, model: str | None = None) -> builtins.list[Replica]:
        return self._meta.list_replicas(model)

    def get_ref(self, model: str, name: str) -> RefRow:
        return self._meta.get_ref(model, name)

    def get_version(self, version_id: str) -> VersionRow:
        return self._meta.get_version(version_id)

    # ---- a fleet gateway's reports
    def report_replica(self, r: Replica) -> None:
        self._meta.report_replica(r)

    # ---- the steps of a switch (docs/deploy.md)
    def begin_stage(self, name: str, epoch: int, version_id: str, members: list[str],
                    share: float | None = None) -> Deployment:
        return self._meta.begin_stage(name, epoch, version_id, members, share=share)

    def begin_rolling(self, name: str, epoch: int, version_id: str, members: list[str]
                      ) -> Deployment:
        return self._meta.begin_rolling(name, epoch, version_id, members)

    def start_share(self, name: str, epoch: int) -> Deployment:
        return self._meta.start_share(name, epoch)

    def roll_batch(self, name: str, epoch: int, ids: list[str]) -> Deployment:
        return self._meta.roll_batch(name, epoch, ids)

    def stage_rest(self, name: str, epoch: int) -> Deployment:
        return self._meta.stage_rest(name, epoch)

    def commit_flip(self, name: str, epoch: int, actor: str) -> Deployment:
        return self._meta.commit_flip(name, epoch, actor)

    def abort_stage(self, name: str, epoch: int, reason: str) -> Deployment:
        return self._meta.abort_stage(name, epoch, reason)

    def set_deployment_state(self, name: str, epoch: int, state: str, reason: str
                             ) -> Deployment:
        return self._meta.set_deployment_state(name, epoch, state, reason)

    # ---- the audit trail of refusals
    def append_audit(self, entry: AuditEntry) -> int:
        return self._meta.append_audit(entry)

    def audit_entries(self, *, model: str, action: str, target: str, after_id: int = 0
                      ) -> builtins.list[AuditRow]:
        return self._meta.audit_entries(model=model, action=action, target=target,
                                        after_id=after_id)
