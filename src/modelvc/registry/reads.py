"""The embedded registry's read and maintenance verbs, mixed into Registry (a module of
its own for size): checkout, load, diff, stats, verify, gc, the audit trail, delete."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..auditseal import AuditSeal
from ..errors import UsageError
from ..lineage import author as default_author
from ..meta.api import AuditRow, VersionRow
from .parts import RegistryParts

if TYPE_CHECKING:
    from ..checkout import CheckoutResult, TensorDict
    from ..diff import VersionDiff
    from ..maintenance import GcReport, VerifyReport
    from ..signing.trust import Trust
    from ..storage import ObjectIO

Version = VersionRow


class ReadOps(RegistryParts):
    _audit_seal: AuditSeal
    _blocks: ThreadPoolExecutor

    @cached_property
    def _io(self) -> ObjectIO:
        """Tensors and blobs on the object store (built on first use)."""
        from ..storage import ObjectIO

        io = ObjectIO(self._store, executor=self._blocks)
        if os.environ.get("MODELVC_FILE_CACHE", "1") != "0":
            from ..filecache import KnownFiles

            io.known = KnownFiles(self._layout.root / "cache" / "files.json")
        return io

    @cached_property
    def _trust(self) -> Trust:
        from ..signing.trust import Trust

        return Trust(self._meta, self._manifest)

    def checkout(self, ref: str, dest: str | Path, *, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> CheckoutResult:
        """Rebuild the version's files in DEST, bit-exact and verified."""
        v = self.resolve(ref)
        self._trust.check(v)
        m = self._manifest(v.id)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, m.raw_size)

        from ..checkout import checkout

        out = checkout(self._io, self._jobs, m, Path(dest), force=force, progress=tick,
                       label=f"{v.model}@v{v.number}")
        if self._io.known is not None:
            self._io.known.save()  # the files written: a later commit's references
        return out

    def load(self, ref: str, *, framework: str = "numpy", file: str | None = None) -> TensorDict:
        """Tensors of a version as a mapping, each decoded when first accessed."""
        v = self.resolve(ref)
        self._trust.check(v)
        from ..checkout import TensorDict

        return TensorDict(self._io, self._manifest(v.id), framework=framework, file=file,
                          label=f"{v.model}@v{v.number}")

    def diff(self, a: str, b: str, *, numeric: bool = True,
             progress: Callable[[int, int], None] | None = None) -> VersionDiff:
        va, vb = self.resolve(a), self.resolve(b)
        from ..diff import diff_manifests

        return diff_manifests(self._io, self._manifest(va.id), self._manifest(vb.id),
                              a_label=f"{va.model}@v{va.number}",
                              b_label=f"{vb.model}@v{vb.number}", numeric=numeric,
                              progress=progress, ids=(va.id, vb.id))

    def stats(self, model: str | None = None) -> dict[str, Any]:
        if model is not None:
            self._meta.get_model(model)
        from .. import maintenance

        return maintenance.stats(self._meta, model, None if model else self._store)

    def verify(self, *, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        from .. import maintenance

        return maintenance.verify(self._meta, self._io, progress=progress)

    def gc(self, *, dry_run: bool = True, grace_seconds: float = 3600.0,
           progress: Callable[[int, int], None] | None = None, actor: str | None = None,
           upload_ttl: timedelta | None = None) -> GcReport:
        """Mark and sweep. `upload_ttl` (the server's): how long upload records count
        as proof of holding an object; older ones are expired too."""
        from .. import maintenance

        extra = {"upload_ttl": upload_ttl} if upload_ttl is not None else {}
        return maintenance.gc(self._layout, self._meta, self._io, dry_run=dry_run,
                              grace_seconds=grace_seconds, actor=actor or default_author(),
                              progress=progress, **extra)

    def audit(self, *, model: str | None = None, channel: str | None = None,
              actor: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after: int | None = None, before: int | None = None,
              limit: int | None = None, newest: bool = False) -> list[AuditRow]:
        """The audit trail, oldest first, filtered and paged (see RegistryAPI.audit)."""
        if channel and not model:  # (was ignored: the whole trail came back)
            raise UsageError(f"a channel filter needs its model: channel {channel!r} of "
                             "which model?", hint="pass the model too (--model M "
                             f"--channel {channel}); channels belong to one model")
        target = f"{model}@{channel}" if model and channel else None
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be 1 or more, not {limit}",
                             hint="leave it out for every entry")
        return self._meta.audit_entries(model=model, target=target, actor=actor,
                                        action=action, since=since, until=until,
                                        after_id=after or 0, before_id=before,
                                        limit=None if newest else limit,
                                        newest=limit if newest else None)

    def verify_audit(self) -> list[str]:
        """Re-compute the audit hash chain and check it against the keyed checkpoints
        kept outside the database (auditseal.py); the problems found (empty: intact)."""
        problems = self._meta.verify_audit()
        hashes = {e.id: e.hash for e in self._meta.audit_entries()}
        return problems + self._audit_seal.check(hashes)

    def delete(self, ref: str, *, reason: str = "", actor: str | None = None) -> int:
        """Delete a version (its number is never reused); returns objects re-based."""
        v = self.resolve(ref)
        from .. import maintenance

        return maintenance.delete_version(self._layout, self._meta, self._io, v,
                                          actor=actor or default_author(), reason=reason)
