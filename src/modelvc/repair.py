"""`modelvc verify --repair`: re-encode objects an old writer left undecodable, from
bytes that still decode.

A writer before storage.presume_stored could encode a tensor as a delta against an
encoding of its reference that it only held in its batch, while the store kept another
encoding of the same bytes, stored first: a blob (a raw file's), or a tensor of another
dtype. The delta's header then names a reference that does not line up with its link
(verify: "object R is a blob, not a tensor object", or "has no block i that lines up").
Its bytes are still there: the reference is the bytes its id names, whatever their
encoding, and a 'delta'/'same' link needs only those. Such an object is decoded against
them, checked against its own id, and stored again whole (same id, same bytes; the
objects deltaed against it decode again too). An 'extrap' link also needs the step the
held reference had, which was never stored: that object cannot be rebuilt from the
store, and the report names the versions that need its files committed again.

An object whose own stored bytes are damaged (they no longer decode to its id; not one
that only deltas against a damaged reference) is moved aside: its stored bytes are
copied to `.modelvc/aside/<id>` (nothing is lost), it is deleted from the store and its
row marked (meta.api.ASIDE). Dedup by id then no longer finds it, so the next commit
(or receiver) of those bytes stores a good copy under the same id, and every version
naming it, the broken ones included, reads again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import blake3

from .atomic import atomic_write
from .codec import dtype_info
from .codec.block import EXTRAP_MODES, STEP_MODES, decode_chain
from .codec.header import MAGIC as TENSOR_MAGIC
from .errors import CorruptObject, ModelvcError
from .maintenance import VerifyReport, verify
from .meta.api import ASIDE, AuditEntry
from .meta.store import MetaStore
from .storage import ObjectIO

# what to do about a version the store cannot rebuild
HINT = ("commit its files again (from where they came from, e.g. a checkout made before "
        "the damage or the training output), to any model: objects moved aside are then "
        "stored afresh and every version naming them reads again (`modelvc verify` to "
        "check); a version whose files are gone: `modelvc delete` it")


@dataclass
class RepairReport:
    found: VerifyReport  # verify before the repair
    after: VerifyReport  # verify after it
    repaired: dict[str, str] = field(default_factory=dict)  # object id -> what was done
    unrepairable: dict[str, str] = field(default_factory=dict)  # object id -> why not
    # object id -> where its damaged stored bytes were kept when it left the store
    moved_aside: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.after.ok

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "repaired": self.repaired, "unrepairable": self.unrepairable,
                "moved_aside": self.moved_aside,
                "broken_versions": self.after.broken_versions,
                "hint": None if self.ok else HINT,
                "before": self.found.to_json(), "after": self.after.to_json()}


def repair(meta: MetaStore, io: ObjectIO, *, actor: str, aside: Path,
           progress: Callable[[str, int, int], None] | None = None) -> RepairReport:
    """Verify; re-encode whole every corrupt tensor object whose direct reference does
    not line up but whose bytes decode to its id; move every object whose own bytes
    are damaged into ASIDE (see the module's docstring); verify again. Audited (action
    "repair") when anything was rewritten or moved. progress(phase, done, total)."""
    tick = (lambda p: lambda d, t: progress(p, d, t)) if progress else (lambda p: None)
    found = verify(meta, io, progress=tick("verify"))
    out = RepairReport(found, found)
    todo = [oid for oid in found.corrupt if _is_tensor(io, oid)]
    for n, oid in enumerate(todo):
        if progress:
            progress("repair", n, len(todo))
        try:
            raw = salvage(io, oid)
        except ModelvcError as exc:
            out.unrepairable[oid] = str(exc).splitlines()[0]
            continue
        if raw is None:
            continue  # its reference lines up: damaged otherwise, verify says how
        row = io.reencode(oid, None, raw=raw)
        meta.update_object(row)
        out.repaired[oid] = (f"re-encoded whole ({len(raw)} bytes): its delta reference "
                             f"{found_ref(io, oid)} does not line up with its link")
    if progress and todo:
        progress("repair", len(todo), len(todo))
    for oid in found.corrupt:
        if oid not in out.repaired and _own_bytes_damaged(io, oid, found.corrupt):
            out.moved_aside[oid] = str(move_aside(meta, io, oid, aside))
    if out.repaired or out.moved_aside:
        meta.append_audit(AuditEntry(
            actor=actor, action="repair", target="objects",
            before={"corrupt": sorted(found.corrupt)},
            after={"repaired": sorted(out.repaired),
                   "unrepairable": sorted(out.unrepairable),
                   "moved_aside": sorted(out.moved_aside)},
            reason="verify --repair"))
        out.after = verify(meta, io, progress=tick("verify again"))
    return out


def _own_bytes_damaged(io: ObjectIO, oid: str, corrupt: dict[str, str]) -> bool:
    """Whether OID is in the store and its own bytes fail (not a delta whose reference
    is what is damaged: that one reads again once its reference is stored afresh; not
    a row or manifest that misstates it: its bytes are fine)."""
    if not io.store.has(oid):
        return False
    try:
        h = io.tensor_header(oid)
    except CorruptObject:
        return True  # its footer
    if h is not None and h.ref in corrupt:
        return False
    try:
        for _ in io.iter_object(oid, h is not None, cached=False, transient=True):
            pass
    except CorruptObject:
        return True
    return h is not None and bytes(io.store.get_range(oid, 0, 4)) != TENSOR_MAGIC


def move_aside(meta: MetaStore, io: ObjectIO, oid: str, aside: Path) -> Path:
    """Keep OID's stored bytes in ASIDE, then remove it from the store and mark its row,
    so a writer of its bytes stores them afresh (dedup no longer finds it)."""
    path = aside / oid
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, io.store.get(oid))
    row = meta.get_objects([oid]).get(oid)
    if row is not None:  # ref_id kept: gc keeps the old chain until a writer's replaces it
        meta.update_object(replace(row, codec=ASIDE))
    io.store.delete(oid)
    io.forget(oid)
    return path


def _is_tensor(io: ObjectIO, oid: str) -> bool:
    try:
        return io.tensor_header(oid) is not None
    except ModelvcError:
        return False


def found_ref(io: ObjectIO, oid: str) -> str:
    ref = io.header(oid).ref
    return ref[:12] if ref else "-"


def salvage(io: ObjectIO, oid: str) -> bytes | None:
    """The bytes of tensor object OID decoded against its reference's bytes (whatever
    that reference's encoding), checked against OID; None if the reference lines up
    (nothing to salvage here); CorruptObject, saying why, if they cannot be had."""
    h = io.header(oid)
    if h.ref is None:
        return None
    ref_h = io.tensor_header(h.ref)
    if ref_h is not None and ref_h.dtype == h.ref_dtype and (
            ref_h.block_elements == h.block_elements):
        return None
    if h.ref_dtype != h.dtype:
        raise CorruptObject(f"object {oid[:12]} is a cast of {h.ref[:12]}, whose encoding "
                            "does not line up: it cannot be rebuilt from the store")
    ref = io.read_blob(h.ref)  # the reference's bytes, verified against its id
    size = dtype_info(h.dtype).itemsize
    parts = []
    for i, b in enumerate(h.blocks):
        payload = io.store.get_range(oid, b.offset, b.length)
        if b.mode == "full":
            parts.append(bytes(decode_chain(h.dtype, b.elements, [], full=payload)))
            continue
        if b.mode in EXTRAP_MODES or b.mode not in STEP_MODES:
            raise CorruptObject(
                f"object {oid[:12]} block {i} is a '{b.mode}' link, which needs its "
                f"reference's own step; the reference {h.ref[:12]} was stored without it "
                "(another encoding of its bytes): it cannot be rebuilt from the store")
        lo = i * h.block_elements * size
        base = ref[lo : lo + b.elements * size]
        if len(base) != b.elements * size:
            raise CorruptObject(f"object {oid[:12]}: its reference {h.ref[:12]} is shorter "
                                "than its delta says")
        parts.append(bytes(decode_chain(h.dtype, b.elements, [(b.mode, payload)], base=base)))
    raw = b"".join(parts)
    if blake3.blake3(raw).hexdigest() != oid:
        raise CorruptObject(f"object {oid[:12]} does not decode to its id against the bytes "
                            f"of its reference {h.ref[:12]}: it cannot be rebuilt from the "
                            "store")
    return raw
