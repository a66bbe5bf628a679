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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blake3

from .codec import dtype_info
from .codec.block import EXTRAP_MODES, STEP_MODES, decode_chain
from .errors import CorruptObject, ModelvcError
from .maintenance import VerifyReport, verify
from .meta.api import AuditEntry
from .meta.store import MetaStore
from .storage import ObjectIO

# what to do about a version the store cannot rebuild
HINT = ("commit its files again (from where they came from, e.g. a checkout made before "
        "the damage or the training output), then `modelvc delete` the broken version; or "
        "pull it from a remote that holds it intact")


@dataclass
class RepairReport:
    found: VerifyReport  # verify before the repair
    after: VerifyReport  # verify after it
    repaired: dict[str, str] = field(default_factory=dict)  # object id -> what was done
    unrepairable: dict[str, str] = field(default_factory=dict)  # object id -> why not

    @property
    def ok(self) -> bool:
        return self.after.ok

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "repaired": self.repaired, "unrepairable": self.unrepairable,
                "broken_versions": self.after.broken_versions,
                "hint": None if self.ok else HINT,
                "before": self.found.to_json(), "after": self.after.to_json()}


def repair(meta: MetaStore, io: ObjectIO, *, actor: str,
           progress: Callable[[str, int, int], None] | None = None) -> RepairReport:
    """Verify; re-encode whole every corrupt tensor object whose direct reference does
    not line up but whose bytes decode to its id; verify again. Audited (action
    "repair") when anything was rewritten. progress(phase, done, total)."""
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
    if out.repaired:
        meta.append_audit(AuditEntry(
            actor=actor, action="repair", target="objects",
            before={"corrupt": sorted(found.corrupt)},
            after={"repaired": sorted(out.repaired),
                   "unrepairable": sorted(out.unrepairable)},
            reason="verify --repair"))
        out.after = verify(meta, io, progress=tick("verify again"))
    return out


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
