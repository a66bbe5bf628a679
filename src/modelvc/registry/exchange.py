"""What moving versions between registries (push, pull, clone: modelvc.transfer, and the
server's /api/v1/transfer and /api/v1/objects routes) asks of an embedded registry:
the versions and objects to send, stored bytes, and receiving: verified objects, a
version recorded as the sender made it, a branch or tag moved. Public verbs of
`Registry` (a mixin), not of the Protocol; callers never touch its metadata or stores.

Receiving keeps DESIGN invariant 1: verified objects -> (the manifest is an object) ->
one transaction per version (row, number, object links) -> ref compare-and-swap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..ingest.refs import ancestors, descends, move_ref
from ..objects.base import flush, put_many
from .parts import RegistryParts

if TYPE_CHECKING:  # receiving decodes objects: numpy and the codecs load on first use
    from ..ingest.received import RowOf
    from ..meta.api import ObjectRow, RefKind, RefRow, VersionRow


class ExchangeOps(RegistryParts):

    # ---- sending
    def live_ancestry(self, version_ids: Iterable[str]) -> list[VersionRow]:
        """The versions and all their ancestors recorded here, deleted ones left out
        (their objects may be gone; descendants stand alone)."""
        return list(ancestors(self._meta, list(version_ids), live_only=True))

    def object_closure(self, version_ids: Iterable[str]) -> dict[str, ObjectRow]:
        """Rows of every object the versions list and of their delta references (a
        reference without a row is read from its own header)."""
        rows: dict[str, ObjectRow] = {}
        for vid in version_ids:
            for r in self._meta.version_objects(vid):
                rows[r.id] = r
        todo = {r.ref_id for r in rows.values() if r.ref_id and r.ref_id not in rows}
        while todo:
            found = self._meta.get_objects(todo)
            for oid in todo - set(found):
                found[oid] = self._io.row(oid)
            rows.update(found)
            todo = {r.ref_id for r in found.values() if r.ref_id and r.ref_id not in rows}
        return rows

    def delta_chain(self, oid: str) -> list[ObjectRow]:
        """Rows of the delta references of OID, nearest first (none for a blob)."""
        return self._io.chain_rows(oid)

    def stored_object(self, oid: str) -> bytes:
        """An object's stored (encoded) bytes, as a transfer sends them."""
        return self._store.get(oid)

    def stored_size(self, oid: str) -> int:
        return self._store.size(oid)

    def stored_chunks(self, oid: str, offset: int = 0, chunk: int = 8 << 20
                      ) -> Iterator[bytes]:
        """The stored bytes of OID from OFFSET, CHUNK bytes at a time."""
        size = self._store.size(oid)
        for off in range(offset, size, chunk):
            yield bytes(self._store.get_range(oid, off, min(chunk, size - off)))

    def known_versions(self, ids: Iterable[str]) -> set[str]:
        """Which of these version ids are recorded here (deleted or not)."""
        return self._meta.existing_versions(list(ids))

    def descends(self, version_id: str, ancestor: str) -> bool:
        """Whether ANCESTOR is VERSION_ID or one of its ancestors."""
        return descends(self._meta, version_id, ancestor)

    # ---- receiving
    def receive_objects(self, items: list[tuple[str, bytes]]) -> list[ObjectRow]:
        """Verify each object (decoded through its delta chain, which may arrive in the
        same batch) against its id, then store them all durably; their rows."""
        from ..ingest.verify import Overlay, verify

        view = Overlay(self._store)
        view.data.update(items)
        rows = [verify(view, oid) for oid, _ in items]
        with self._layout.lock(exclusive=False):
            put_many(self._store, items)  # on S3: one pack, not a PUT each
            flush(self._store, [oid for oid, _ in items])
        return rows

    def receive_file(self, oid: str, path: Path) -> ObjectRow:
        """Verify the stored object in PATH against OID and store it durably; its row."""
        from ..ingest.verify import Overlay, store_file, verify

        view = Overlay(self._store)
        view.files[oid] = path
        row = verify(view, oid)
        with self._layout.lock(exclusive=False):
            store_file(self._store, oid, path)
            flush(self._store, [oid])
        return row

    def object_row(self, oid: str, raw_size: int | None = None) -> ObjectRow:
        """The row of a stored object by its own encoding (RAW_SIZE: a blob's decoded
        size when known)."""
        return self._io.row(oid, raw_size)

    def record_received(self, model: str, version_id: str, *, actor: str,
                        row_of: RowOf) -> int:
        """Record a version whose manifest and objects are stored and verified here
        (ROW_OF: the rows of objects not recorded yet); its number here."""
        from ..ingest.received import record_received

        with self._layout.lock(exclusive=False):
            number, new = record_received(self._meta, self._io, model, version_id,
                                          actor=actor, row_of=row_of)
        if new:
            self.events.after_mutation()
        return number

    def move_ref(self, model: str, name: str, kind: RefKind, *, expected: str | None,
                 new: str | None, actor: str, action: str, reason: str = "",
                 create: bool = False) -> RefRow:
        """A compare-and-swap move of a branch or tag with its audit entry (no gates:
        channels move through `promote`). RefMoved if it does not hold EXPECTED."""
        row = move_ref(self._meta, model, name, kind, expected=expected, new=new,
                       actor=actor, action=action, reason=reason, create=create)
        self.events.after_mutation()
        return row
