"""The write verbs besides `commit`, mixed into Registry (kept apart for size): amend
(a version from its parent plus a few files, no checkout: Hugging Face uploads), and the
two halves of a commit over HTTP (store_segment for each uploaded raw segment, then
commit_entries). All of them record through modelvc.ingest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import AlreadyExists, NotFound, RefMoved, UsageError
from ..lineage import author as default_author
from ..manifest import FileEntry, Manifest
from ..meta.api import VersionRow
from ..names import DEFAULT_BRANCH as DEFAULT_BRANCH
from ..names import check_name, check_ref_name
from .parts import RegistryParts

if TYPE_CHECKING:
    from pathlib import Path

Version = VersionRow


class WriteOps(RegistryParts):
    # Provided by Registry.
    _parent: Callable[[str, str], Version]
    manifest: Callable[[str], Manifest]

    def amend(self, model: str, *, branch: str | None = None, parent: str | None = None,
              add: Mapping[str, bytes | Path] | None = None, delete: Sequence[str] = (),
              delete_folders: Sequence[str] = (), message: str = "",
              author: str | None = None) -> Version:
        """A new version of MODEL on BRANCH: the parent's files (the branch head, or
        `parent`, which must be the head) with ADD written (path -> bytes, or a local
        file read in place) and DELETE
        (files) and DELETE_FOLDERS removed, without checking the parent out: kept files
        reuse its objects. Params, metrics and lineage are the parent's (the same
        weights). If the branch moves meanwhile the changes are applied again to its
        new head, unless `parent` was given (RefMoved)."""
        check_name(model, "model name")
        branch = check_ref_name(branch or DEFAULT_BRANCH, "branch name")
        from ..ingest.amend import Changes, amend
        from ..ingest.record import Draft, base_for

        changes = Changes(dict(add or {}), tuple(delete), tuple(delete_folders))
        who = author or default_author()
        fixed = self._parent(parent, model).id if parent is not None else None
        from ..ingest.record import COMMIT_RETRIES

        for _ in range(COMMIT_RETRIES):
            base = base_for(self._meta, model, branch, fixed, parent)
            pm = self._manifest(base.parent_id) if base.parent_id else None
            draft = Draft(model=model, branch=branch, author=who, message=message,
                          params=dict(pm.params) if pm else {},
                          metrics=dict(pm.metrics) if pm else {},
                          lineage=dict(pm.lineage) if pm else {})
            try:
                with self._layout.lock(exclusive=False):
                    row = amend(self._meta, self._io, self._store, self._jobs, draft, base, pm,
                                changes)
            except (RefMoved, AlreadyExists):
                if fixed is not None:
                    raise
                continue
            self.events.after_mutation()
            return row
        raise RefMoved(f"branch {model}@{branch} kept moving; retry")

    def commit_entries(self, files: Sequence[FileEntry], *, model: str,
                       branch: str | None = None, message: str = "",
                       params: dict[str, Any] | None = None,
                       metrics: dict[str, Any] | None = None,
                       lineage: dict[str, Any] | None = None, kind: str = "folder",
                       tags: Sequence[str] = (), parent: str | None = None,
                       author: str | None = None, root: bool = False) -> Version:
        """Record a version from file entries whose segments are stored already (a
        commit over HTTP: the client uploaded them). Each stored object must be what
        its entry declares (UsageError). Otherwise as `commit`."""
        check_name(model, "model name")
        branch = check_ref_name(branch or DEFAULT_BRANCH, "branch name")
        from ..ingest.entries import rows_for
        from ..ingest.record import Draft, base_for, new_tags, record

        tags = new_tags(self._meta, model, tags)  # recorded with the version, or nothing is
        if not files:
            raise UsageError("a commit needs at least one file")
        who = author or default_author()
        base = base_for(self._meta, model, branch,
                        self._parent(parent, model).id if parent is not None else None, parent,
                        root=root)
        draft = Draft(model=model, branch=branch, author=who, message=message,
                      params=dict(params or {}), metrics=dict(metrics or {}),
                      lineage=dict(lineage or {}), kind=kind, tags=tags)
        with self._layout.lock(exclusive=False):
            objects, refs, new_bytes = rows_for(self._meta, self._io, self._store, tuple(files))
            row = record(self._meta, self._io, self._store, draft, base, tuple(files),
                         objects=list(objects.values()), ref_objects=list(refs.values()),
                         new_bytes=new_bytes)
        self.events.after_mutation()
        return row

    def store_segment(self, oid: str, read: Callable[[int, int], bytes | memoryview],
                      size: int, *, model: str, dtype: str | None = None,
                      shape: tuple[int, ...] | None = None, file: str = "",
                      tensor: str | None = None, base: str | None = None) -> tuple[bool, int]:
        """Store a raw segment a client uploaded for a commit over HTTP (its bytes already
        hashed to OID; READ(offset, n) gives them): a tensor (DTYPE and SHAPE given)
        deltas against the same tensor of version BASE of MODEL, as a local commit's
        would; else a blob. (newly written, stored bytes)."""
        from ..ingest.entries import store_uploaded
        from ..references import References

        ref = None
        if shape is not None and base is not None and tensor is not None:
            try:
                parent = self.manifest(f"{model}@{base}")
            except NotFound as exc:
                raise UsageError(f"base {base[:12]} is not a version of {model}") from exc
            seg = References(parent).get(file, tensor)
            ref = seg.id if seg else None
        with self._layout.lock(exclusive=False):
            return store_uploaded(self._io, self._store, oid, read, size, dtype=dtype,
                                  shape=shape, ref=ref)

