"""Keeping a registry healthy: verify, gc, delete (with delta re-basing), stats."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .codec.header import MAGIC as TENSOR_MAGIC
from .errors import Conflict, CorruptObject, ModelvcError, UsageError
from .layout import Layout
from .manifest import Manifest
from .meta.api import ASIDE, AuditEntry, ObjectRow, RefRow, VersionRow
from .meta.store import MetaStore
from .names import DEFAULT_BRANCH
from .objects.base import ObjectStore
from .storage import ObjectIO, _numel

MOVED_ASIDE = ("moved aside by `verify --repair` (its stored bytes were damaged): "
               "committing its files again stores it afresh")


@dataclass
class VerifyReport:
    checked: int = 0  # objects decoded
    corrupt: dict[str, str] = field(default_factory=dict)  # object id -> reason
    broken_versions: list[str] = field(default_factory=list)  # "model@vN (id)"
    versions: int = 0  # live versions whose manifest and segments were read
    bytes: int = 0  # decoded bytes re-hashed
    # "model@vN (id)" -> objects its manifest lists (or the manifest) that have no
    # objects row: gc keeps only what rows record, so the version would lose them.
    unrecorded: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.unrecorded

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "corrupt": self.corrupt,
                "broken_versions": self.broken_versions, "versions": self.versions,
                "bytes": self.bytes,
                "unrecorded": self.unrecorded}


def verify(meta: MetaStore, io: ObjectIO, *,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Decode every object and re-hash it; name corrupt ones and the live versions they
    break. Progress: (decoded bytes, total bytes).

    Every live version's manifest is read and each segment decoded as a checkout
    reads it (by the segment's kind: a byte segment through read_blob, a tensor
    through iter_tensor, whatever encoding the object has) and its size checked
    against the manifest; then every other recorded object (delta references, objects
    of deleted versions). Tensors stream block by block through their chains,
    uncached, so memory is a few blocks whatever the model. A row whose delta
    reference disagrees with its object is reported too: gc marks references from rows."""
    report = VerifyReport()
    rows = {r.id: r for r in meta.iter_objects()}
    live = _LiveSegments.read(meta, io, report)
    reads = dict(live.reads)
    for oid, r in rows.items():  # references, manifests and objects of deleted versions
        if oid not in live.uses and (oid, r.kind == "tensor") not in reads:
            reads[(oid, r.kind == "tensor")] = r.raw_size
    total = sum(reads.values())
    refs: dict[str, str | None] = {oid: r.ref_id for oid, r in rows.items()}
    decoded: dict[str, int] = {}
    for oid, as_tensor in reads:
        if oid in report.corrupt:
            continue
        try:
            n = 0
            for part in io.iter_object(oid, as_tensor, cached=False, transient=True):
                n += len(part)
                report.bytes += len(part)
                if progress:
                    progress(report.bytes, total)
            decoded[oid] = n
            h = io.tensor_header(oid)
            if h is not None and bytes(io.store.get_range(oid, 0, 4)) != TENSOR_MAGIC:
                # Decoding never reads it, but a transfer tells kinds by it.
                raise CorruptObject("tensor object: its leading magic is damaged")
            ref = refs[oid] = h.ref if h is not None else None
            if ref is not None and oid in rows and ref not in _row_chain(rows, oid):
                raise CorruptObject(
                    f"its delta reference {ref[:12]} is not in the chain its row records "
                    "(gc marks references from rows and could remove it)")
        except ModelvcError as exc:
            report.corrupt[oid] = _first_line(exc)
            if oid in rows and rows[oid].codec == ASIDE and not io.store.has(oid):
                report.corrupt[oid] = MOVED_ASIDE
    report.checked = len(decoded.keys() | report.corrupt.keys() | live.manifests)
    for (oid, size), vids in live.claims.items():  # a manifest that misstates a size
        if oid in decoded and decoded[oid] != size:
            for vid in vids:
                report.corrupt.setdefault(vid, f"manifest: segment {oid[:12]} is {size} "
                                               f"bytes, its object decodes to {decoded[oid]}")
    # Listed by a live version but without an objects row: gc keeps only what rows
    # record, so such a version would lose them.
    for oid, labels in live.uses.items():
        if oid not in rows:
            for label in labels:
                report.unrecorded.setdefault(label, []).append(oid)
    for ids in report.unrecorded.values():
        ids.sort()
    if not report.corrupt:
        return report
    # An object is broken if it, or any object in its delta chain, is corrupt.
    broken = set(report.corrupt)
    changed = True
    while changed:
        changed = False
        for oid, ref in refs.items():
            if oid not in broken and ref in broken:
                broken.add(oid)
                changed = True
    report.broken_versions = sorted({label for oid in broken
                                     for label in live.uses.get(oid, ())})
    return report


@dataclass
class _LiveSegments:
    """What the live versions' manifests list."""

    uses: dict[str, set[str]] = field(default_factory=dict)  # object id -> version labels
    reads: dict[tuple[str, bool], int] = field(default_factory=dict)  # (id, as tensor) -> size
    claims: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # (id, size) -> vids
    manifests: set[str] = field(default_factory=set)  # read (verified) here

    @classmethod
    def read(cls, meta: MetaStore, io: ObjectIO, report: VerifyReport) -> _LiveSegments:
        out = cls()
        for model in meta.list_models():
            for v in meta.list_versions(model.name):
                label = f"{v.model}@v{v.number} ({v.id[:12]})"
                out.uses.setdefault(v.id, set()).add(label)
                out.manifests.add(v.id)
                report.versions += 1
                try:
                    m = Manifest.from_bytes(io.read_blob(v.id), expect_id=v.id)
                except ModelvcError as exc:
                    report.corrupt[v.id] = f"manifest: {_first_line(exc)}"
                    continue
                for f in m.files:
                    for seg in f.segments:
                        out.reads.setdefault((seg.id, seg.tensor is not None), seg.size)
                        out.claims.setdefault((seg.id, seg.size), set()).add(v.id)
                        out.uses.setdefault(seg.id, set()).add(label)
        return out


def _row_chain(rows: dict[str, ObjectRow], oid: str) -> set[str]:
    """The delta references gc keeps for OID: its row's, transitively."""
    out: set[str] = set()
    ref = rows[oid].ref_id
    while ref is not None and ref not in out:
        out.add(ref)
        nxt = rows.get(ref)
        ref = nxt.ref_id if nxt else None
    return out


def _first_line(exc: ModelvcError) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
    # Incomplete multipart uploads (S3) older than the grace period: aborted unless a
    # dry run; the bytes their parts hold.
    incomplete_uploads: int = 0
    incomplete_upload_bytes: int = 0
    # Packs rewritten because their live members held under half their bytes (the
    # live ones copied into `packs_written` new packs), and the bytes that freed.
    packs_rewritten: int = 0
    packs_written: int = 0
    repack_bytes_freed: int = 0

    def to_json(self) -> dict[str, Any]:
        out = {"dry_run": self.dry_run, "live": self.live, "removed" if not self.dry_run
               else "would_remove": len(self.removable), "bytes": self.removable_bytes,
               "kept_young": self.kept_young, "kept_young_bytes": self.kept_young_bytes,
               "grace_seconds": self.grace_seconds,
               "incomplete_uploads": self.incomplete_uploads,
               "incomplete_upload_bytes": self.incomplete_upload_bytes,
               "packs_rewritten": self.packs_rewritten, "packs_written": self.packs_written,
               "repack_bytes_freed": self.repack_bytes_freed}
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
    possession rows older than `upload_ttl` are deleted too (meta/uploads.py), and
    incomplete multipart uploads (S3) started before the grace period are aborted.
    Then packs the sweep left mostly dead are rewritten (objects/repack.py).
    `progress(done, total)`: objects looked at, then objects deleted."""
    tick = progress or (lambda done, total: None)
    check_grace(grace_seconds)
    report = GcReport(dry_run, grace_seconds=grace_seconds)
    with lay.lock(exclusive=True):
        live = meta.live_object_ids()
        report.live = len(live)
        cutoff = time.time() - grace_seconds
        dead = [r for r in meta.iter_objects() if r.id not in live]
        dead_rows = [r.id for r in dead]
        # Rows of objects `verify --repair` moved aside (no bytes left to sweep) that
        # no version needs any more: forgotten with the rest.
        aside = {r.id for r in dead if r.codec == ASIDE}
        listed = 0
        for info in io.store.list():
            aside.discard(info.key)
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
            meta.delete_objects([r for r in dead_rows if r in removable or r in aside])
            for i, key in enumerate(report.removable, 1):
                io.store.delete(key)
                io.forget(key)  # it may be stored again, encoded otherwise
                tick(i, len(report.removable))
            cleanup = getattr(io.store, "cleanup_temp", None)
            if cleanup is not None:
                cleanup(grace_seconds)
            report.uploads_expired = meta.expire_uploads(datetime.now(UTC) - upload_ttl)
        _repack(io.store, report, tick)
        _sweep_incomplete_uploads(io.store, report, cutoff)
        if not dry_run:
            meta.append_audit(AuditEntry(
                actor=actor, action="gc", target="objects",
                after={"removed": len(report.removable), "bytes": report.removable_bytes,
                       "uploads_expired": report.uploads_expired,
                       "incomplete_uploads": report.incomplete_uploads,
                       "packs_rewritten": report.packs_rewritten}))
    return report


def _repack(store: Any, report: GcReport, tick: Callable[[int, int], None]) -> None:
    """Rewrite packs the sweep left mostly dead (objects/repack.py). Still under the
    exclusive lock: no delete re-bases objects meanwhile. A dry run counts the
    objects it would remove as dead."""
    fn = getattr(store, "repack", None)
    if fn is None:
        return
    r = fn(dry_run=report.dry_run, progress=tick,
           dead=frozenset(report.removable) if report.dry_run else frozenset())
    report.packs_rewritten = r.packs_rewritten
    report.packs_written = r.packs_written
    report.repack_bytes_freed = r.bytes_freed


def _sweep_incomplete_uploads(store: Any, report: GcReport, cutoff: float) -> None:
    """Count (and unless a dry run, abort) multipart uploads started before CUTOFF:
    a failed push left them, and they hold storage no object listing shows."""
    listing = getattr(store, "incomplete_uploads", None)
    if listing is None:
        return
    for upload in listing():
        if upload.initiated > cutoff:  # perhaps a writer on another host, uploading now
            continue
        report.incomplete_uploads += 1
        report.incomplete_upload_bytes += store.upload_bytes(upload)
        if not report.dry_run:
            store.abort_upload(upload)


def delete_version(lay: Layout, meta: MetaStore, io: ObjectIO, v: VersionRow, *, actor: str,
                   reason: str) -> int:
    """Tombstone a version; first re-encode live objects whose delta chain runs through
    objects only this version kept alive. Returns how many objects were re-based."""
    pointing = [r for r in meta.list_refs(v.model) if r.version_id == v.id]
    if pointing:
        names = ", ".join(f"{r.kind} {r.name}" for r in pointing)
        raise Conflict(f"{v.model}@v{v.number} is still the target of {names}",
                       hint="first " + "; ".join(_unblock(v.model, r) for r in pointing))
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


def _unblock(model: str, ref: RefRow) -> str:
    """The command that moves REF off the version to delete."""
    if ref.kind == "tag":
        return f"`modelvc tag delete {model} {ref.name} -r REASON`"
    if ref.kind == "channel":
        return (f"`modelvc rollback {model} {ref.name}` (or promote another version "
                f"--to {ref.name})")
    if ref.name == DEFAULT_BRANCH:
        return (f"commit a newer version to {model}'s main branch (or `modelvc branch "
                f"delete {model} main -r REASON`)")
    return f"`modelvc branch delete {model} {ref.name}`"


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
