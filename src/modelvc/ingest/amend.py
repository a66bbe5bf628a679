"""Amend: a new version made of its parent's files with a few added, replaced or
deleted, without checking the parent out. Kept files keep their entries (segments,
sha256) as they are, so a README edit to a multi-GB model stores and reads O(KB).
New files are stored as a commit stores them (tensors delta against the parent's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..commit import FileStorer
from ..errors import Conflict, PathNotFound, UsageError
from ..manifest import FileEntry, Manifest
from ..meta.api import ObjectRow, VersionRow
from ..objects.base import ObjectStore, flush
from ..references import References
from ..storage import ObjectIO
from .record import Base, Draft, record

if TYPE_CHECKING:
    from ..meta.store import MetaStore


@dataclass(frozen=True)
class Changes:
    """Files to write (path -> bytes, or a local file holding them, which is read in
    place) and to delete (paths, and folders with all they hold), applied to the
    parent: deletions first, then writes."""

    add: Mapping[str, bytes | Path] = field(default_factory=dict)
    delete: tuple[str, ...] = ()
    delete_folders: tuple[str, ...] = ()


def clean_path(rel: str) -> str:
    """A relative posix path inside the version (no '..', not absolute, not empty)."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or str(p) in (".", ""):
        raise UsageError(f"{rel!r} is not a path inside the version",
                         hint="give a relative path such as docs/README.md")
    return str(p)


def apply(parent: Manifest | None, changes: Changes) -> tuple[dict[str, FileEntry], list[str]]:
    """The parent's entries that stay, and the paths to store anew (checked: a deleted
    file exists, a new file is not a folder of the parent nor inside one of its files)."""
    kept = {f.path: f for f in parent.files} if parent else {}
    for rel in map(clean_path, changes.delete):
        if kept.pop(rel, None) is None:
            raise PathNotFound(f"A file with this name doesn't exist: {rel}",
                               hint="list the version's files with `modelvc show`")
    for folder in map(clean_path, changes.delete_folders):
        for path in [p for p in kept if p.startswith(folder + "/")]:
            del kept[path]
    new = [clean_path(r) for r in changes.add]
    for rel in new:
        if any(p.startswith(rel + "/") for p in kept):
            raise UsageError(f"{rel} is a folder in the parent version")
        parts = PurePosixPath(rel).parents
        if clash := next((str(d) for d in parts if str(d) in kept), None):
            raise UsageError(f"{rel}: {clash} is a file in the parent version")
        kept.pop(rel, None)
    if not kept and not new:
        raise UsageError("the change would leave no files: a version holds at least one")
    return kept, new


def amend(meta: MetaStore, io: ObjectIO, store: ObjectStore, pool: ThreadPoolExecutor,
          draft: Draft, base: Base, parent: Manifest | None, changes: Changes) -> VersionRow:
    """Store the new files, then record the version on top of exactly BASE (RefMoved
    if the branch moved: apply the changes again to its new head). The caller holds the
    gc lock shared, so the parent's objects cannot be swept meanwhile."""
    kept, new = apply(parent, changes)
    data = {clean_path(r): b for r, b in changes.add.items()}
    with tempfile.TemporaryDirectory(prefix="modelvc-amend-") as tmp:
        files = []
        for rel in new:
            content = data[rel]
            if isinstance(content, Path):  # e.g. an HF commit's file, spooled as it came
                files.append((rel, content))
                continue
            target = Path(tmp).joinpath(*PurePosixPath(rel).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            files.append((rel, target))
        stored = FileStorer(io, pool).store(sorted(files), References(parent))
    flush(store, stored.new_ids)
    reused = {s.id for f in kept.values() for s in f.segments} - stored.objects.keys()
    rows = meta.get_objects(reused)
    if missing := reused - rows.keys():
        raise Conflict(f"{len(missing)} objects of the parent version are gone (deleted "
                       "meanwhile?)", hint="retry on the branch's current head")
    objects: list[ObjectRow] = [*rows.values(), *stored.objects.values()]
    entries = tuple(sorted([*kept.values(), *stored.files], key=lambda f: f.path))
    single = parent is not None and parent.kind == "file" and len(entries) == 1 and (
        entries[0].path == parent.files[0].path)
    # Never re-parented: the files were taken from this parent (the caller retries).
    return record(meta, io, store, replace(draft, kind="file" if single else "folder"),
                  replace(base, fixed=True), entries, objects=objects,
                  ref_objects=list(stored.ref_objects.values()), new_bytes=stored.new_bytes)
