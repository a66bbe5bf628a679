"""Repacking: gc rewrites packs that are mostly dead, so a few live members stop
pinning their dead neighbours' bytes.

A pack is rewritten when its live members hold less than `threshold` (default half)
of its bytes. Their live members are copied, in runs of up to PACK_TARGET bytes, into
new packs (fresh names, durable writes), and only then is each old pack deleted (the
pack, then its tombstones), and a combined index (packindex.py) written. So at every
instant each live member is in at least one listed pack:
- a kill -9 before a new pack is durable leaves the old packs as they were (and at
  most a temp file, which gc's cleanup_temp removes);
- between a new pack's write and the old one's deletion both hold the member (a key
  held by several packs is read from any live one);
- a process whose pack map still names a deleted pack misses there, and its read
  refreshes the map from a listing, which shows the new pack (PackedStore._either);
  a committer deduplicating against a moved member is right too: it still exists.
A live member is copied unless a pack that *replaces* its pack holds it: each new
pack's index names the packs its members came from, so the next repack after a kill
between a write and its deletes drops the old copies instead of copying them again
(no duplicates left behind). Relying only on a replacing pack, which was written after
the pack it replaces, means reliance always points forward in time: two collectors
repacking one store at once (two registries on one bucket) cannot each drop a member
relying on the other's copy, and the last holder of a live member is only ever
deleted after copying it.
Which members are live is the pack map's view (tombstones). gc repacks after its
sweep, under the registry's exclusive lock, which also excludes `replace` (delete's
re-basing): a replaced object's old encoding is never copied past its tombstone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ObjectNotFound, UsageError
from .packs import PACK_TARGET, PACKS, Pack, PackMap

if TYPE_CHECKING:
    from .backend import Backend

log = logging.getLogger(__name__)
REPACK_BELOW = 0.5  # gc rewrites packs whose live members hold under half their bytes


@dataclass
class RepackReport:
    packs_rewritten: int = 0  # sparse packs deleted after their live members were copied
    packs_written: int = 0  # new packs holding those members
    bytes_copied: int = 0
    bytes_freed: int = 0  # sizes of the rewritten packs minus the live bytes copied


@dataclass(frozen=True)
class _Sparse:
    pack: Pack
    live: list[tuple[str, int, int]]  # key, offset, length, in pack order

    @property
    def live_bytes(self) -> int:
        return sum(n for _, _, n in self.live)


def sparse_packs(packs: list[Pack], threshold: float,
                 dead: frozenset[str] = frozenset()) -> list[_Sparse]:
    """Packs whose live members (not tombstoned, not in `dead`, not held by a pack that
    replaces this one) hold less than `threshold` of their bytes, oldest first. Packs
    whose members are all dead are left to the sweep (deleting the last frees them)."""
    holders: dict[str, list[Pack]] = {}
    for p in packs:
        for k in p.members:
            if k not in p.dead:
                holders.setdefault(k, []).append(p)
    out = []
    for p in sorted(packs, key=lambda p: (p.mtime, p.name)):
        alive = [(k, o, n) for k, (o, n) in p.members.items() if k not in p.dead and k not in dead]
        if not alive:
            continue
        live = sorted(((k, o, n) for k, o, n in alive
                       if not any(p.name in h.replaces for h in holders[k])), key=lambda m: m[1])
        s = _Sparse(p, live)
        if s.live_bytes < threshold * p.size:
            out.append(s)
    return out


class Repacking:
    """PackedStore's repack (a mixin: the pack map, the writes and the deletes it uses
    are PackedStore's own)."""

    if TYPE_CHECKING:
        backend: Backend
        _packs: PackMap
        _refresh_lock: threading.Lock

        def _refresh(self, since: float | None = None) -> None: ...
        def _drop_pack(self, name: str) -> None: ...
        def _remove_pack(self, name: str) -> None: ...
        def _combine(self) -> None: ...
        def _write_pack(self, items: list[tuple[str, bytes]],
                        replaces: Iterable[str] = ()) -> None: ...

    def repack(self, *, threshold: float = REPACK_BELOW, dry_run: bool = False,
               dead: frozenset[str] = frozenset(),
               progress: Callable[[int, int], None] | None = None) -> RepackReport:
        """Rewrite packs whose live members hold under `threshold` of their bytes (see
        the module doc). A dry run reports what would be rewritten, counting `dead`
        (keys about to be deleted) as dead."""
        if not 0.0 <= threshold <= 1.0:
            raise UsageError(f"invalid repack threshold {threshold}: give a fraction 0..1")
        self._refresh()
        todo = sparse_packs(self._packs.packs(), threshold, dead)
        report = RepackReport()
        if dry_run:
            for s in todo:
                report.packs_rewritten += 1
                report.bytes_copied += s.live_bytes
                report.bytes_freed += s.pack.size - s.live_bytes
            report.packs_written = -(-report.bytes_copied // PACK_TARGET)
            return report
        run: list[tuple[str, bytes]] = []
        sources: list[_Sparse] = []
        size = 0
        copied: set[str] = set()  # in a new pack already (a key live in two old packs)
        for i, s in enumerate(todo, 1):
            if run and size + s.live_bytes > PACK_TARGET:
                self._flush(run, sources, report)
                run, sources, size = [], [], 0
            if s.live:
                try:
                    data = bytes(self.backend.get(PACKS + s.pack.name))
                except ObjectNotFound:  # repacked or freed by another collector meanwhile
                    self._drop_pack(s.pack.name)
                    continue
                if len(data) != s.pack.size:  # never delete what was not copied whole
                    log.warning("not repacking %s in %s: %d bytes, listed %d", s.pack.name,
                                self, len(data), s.pack.size)
                    continue
                for key, off, n in s.live:
                    if key not in copied:
                        copied.add(key)
                        run.append((key, data[off:off + n]))
                        size += n
            sources.append(s)
            if progress is not None:
                progress(i, len(todo))
        self._flush(run, sources, report)
        if report.packs_rewritten:
            with self._refresh_lock:  # as a refresh writes one: never two at once
                self._combine()
        return report

    def _flush(self, run: list[tuple[str, bytes]], sources: list[_Sparse],
               report: RepackReport) -> None:
        """Write `run` as one durable pack, then delete the packs it was copied from."""
        if run:
            self._write_pack(run, replaces=[s.pack.name for s in sources])
            report.packs_written += 1
        for s in sources:
            self._remove_pack(s.pack.name)
            report.packs_rewritten += 1
            report.bytes_copied += s.live_bytes
            report.bytes_freed += s.pack.size - s.live_bytes
