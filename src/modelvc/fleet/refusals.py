"""Refusals recorded in the audit trail: a version the fleet refused outlives the process
that tried it.

When a switch aborts (a replica failed to stage, a canary regressed or earned no
verdict, the channel refused the move) the controller appends an audit entry
`deploy-refuse` with target `deployment:NAME`: the refused version, the stable one the
fleet went back to, and the channel's revision when it named the refused version (None
if it never did: `deploy rollout --to v9`). `modelvc deploy watch` reads these entries,
so a restarted watcher skips a version the fleet refused until the channel moves again
(its revision changes); the entry is also an event for webhooks (docs/events.md) and
shows in `modelvc audit --action deploy-refuse`. No table of its own: the audit trail is
durable, hash-chained and already shared by every process on the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..meta.api import AuditEntry, AuditRow
from ..meta.fleet import deployment_target

if TYPE_CHECKING:
    from ..records import Deployment
    from ..registry import Registry
    from ..registry.rollouts import Rollouts

log = logging.getLogger("modelvc.fleet")
ACTION = "deploy-refuse"


@dataclass(frozen=True)
class Refusal:
    deployment: str
    version_id: str
    number: int | None
    channel: str
    revision: int | None  # the channel's revision naming the refused version, if it did
    stable_id: str | None  # what the fleet kept serving
    reason: str
    at: datetime
    audit_id: int

    @classmethod
    def of(cls, row: AuditRow) -> Refusal | None:
        after: Any = row.after if isinstance(row.after, dict) else {}
        before: Any = row.before if isinstance(row.before, dict) else {}
        if not isinstance(after.get("version"), str):
            return None
        rev = after.get("channel_revision")
        return cls(str(after.get("deployment") or row.target.removeprefix("deployment:")),
                   after["version"], after.get("number"), str(after.get("channel") or ""),
                   int(rev) if rev is not None else None, before.get("version"),
                   row.reason, row.at, row.id)

    def as_json(self) -> dict[str, Any]:
        return {"version": self.number, "version_id": self.version_id,
                "channel": self.channel, "channel_revision": self.revision,
                "reason": self.reason, "at": self.at.isoformat(timespec="seconds"),
                "audit_id": self.audit_id}


def record(reg: Registry, d: Deployment, vid: str, revision: int | None, reason: str,
           actor: str) -> int | None:
    """Append the refusal of `vid` by deployment `d` (as it was before the switch); its
    audit id, or None if the trail could not be written (logged: the fleet is safe
    either way, only a restarted watcher would try the version again)."""
    meta = reg.rollouts
    try:
        number = meta.get_version(vid).number
        stable = meta.get_version(d.version_id).number if d.version_id else None
        entry = AuditEntry(
            actor=actor, action=ACTION, model=d.model, target=deployment_target(d.name),
            before={"version": d.version_id, "number": stable},
            after={"version": vid, "number": number, "deployment": d.name,
                   "channel": d.channel, "channel_revision": revision,
                   "strategy": d.strategy},
            reason=reason)
        audit_id = meta.append_audit(entry)
    except Exception as exc:
        log.warning("fleet: recording that %s refused %s: %s", d.name, vid[:12], exc)
        return None
    reg.events.after_mutation()  # webhooks hear of it (never raises)
    return audit_id


def since(meta: Rollouts, d: Deployment, after_id: int = 0) -> list[Refusal]:
    """Refusals of deployment `d` recorded after audit entry `after_id`, oldest first."""
    rows = meta.audit_entries(model=d.model, action=ACTION, target=deployment_target(d.name),
                              after_id=after_id)
    return [r for r in (Refusal.of(row) for row in rows) if r is not None]


def latest(meta: Rollouts, d: Deployment) -> Refusal | None:
    found = since(meta, d)
    return found[-1] if found else None
