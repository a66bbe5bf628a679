"""Record a version that arrived whole from another registry (push, pull, clone): its
manifest and objects are stored and verified already; its id, lineage and parents are
the sender's. No branch moves here: refs follow separately (refs.move_ref)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import Conflict, NotFound, UsageError
from ..manifest import Manifest
from ..meta.api import AuditEntry, NewVersion, ObjectRow

if TYPE_CHECKING:
    from ..meta.store import MetaStore
    from ..storage import ObjectIO

# (object id, kind: "manifest" | "tensor" | "blob", raw size when known) -> its row,
# for an object stored but not recorded here yet.
RowOf = Callable[[str, str, int | None], ObjectRow]


def record_received(meta: MetaStore, io: ObjectIO, model: str, version_id: str, *,
                    actor: str, row_of: RowOf) -> tuple[int, bool]:
    """The version's number here, and whether this call recorded it (False: it was
    recorded already, by an earlier or a concurrent transfer)."""
    try:
        return meta.get_version(version_id).number, False
    except NotFound:
        pass
    raw = io.read_blob(version_id)
    m = Manifest.from_bytes(raw, expect_id=version_id)
    if m.model != model:
        raise UsageError(f"version {version_id[:12]} belongs to {m.model}, not {model}")
    need: dict[str, tuple[str, int | None]] = {version_id: ("manifest", len(raw))}
    for f in m.files:
        for s in f.segments:
            need[s.id] = ("tensor" if s.tensor else "blob", s.size)
    known = meta.get_objects(need)
    rows = {oid: known.get(oid) or row_of(oid, *need[oid]) for oid in need}
    refs: dict[str, ObjectRow] = {}
    todo = {r.ref_id for r in rows.values() if r.ref_id}
    while todo:  # delta references: recorded, not linked (as a commit does)
        todo -= set(rows) | set(refs)
        got = meta.get_objects(todo)
        for oid in todo:
            refs[oid] = got.get(oid) or row_of(oid, "tensor", None)
        todo = {r.ref_id for r in refs.values() if r.ref_id} - set(refs) - set(rows)
    new_bytes = sum(r.stored_size for oid, r in rows.items() if oid not in known)
    meta.ensure_model(m.model)
    nv = NewVersion(
        id=version_id, model=m.model, author=m.author, message=m.message,
        parents=list(m.parents), params=m.params, metrics=m.metrics, lineage=m.lineage,
        raw_size=m.raw_size, stored_size=new_bytes,
        created_at=datetime.fromisoformat(m.created_at),
        objects=list(rows.values()), ref_objects=list(refs.values()),
    )  # fmt: skip
    audit = AuditEntry(actor=actor, action="push", model=m.model,
                       target=f"{m.model}@{version_id[:12]}", after={"version": version_id})
    try:
        row = meta.insert_version(nv, branch=None, expected_head=None, create_branch=False,
                                  actor=actor, audit=audit)
    except Conflict:  # recorded meanwhile by another transfer: same content, same id
        return meta.get_version(version_id).number, False
    return row.number, True
