"""Deployments (desired state) and replicas (reported state) of a gateway fleet: a mixin
of MetaStore used by modelvc.fleet.

A deployment moves through a two-phase switch by compare-and-swap on its epoch:
`begin_stage` (pending version at epoch+1) -> `commit_flip` (the commit point: the
pending version becomes the served one at that epoch) or `abort_stage`. On PostgreSQL
every change also sends NOTIFY in the same transaction (delivered at commit), so
gateways and controllers wake within milliseconds; on SQLite they poll.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import AlreadyExists, Conflict, NotFound, UsageError
from ..records import Deployment, Replica
from .api import AuditEntry
from .area import Area
from .governance import append_audit
from .rows import now
from .schema import deployments, replicas

T = TypeVar("T")
DEPLOY_CHANNEL = "modelvc_deploy"  # NOTIFY channel: deployment changes
REPLICA_CHANNEL = "modelvc_replica"  # NOTIFY channel: replica reports
REF_CHANNEL = "modelvc_ref"  # NOTIFY channel: a ref moved (meta.refops)


def deployment_target(name: str) -> str:
    """The audit trail's target for deployment NAME."""
    return f"deployment:{name}"


def _deployment(r: Any) -> Deployment:
    m = dict(r._mapping)
    m["selector"], m["members"] = dict(m["selector"]), list(m["members"])
    m["rolled"] = list(m["rolled"]) if m["rolled"] is not None else None
    return Deployment(**m)


def _replica(r: Any) -> Replica:
    m = dict(r._mapping)
    m["labels"] = dict(m["labels"])
    return Replica(**m)


def notify(conn: sa.Connection, channel: str, payload: dict[str, Any]) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_notify(:c, :p)"),
                     {"c": channel, "p": json.dumps(payload, separators=(",", ":"))})


def _wake(conn: sa.Connection, d: Deployment) -> Deployment:
    notify(conn, DEPLOY_CHANNEL, {"d": d.name, "m": d.model, "e": d.epoch, "s": d.state,
                                  "v": d.version_id, "p": d.pending_id,
                                  "pe": d.pending_epoch, "r": d.rolled, "sh": d.share})
    return d


class DeploymentsArea(Area):

    def create_deployment(self, name: str, model: str, channel: str, strategy: str,
                          selector: dict[str, str], actor: str) -> Deployment:
        """AlreadyExists if a deployment has that name. Audited (deploy-create)."""

        def tx(conn: sa.Connection) -> Deployment:
            if conn.execute(sa.select(deployments.c.name).where(
                    deployments.c.name == name)).first() is not None:
                raise AlreadyExists(f"deployment {name!r} already exists")
            t = now()
            conn.execute(deployments.insert().values(
                name=name, model=model, channel=channel, strategy=strategy,
                selector=selector, epoch=0, members=[], state="new", reason="", created_at=t,
                updated_at=t))
            append_audit(conn, AuditEntry(
                actor=actor, action="deploy-create", target=deployment_target(name),
                model=model, after={"channel": channel, "strategy": strategy,
                                    "selector": selector}), t)
            return _get(conn, name)

        result: Deployment = self._tx(tx, write=True)
        return result

    def get_deployment(self, name: str) -> Deployment:
        """NotFound if absent."""
        result: Deployment = self._tx(lambda conn: _get(conn, name))
        return result

    def list_deployments(self, model: str | None = None) -> list[Deployment]:
        q = sa.select(deployments).order_by(deployments.c.name)
        if model is not None:
            q = q.where(deployments.c.model == model)
        result: list[Deployment] = self._tx(
            lambda conn: [_deployment(r) for r in conn.execute(q)])
        return result

    def delete_deployment(self, name: str, actor: str) -> None:
        """NotFound if absent. Audited (deploy-delete): what it followed and served."""

        def tx(conn: sa.Connection) -> None:
            d = _get(conn, name, lock=True)
            conn.execute(deployments.delete().where(deployments.c.name == name))
            append_audit(conn, AuditEntry(
                actor=actor, action="deploy-delete", target=deployment_target(name),
                model=d.model, before={"channel": d.channel, "version": d.version_id,
                                       "epoch": d.epoch, "state": d.state}))

        self._tx(tx, write=True)

    def begin_stage(self, name: str, epoch: int, version_id: str, members: list[str],
                    share: float | None = None) -> Deployment:
        """Phase one: stage `version_id` at epoch+1 on `members`. Conflict if the
        deployment is no longer at `epoch` or another switch is in progress. With
        `share`, a canary by share of traffic: `start_share` makes it live once every
        member staged it."""
        if share is not None and not 0 < share < 1:
            raise UsageError(f"a canary share is between 0 and 1, not {share}")
        return self._cas(name, epoch, {"pending_id": version_id, "pending_epoch": epoch + 1,
                                       "members": members, "state": "staging", "reason": "",
                                       "share": share},
                         pending=False)

    def begin_rolling(self, name: str, epoch: int, version_id: str, members: list[str]
                      ) -> Deployment:
        """Rolling strategy: `version_id` pending at epoch+1, no replica moved yet."""
        return self._cas(name, epoch, {"pending_id": version_id, "pending_epoch": epoch + 1,
                                       "members": members, "state": "rolling", "reason": "",
                                       "rolled": [], "share": None}, pending=False)

    def start_share(self, name: str, epoch: int) -> Deployment:
        """Canary by share of traffic, every member having staged the pending version:
        from now on each serves it to the row's `share` of request keys (the trial)."""

        def tx(conn: sa.Connection) -> Deployment:
            d = _get(conn, name, lock=True)
            if d.state != "staging" or d.epoch != epoch or d.share is None:
                raise Conflict(f"deployment {name!r} moved (epoch {d.epoch}, {d.state})")
            conn.execute(deployments.update().where(deployments.c.name == name).values(
                state="rolling", updated_at=now()))
            return _wake(conn, _get(conn, name))

        result: Deployment = self._tx(tx, write=True)
        return result

    def roll_batch(self, name: str, epoch: int, ids: list[str]) -> Deployment:
        """Tell replicas `ids` to switch to the pending version now (one batch)."""

        def tx(conn: sa.Connection) -> Deployment:
            d = _get(conn, name, lock=True)
            if d.state != "rolling" or d.epoch != epoch:
                raise Conflict(f"deployment {name!r} moved (epoch {d.epoch}, {d.state})")
            conn.execute(deployments.update().where(deployments.c.name == name).values(
                rolled=[*(d.rolled or []), *ids], updated_at=now()))
            return _wake(conn, _get(conn, name))

        result: Deployment = self._tx(tx, write=True)
        return result

    def stage_rest(self, name: str, epoch: int) -> Deployment:
        """Canary strategy, after the canaries (`rolled`) held: every other member stages
        the pending version, for one flip at the pending epoch the canaries already use."""

        def tx(conn: sa.Connection) -> Deployment:
            d = _get(conn, name, lock=True)
            if d.state != "rolling" or d.epoch != epoch:
                raise Conflict(f"deployment {name!r} moved (epoch {d.epoch}, {d.state})")
            conn.execute(deployments.update().where(deployments.c.name == name).values(
                state="staging", updated_at=now()))
            return _wake(conn, _get(conn, name))

        result: Deployment = self._tx(tx, write=True)
        return result

    def commit_flip(self, name: str, epoch: int, actor: str) -> Deployment:
        """Phase two (the commit point): the pending version is served from its epoch.
        Audited (deploy-flip) in the same transaction: what the fleet served, and from
        which epoch, is in the trail as the channel's moves are."""

        def tx(conn: sa.Connection) -> Deployment:
            d = _get(conn, name, lock=True)
            if d.state not in ("staging", "rolling") or d.pending_epoch != epoch + 1 or \
                    d.epoch != epoch:
                raise Conflict(f"deployment {name!r} moved (epoch {d.epoch}, {d.state})")
            prev = d.version_id if d.version_id != d.pending_id else d.previous_id
            conn.execute(deployments.update().where(deployments.c.name == name).values(
                version_id=d.pending_id, previous_id=prev, epoch=epoch + 1, pending_id=None,
                pending_epoch=None, rolled=None, share=None, state="flipped", reason="",
                updated_at=now()))
            append_audit(conn, AuditEntry(
                actor=actor, action="deploy-flip", target=deployment_target(name),
                model=d.model, before={"version": d.version_id, "epoch": epoch},
                after={"version": d.pending_id, "epoch": epoch + 1,
                       "channel": d.channel}))
            return _wake(conn, _get(conn, name))

        result: Deployment = self._tx(tx, write=True)
        return result

    def abort_stage(self, name: str, epoch: int, reason: str) -> Deployment:
        """No replica switches: the pending version is dropped everywhere. The served
        version is re-stamped at epoch+2: the aborted epoch+1 is never served by anyone
        (so a client that saw epoch+1 proves it was committed), and a failure report
        for it is never mistaken for one about a later attempt."""
        return self._cas(name, epoch, {"pending_id": None, "pending_epoch": None,
                                       "rolled": None, "share": None, "epoch": epoch + 2,
                                       "state": "aborted", "reason": reason}, pending=True)

    def set_deployment_state(self, name: str, epoch: int, state: str, reason: str
                             ) -> Deployment:
        """Record the outcome of verification (done | converging) at `epoch`."""
        return self._cas(name, epoch, {"state": state, "reason": reason}, pending=False)

    def _cas(self, name: str, epoch: int, values: dict[str, Any], *, pending: bool
             ) -> Deployment:
        def tx(conn: sa.Connection) -> Deployment:
            d = _get(conn, name, lock=True)
            if d.epoch != epoch or (d.pending_id is not None) != pending:
                raise Conflict(f"deployment {name!r} moved (epoch {d.epoch}, {d.state})",
                               hint="another controller is rolling it out; see deploy status")
            conn.execute(deployments.update().where(deployments.c.name == name).values(
                updated_at=now(), **values))
            return _wake(conn, _get(conn, name))

        result: Deployment = self._tx(tx, write=True)
        return result

    # --- replicas
    def report_replica(self, r: Replica) -> None:
        """Insert or update a replica's row (registration, heartbeat, stage/flip report)."""
        values = {k: v for k, v in vars(r).items()}
        values["heartbeat_at"] = now()
        values["started_at"] = r.started_at or values["heartbeat_at"]

        def tx(conn: sa.Connection) -> None:
            mod = sqlite if conn.dialect.name == "sqlite" else postgresql
            stmt = mod.insert(replicas).values(**values)
            keep = {"id", "model", "started_at"}
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["id", "model"],
                set_={k: stmt.excluded[k] for k in values if k not in keep}))
            notify(conn, REPLICA_CHANNEL, {"r": r.id, "m": r.model, "e": r.epoch,
                                           "s": r.state})

        self._tx(tx, write=True)

    def list_replicas(self, model: str | None = None) -> list[Replica]:
        q = sa.select(replicas).order_by(replicas.c.model, replicas.c.id)
        if model is not None:
            q = q.where(replicas.c.model == model)
        result: list[Replica] = self._tx(lambda conn: [_replica(r) for r in conn.execute(q)])
        return result

    def forget_replica(self, replica_id: str, model: str) -> None:
        self._tx(lambda conn: conn.execute(replicas.delete().where(
            replicas.c.id == replica_id, replicas.c.model == model)), write=True)


def _get(conn: sa.Connection, name: str, *, lock: bool = False) -> Deployment:
    q = sa.select(deployments).where(deployments.c.name == name)
    if lock and conn.dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already serializes
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no deployment named {name!r}", hint="modelvc deploy status lists them")
    return _deployment(row)
