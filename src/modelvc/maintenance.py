"""Keeping a registry healthy: verify, gc, delete (with delta re-basing), stats."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import Conflict, ModelvcError, UsageError
from .layout import Layout
from .meta.api import AuditEntry, ObjectRow, VersionRow
from .meta.store import MetaStore
from .objects.base import ObjectStore
from .storage import ObjectIO, _numel


@dataclass
class VerifyReport:
    checked: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)  # object id -> reason
    broken_versions: list[str] = field(default_factory=list)  # "model@vN (id)"

    @property
    def ok(self) -> bool:
        return not self.corrupt

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "corrupt": self.corrupt,
                "broken_versions": self.broken_versions}


def verify(meta: MetaStore, io: ObjectIO, *, progress: Callable[[int], None] | None = None
           ) -> VerifyReport:
    """Re-hash every recorded object; name corrupt ones and the live versions they break."""
    report = VerifyReport()
    rows = {r.id: r for r in meta.iter_objects()}
    for row in rows.values():
        try:
            if row.kind == "tensor":
                io.read_tensor(row.id, cached=False)
            else:
                io.read_blob(row.id)
        except ModelvcError as exc:
            report.corrupt[row.id] = str(exc).splitlines()[0]
        report.checked += 1
        if progress:
            progress(1)
    if not report.corrupt:
        return report
    # An object is broken if it, or any object in its delta chain, is corrupt.
    broken = set(report.corrupt)
    changed = True
    while changed:
        changed = False
        for r in rows.values():
            if r.id not in broken and r.ref_id in broken:
                broken.add(r.id)
                changed = True
    for oid, versions in meta.versions_using(broken).items():
        for vid in versions:
            v = meta.get_version(vid)
            label = f"{v.model}@v{v.number} ({v.id[:12]})"
            if label not in report.broken_versions:
                report.broken_versions.append(label)
        _ = oid
    report.broken_versions.sort()
    return report


@dataclass
class GcReport:
    dry_run: bool
    live: int = 0
    removable: list[str] = field(default_factory=list)
    removable_bytes: int = 0
    kept_young: int = 0  # unreferenced but inside the grace period
    kept_young_bytes: int = 0
    grace_seconds: float = 3600.0
    uploads_expired: int = 0  # upload-possession rows deleted (never in a dry run)

    def to_json(self) -> dict[str, Any]:
        out = {"dry_run": self.dry_run, "live": self.live, "removed" if not self.dry_run
               else "would_remove": len(self.removable), "bytes": self.removable_bytes,
               "kept_young": self.kept_young, "kept_young_bytes": self.kept_young_bytes,
               "grace_seconds": self.grace_seconds}
        if not self.dry_run:
            out["uploads_expired"] = self.uploads_expired
        return out


# How long a server's record of an upload proves possession (the server's default
# `upload_ttl_hours`); gc deletes older rows, which no longer prove anything there.
UPLOAD_TTL = timedelta(hours=24)


def check_grace(grace_seconds: float) -> None:
    """The grace period keeps a concurrent writer's not-yet-recorded objects alive."""
    if not grace_seconds >= 0:  # also refuses NaN
        raise UsageError(f"invalid grace period {grace_seconds}: give seconds >= 0",
                         hint="0 reclaims every unreferenced object now (only safe when no "
                              "commit or push is running); the default is 3600")


def gc(lay: Layout, meta: MetaStore, io: ObjectIO, *, dry_run: bool = True,
       grace_seconds: float = 3600.0, actor: str = "",
       upload_ttl: timedelta = UPLOAD_TTL,
       progress: Callable[[int, int], None] | None = None) -> GcReport:
    """Mark from every live version (and delta references), sweep the rest.

    The sweep holds the registry lock exclusively, so no commit is between writing
    its objects and recording them; objects younger than the grace period survive
    anyway (a writer on another host of a shared store). Unless a dry run, upload
    possession rows older than `upload_ttl` are deleted too (meta/uploads.py).
    `progress(done, total)`: objects looked at, then objects deleted."""
    tick = progress or (lambda done, total: None)
    check_grace(grace_seconds)
    report = GcReport(dry_run, grace_seconds=grace_seconds)
    with lay.lock(exclusive=True):
        live = meta.live_object_ids()
        report.live = len(live)
        cutoff = time.time() - grace_seconds
        dead_rows = [r.id for r in meta.iter_objects() if r.id not in live]
        listed = 0
        for info in io.store.list():
            listed += 1
            tick(listed, max(listed, len(live) + len(dead_rows)))
            if info.key in live:
                continue
            if info.mtime > cutoff:
                report.kept_young += 1
                report.kept_young_bytes += info.size
                continue
            report.removable.append(info.key)
            report.removable_bytes += info.size
        if not dry_run:
            removable = set(report.removable)
            # Reverse write order: forget the row, then the bytes.
            meta.delete_objects([r for r in dead_rows if r in removable])
            for i, key in enumerate(report.removable, 1):
                io.store.delete(key)
                tick(i, len(report.removable))
            cleanup = getattr(io.store, "cleanup_temp", None)
            if cleanup is not None:
                cleanup(grace_seconds)
            report.uploads_expired = meta.expire_uploads(datetime.now(UTC) - upload_ttl)
            meta.append_audit(AuditEntry(
                actor=actor, action="gc", target="objects",
                after={"removed": len(report.removable), "bytes": report.removable_bytes,
                       "uploads_expired": report.uploads_expired}))
    return report


def delete_version(lay: Layout, meta: MetaStore, io: ObjectIO, v: VersionRow, *, actor: str,
                   reason: str) -> int:
    """Tombstone a version; first re-encode live objects whose delta chain runs through
    objects only this version kept alive. Returns how many objects were re-based."""
    pointing = [r for r in meta.list_refs(v.model) if r.version_id == v.id]
    if pointing:
        names = ", ".join(f"{r.kind} {r.name}" for r in pointing)
        raise Conflict(f"{v.model}@v{v.number} is still the target of {names}",
                       hint="move or delete those refs first (tags are immutable)")
    with lay.lock(exclusive=True):
        mine = {r.id for r in meta.version_objects(v.id)}
        users = meta.versions_using(mine)
        dying = {oid for oid in mine if set(users.get(oid, [])) <= {v.id}}
        rows = {r.id: r for r in meta.iter_objects()}
        live = meta.live_object_ids() - dying
        rebased = 0
        for r in list(rows.values()):
            if r.id in live and r.id not in dying and r.ref_id in dying and r.kind == "tensor":
                _rebase(meta, io, r, rows, dying)
                rebased += 1
        meta.mark_deleted(v.id, actor=actor, reason=reason, audit=AuditEntry(
            actor=actor, action="delete", model=v.model, target=f"{v.model}@v{v.number}",
            before={"version": v.id}, after={"rebased": rebased}, reason=reason))
    return rebased


def _rebase(meta: MetaStore, io: ObjectIO, row: ObjectRow, rows: dict[str, ObjectRow],
            dying: set[str]) -> None:
    """Re-encode ROW against the first surviving object of its chain, or as a full copy."""
    h = io.header(row.id)
    new_ref = row.ref_id
    while new_ref is not None and new_ref in dying:
        nxt = rows.get(new_ref)
        new_ref = nxt.ref_id if nxt else None
    if new_ref is not None and io.usable_ref(new_ref, h.dtype, _numel(h.shape)) != new_ref:
        new_ref = None
    meta.update_object(io.reencode(row.id, new_ref))


def _closure(ids: set[str], rows: dict[str, ObjectRow]) -> set[str]:
    """IDS and every object their delta chains run through (what rebuilding them reads)."""
    out: set[str] = set()
    stack = list(ids)
    while stack:
        oid = stack.pop()
        if oid in out:
            continue
        out.add(oid)
        ref = rows[oid].ref_id if oid in rows else None
        if ref is not None:
            stack.append(ref)
    return out


def stats(meta: MetaStore, model: str | None = None, store: ObjectStore | None = None
          ) -> dict[str, Any]:
    """Raw vs stored bytes. A version's `stored` is what rebuilding it reads (its objects
    and their delta bases, shared or not), `new` what its commit wrote; a model's `stored`
    counts each object once, the total each live object once. For the whole registry,
    with `store`: `unreferenced` objects
    in the store that no live version needs (an interrupted commit's, a deleted version's),
    which `modelvc gc` reclaims."""
    models = [model] if model else [m.name for m in meta.list_models()]
    rows = {r.id: r for r in meta.iter_objects()}
    out: dict[str, Any] = {"models": {}}
    raw_total = 0
    for name in models:
        vs = sorted(meta.list_versions(name), key=lambda v: v.number)
        entries = []
        needed_by_model: set[str] = set()
        for v in vs:
            needed = _closure({o.id for o in meta.version_objects(v.id)}, rows)
            needed_by_model |= needed
            stored = sum(rows[o].stored_size for o in needed if o in rows)
            entries.append({"number": v.number, "id": v.id, "raw": v.raw_size,
                            "stored": stored, "new": v.stored_size,
                            "ratio": round(stored / v.raw_size, 4) if v.raw_size else 0})
        raw = sum(v.raw_size for v in vs)
        stored = sum(rows[o].stored_size for o in needed_by_model if o in rows)
        raw_total += raw
        out["models"][name] = {"versions": entries, "raw": raw, "stored": stored,
                               "ratio": round(stored / raw, 4) if raw else 0}
    if model is not None:
        m = out["models"][model]
        out.update(raw=m["raw"], stored=m["stored"], objects=None, ratio=m["ratio"])
        return out
    live = meta.live_object_ids()
    stored_total = sum(rows[o].stored_size for o in live if o in rows)
    out.update(raw=raw_total, stored=stored_total, objects=len(live),
               ratio=round(stored_total / raw_total, 4) if raw_total else 0)
    if store is not None:
        n = size = 0
        for info in store.list():
            if info.key not in live:
                n += 1
                size += info.size
        out["unreferenced"] = {"objects": n, "bytes": size}
    return out
