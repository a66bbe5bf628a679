"""Record a version whose objects are stored and durable: manifest, then one transaction
(number, version row, object rows and links, branch compare-and-swap, audit entry).

A branch that moved meanwhile re-parents the version onto its new head, unless the
caller fixed the parent (RefMoved). The caller holds the registry's gc lock (shared).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import AlreadyExists, Conflict, ModelNotFound, RefMoved, RefNotFound, UsageError
from ..manifest import FileEntry, Manifest
from ..meta.api import AuditEntry, NewVersion, ObjectRow, VersionRow
from ..names import DEFAULT_BRANCH, check_ref_name
from ..objects.base import ObjectStore, flush
from .refs import check_not_an_id, head_or_none

if TYPE_CHECKING:
    from ..meta.store import MetaStore
    from ..storage import ObjectIO

COMMIT_RETRIES = 20


@dataclass(frozen=True)
class Draft:
    """What a new version says besides its files, and where it goes."""

    model: str
    branch: str
    author: str
    message: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    kind: str = "folder"  # "file" when one file was committed as such
    tags: tuple[str, ...] = ()  # created in the version's transaction (see new_tags)


@dataclass(frozen=True)
class Base:
    """The version a new one starts from: its parent and the branch head it expects."""

    parent_id: str | None
    expected: str | None  # the branch head when read (None: the branch is created)
    fixed: bool  # the caller named the parent (or a root): a moved branch fails


def base_for(meta: MetaStore, model: str, branch: str, parent_id: str | None,
             parent_label: str | None = None, *, root: bool = False) -> Base:
    """Where a commit to MODEL@BRANCH starts: the branch head, or PARENT_ID, which must
    then be the head (RefMoved otherwise: commit to a new branch instead). A branch that
    does not exist yet starts at PARENT_ID, else at the main branch's head (as `git
    checkout -b` does: a fine-tune keeps its link to its base), else with no parent;
    ROOT asks for no parent, and only a new branch can start that way."""
    head = head_or_none(meta, model, branch)
    now = head.version_id if head else None
    if head is None:
        check_not_an_id(meta, model, branch, "branch name")
    if root:
        if parent_id is not None:
            raise UsageError("a root version has no parent: give a parent or ask for a "
                             "root, not both")
        if head is not None:
            raise UsageError(f"branch {model}@{branch} exists (at {_label(meta, now)}): "
                             "a root version starts a new branch",
                             hint="commit it to a new branch (--branch NAME)")
        return Base(None, None, fixed=True)
    if parent_id is None:
        if head is None and branch != DEFAULT_BRANCH:
            main = head_or_none(meta, model, DEFAULT_BRANCH)
            return Base(main.version_id if main else None, None, fixed=False)
        return Base(now, now, fixed=False)
    if head is not None and now != parent_id:
        raise RefMoved(
            f"branch {model}@{branch} is at {_label(meta, now)}, not at your parent "
            f"{parent_label or parent_id[:12]}",
            hint="commit to a new branch (--branch), or drop --parent to commit on top",
        )
    return Base(parent_id, now, fixed=True)


def new_tags(meta: MetaStore, model: str, tags: Sequence[str]) -> tuple[str, ...]:
    """A commit's tags, checked (names free) before the commit writes anything; the
    version and its tags are then recorded in one transaction."""
    out = tuple(dict.fromkeys(check_ref_name(t, "tag name") for t in tags))
    for t in out:
        check_not_an_id(meta, model, t, "tag name")
        try:
            row = meta.get_ref(model, t)
        except (RefNotFound, ModelNotFound):
            continue
        at = f" at {_label(meta, row.version_id)}" if row.version_id else ""
        raise AlreadyExists(
            f"{model}@{t} already exists (a {row.kind}{at})",
            hint="tags are immutable: choose another tag name (nothing was committed)")
    return out


def _label(meta: MetaStore, version_id: str | None) -> str:
    if version_id is None:
        return "nothing"
    v = meta.get_version(version_id)
    return f"v{v.number} ({v.id[:12]})"


def record(meta: MetaStore, io: ObjectIO, store: ObjectStore, draft: Draft, base: Base,
           files: tuple[FileEntry, ...], *, objects: list[ObjectRow],
           ref_objects: list[ObjectRow], new_bytes: int) -> VersionRow:
    """Write the manifest, then the version in one transaction; objects must be durable."""
    parent_id, expected = base.parent_id, base.expected
    for _ in range(COMMIT_RETRIES):
        parents = (parent_id,) if parent_id else ()
        manifest = Manifest(
            model=draft.model, files=files, parents=parents,
            created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            author=draft.author, message=draft.message, params=draft.params,
            metrics=draft.metrics, lineage=draft.lineage,
            kind="file" if draft.kind == "file" else "folder",
        )  # fmt: skip
        raw = manifest.to_bytes()
        mstored = io.put_blob(raw)
        mid = mstored.row.id
        flush(store, [mid])
        rows = [*objects, ObjectRow(mid, "manifest", "zstd", len(raw), mstored.row.stored_size)]
        meta.ensure_model(draft.model)
        tag_entries = [(t, AuditEntry(actor=draft.author, action="tag",
                                      target=f"{draft.model}@{t}", model=draft.model,
                                      after={"version": mid, "kind": "tag"}))
                       for t in draft.tags]
        try:
            return meta.insert_version(
                NewVersion(
                    id=mid, model=draft.model, author=draft.author, message=draft.message,
                    parents=list(parents), params=manifest.params,
                    metrics=manifest.metrics, lineage=manifest.lineage,
                    raw_size=manifest.raw_size,
                    stored_size=new_bytes + mstored.row.stored_size,
                    created_at=datetime.fromisoformat(manifest.created_at),
                    objects=rows, ref_objects=ref_objects,
                ),
                branch=draft.branch, expected_head=expected, create_branch=expected is None,
                actor=draft.author,
                audit=AuditEntry(actor=draft.author, action="commit", model=draft.model,
                                 target=f"{draft.model}@{draft.branch}",
                                 before={"version": expected}, after={"version": mid},
                                 reason=draft.message),
                tags=tag_entries,
            )  # fmt: skip
        except AlreadyExists:
            if draft.tags:  # a tag created meanwhile: say which (nothing was recorded)
                new_tags(meta, draft.model, draft.tags)
            raise
        except (RefMoved, Conflict):
            if base.fixed:
                raise
            now = head_or_none(meta, draft.model, draft.branch)
            if now is None or now.version_id == expected:
                raise
            expected = parent_id = now.version_id
    raise RefMoved(f"branch {draft.model}@{draft.branch} kept moving; retry the commit")
