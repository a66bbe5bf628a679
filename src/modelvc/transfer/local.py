"""Both ends of a transfer over a Registry in this process (also what the server runs),
on the registry's transfer verbs (modelvc.registry.exchange: verified receiving,
recording, ref moves). An interrupted transfer leaves only unreferenced objects; the
next one skips them.
Large objects arrive through upload sessions (sessions.py): a partial spool under the
registry's `tmp/` folder that the next transfer appends to, verified once complete.
"""

from __future__ import annotations

import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import (
    RESUME_HINT,
    AlreadyExists,
    Conflict,
    ModelNotFound,
    RefMoved,
    RefNotFound,
    StorageError,
)
from ..ingest.verify import unlink_quietly
from ..lineage import author as default_author
from ..meta.api import ObjectRow
from ..registry import Registry
from .protocol import ObjectEntry, RefInfo, VersionInfo
from .sessions import Received, Sessions

STREAM_CHUNK = 8 << 20
SESSION_TTL = 24 * 3600.0  # a partial received object older than this is deleted
LOCAL_SUBJECT = "local"  # whose sessions a registry's own transfers (pull, clone) write


class LocalEnd:
    """Source and Sink for one Registry. Thread-safe (the engine calls it from a pool)."""

    def __init__(self, reg: Registry, *, actor: str | None = None) -> None:
        self.reg = reg
        self.actor = actor or default_author()
        self._rows: OrderedDict[str, ObjectRow] = OrderedDict()  # verified, not yet recorded
        self._lock = threading.Lock()
        # Partial objects this registry is receiving (pull, clone, push into a folder).
        self.sessions = Sessions(reg.scratch("recv"), SESSION_TTL)

    # ---- source
    def models(self) -> list[str]:
        return self.reg.models()

    def refs(self, model: str) -> list[RefInfo]:
        try:
            rows = self.reg.refs(model)
        except ModelNotFound:
            return []
        return [RefInfo(model, r.name, r.kind, r.version_id) for r in rows]

    def ancestry(self, model: str, version_ids: list[str]) -> list[VersionInfo]:
        # Deleted versions are skipped (their objects may be gone; descendants still
        # stand alone), and so is history from elsewhere never recorded here.
        out = [VersionInfo(v.id, v.model, v.number, tuple(v.parents))
               for v in self.reg.live_ancestry(version_ids)]
        return sorted(out, key=lambda v: (v.model, v.number))

    def closure(self, model: str, version_ids: list[str]) -> list[ObjectEntry]:
        rows = self.reg.object_closure(version_ids)
        depth: dict[str, int] = {}

        def depth_of(oid: str) -> int:
            chain = [oid]
            while (ref := rows[chain[-1]].ref_id) is not None and ref not in depth:
                if ref in chain:
                    raise Conflict(f"object {oid[:12]} has a cyclic delta chain")
                chain.append(ref)
            below = rows[chain[-1]].ref_id
            base = -1 if below is None else depth[below]
            for i, c in enumerate(reversed(chain)):
                depth[c] = base + 1 + i
            return depth[oid]

        return [ObjectEntry(r.id, r.stored_size, depth_of(r.id)) for r in rows.values()]

    def read_pack(self, model: str, ids: list[str]) -> list[tuple[str, bytes]]:
        return [(oid, self.reg.stored_object(oid)) for oid in ids]

    def read_stream(self, model: str, oid: str, offset: int = 0) -> Iterator[bytes]:
        return self.reg.stored_chunks(oid, offset, STREAM_CHUNK)

    # ---- sink
    def has_versions(self, model: str, ids: list[str]) -> set[str]:
        return self.reg.known_versions(ids)

    def has_objects(self, model: str, ids: list[str]) -> set[str]:
        return self.reg.held_objects(ids)

    def write_pack(self, model: str, items: list[tuple[str, bytes]]) -> None:
        self._remember(self.reg.receive_objects(items))

    def stream_offset(self, model: str, oid: str, size: int) -> int | None:
        if self.reg.held_objects([oid]):
            return None
        return self.sessions.offset(LOCAL_SUBJECT, "object", oid, size)

    def write_stream(self, model: str, oid: str, chunks: Iterable[bytes], *,
                     offset: int = 0, size: int,
                     progress: Callable[[int], None] | None = None) -> None:
        """Append to this registry's own session for OID (see Sink.write_stream)."""
        pos = offset
        for c in chunks:
            if c:
                pos = self.sessions.append(LOCAL_SUBJECT, "object", oid, size, pos, c)
                if progress:
                    progress(pos)
        if pos != size:
            raise StorageError(f"the stream of {oid[:12]} ended at byte {pos} of {size}",
                               hint=RESUME_HINT, resumable=True)
        self.finish(self.sessions, LOCAL_SUBJECT, oid, size)

    def finish(self, sessions: Sessions, subject: str, oid: str, size: int
               ) -> Received | None:
        """Verify the complete session of OID and store it. A failed check
        (CorruptObject) discards the session (the object restarts at byte 0); a failed
        store keeps it for the next attempt (Sessions.complete)."""
        with sessions.complete(subject, "object", oid, size) as path:
            seen = sessions.seen(subject, "object", oid, size)
            self.write_file(oid, path)
        return seen

    def write_whole(self, model: str, oid: str, chunks: Iterable[bytes], size: int) -> None:
        """The whole object through a temp file (nothing to resume)."""
        with tempfile.NamedTemporaryFile(prefix="modelvc-recv-", delete=False) as tmp:
            for c in chunks:
                tmp.write(c)
        path = Path(tmp.name)
        try:
            self.write_file(oid, path)
        finally:
            unlink_quietly(path)

    def write_file(self, oid: str, path: Path) -> None:
        """Verify the stored object in `path` and put it under `oid`."""
        self._remember([self.reg.receive_file(oid, path)])

    def _remember(self, rows: list[ObjectRow]) -> None:
        with self._lock:
            for r in rows:
                self._rows[r.id] = r
            while len(self._rows) > 100_000:
                self._rows.popitem(last=False)

    def _row(self, oid: str, kind: str, raw_size: int | None) -> ObjectRow:
        """The row for an object present in the store but not in the database
        (RAW_SIZE: its decoded size, from the manifest)."""
        with self._lock:
            row = self._rows.get(oid)
        if row is None:  # by the object's own encoding, whatever the segment's kind
            row = self.reg.object_row(oid, raw_size)
        if kind == "manifest":
            row = ObjectRow(oid, "manifest", row.codec, row.raw_size, row.stored_size)
        return row

    def record_version(self, model: str, version_id: str, *, actor: str | None = None
                       ) -> int:
        return self.reg.record_received(model, version_id, actor=actor or self.actor,
                                        row_of=self._row)

    def update_ref(self, ref: RefInfo, *, expected: str | None, force: bool,
                   actor: str | None = None) -> str:
        """Tags never move; branches fast-forward unless forced; channels go through
        promote (gates and roles of the receiver apply)."""
        try:
            return self._update_ref(ref, expected=expected, force=force, actor=actor)
        except AlreadyExists as exc:  # created by another writer since we looked
            raise RefMoved(f"{ref.model}@{ref.name} was created meanwhile by another writer",
                           hint="run the transfer again") from exc

    def _update_ref(self, ref: RefInfo, *, expected: str | None, force: bool,
                    actor: str | None) -> str:
        assert ref.version_id is not None
        who = actor or self.actor
        try:
            cur = self.reg.ref(ref.model, ref.name)
        except (RefNotFound, ModelNotFound):
            cur = None
        if cur is not None and cur.version_id == ref.version_id:
            return "up to date"
        if cur is not None and cur.kind != ref.kind:
            raise Conflict(f"{ref.model}@{ref.name} is a {cur.kind} here, not a {ref.kind}")
        if cur is not None and ref.kind == "tag":
            raise Conflict(f"tag {ref.model}@{ref.name} points elsewhere here; tags never move")
        now = cur.version_id if cur else None
        if now != expected and not force:
            raise RefMoved(f"{ref.model}@{ref.name} moved during the transfer",
                           hint="run the transfer again")
        if ref.kind == "branch" and now and not force and not self.descends(ref.version_id, now):
            raise Conflict(f"{ref.model}@{ref.name}: not a fast-forward",
                           hint="pull and merge first, or pass --force to overwrite it")
        if ref.kind == "channel":
            # A transferred channel is mirrored: the source has it, so it is created here.
            self.reg.promote(f"{ref.model}@{ref.version_id}", ref.name, expected=now,
                             actor=who, reason="transfer", create=now is None)
            return "promoted"
        action = "force" if force and now and not self.descends(ref.version_id, now) else "push"
        self.reg.move_ref(ref.model, ref.name, ref.kind,  # type: ignore[arg-type]
                          expected=now, new=ref.version_id, actor=who, action=action,
                          reason="transfer", create=cur is None)
        return "created" if cur is None else ("forced" if action == "force" else "fast-forward")

    def descends(self, vid: str, ancestor: str) -> bool:
        return self.reg.descends(vid, ancestor)


_ENDS: weakref.WeakKeyDictionary[Registry, LocalEnd] = weakref.WeakKeyDictionary()
_ENDS_LOCK = threading.Lock()


def local_end(reg: Registry) -> LocalEnd:
    """One LocalEnd per registry, so rows verified by one request serve the next."""
    with _ENDS_LOCK:
        end = _ENDS.get(reg)
        if end is None:
            end = _ENDS[reg] = LocalEnd(reg)
        return end
