"""Registry: the embedded registry. `Registry.open(...)` / `Registry.init(...)`, commit,
resolving and listing; its other verbs are mixins named for what they hold (reads.py,
refs.py, host.py, exchange.py, writes.py) and its areas are areas.py.

Write order for a commit (DESIGN invariant 1): objects -> manifest -> one database
transaction (version row, number, object links, branch compare-and-swap). A crash at
any point leaves at most unreferenced objects, which gc removes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import layout as _layout
from ..api.openers import OPENERS
from ..auditseal import AuditSeal
from ..lineage import CAPTURED, capture, with_extra
from ..lineage import author as default_author
from ..meta.api import VersionRow
from ..names import check_name, check_ref_name
from ..objects import open_store
from ..objects.base import ObjectStore, flush
from .exchange import ExchangeOps
from .host import HostOps
from .lookup import LookupOps
from .reads import ReadOps
from .refs import RefOps
from .writes import DEFAULT_BRANCH as DEFAULT_BRANCH
from .writes import WriteOps

if TYPE_CHECKING:  # imported on first use: commands that only read metadata (log, refs,
    # history) never load numpy and the codecs, nor gates or signing: the CLI starts faster
    from ..api.protocol import RegistryAPI
    from ..api.run import Run
    from ..commit import FileStorer, StoreResult
    from ..events import Events
    from ..gates.authority import Authority
    from ..meta.store import MetaStore
    from ..references import References
    from .areas import (
        LocalDeployments,
        LocalGates,
        LocalKeys,
        LocalRoles,
        LocalSignatures,
        LocalTokens,
    )
    from .rollouts import Rollouts

Version = VersionRow


class Registry(LookupOps, ReadOps, RefOps, HostOps, ExchangeOps, WriteOps):
    """A model registry: versions, branches, channels, tags, and their history."""

    def __init__(self, lay: _layout.Layout, meta: MetaStore, store: ObjectStore) -> None:
        self._layout = lay
        self._meta = meta
        self._store = store
        # Every audited change this process commits is sealed outside the database.
        self._audit_seal = AuditSeal(lay.root / "audit")
        meta.audit_seal = self._audit_seal.seal
        self._blocks = ThreadPoolExecutor(2, thread_name_prefix="modelvc-block")
        self._jobs = ThreadPoolExecutor(3, thread_name_prefix="modelvc-job")

    @cached_property
    def _governance(self) -> Authority:
        from ..gates.authority import Authority

        return Authority(self._meta)

    @cached_property
    def events(self) -> Events:
        from ..events import Events

        return Events(self._meta)

    @cached_property
    def rollouts(self) -> Rollouts:
        """Deployments' switch steps, for modelvc.fleet (registry/rollouts.py)."""
        from .rollouts import Rollouts

        return Rollouts(self._meta, self._layout.meta_url)

    # ---- the areas of RegistryAPI (registry/areas.py)
    @cached_property
    def keys(self) -> LocalKeys:
        from .areas import LocalKeys

        return LocalKeys(self)

    @cached_property
    def signatures(self) -> LocalSignatures:
        from .areas import LocalSignatures

        return LocalSignatures(self)

    @cached_property
    def gates(self) -> LocalGates:
        from .areas import LocalGates

        return LocalGates(self, self)

    @cached_property
    def tokens(self) -> LocalTokens:
        from .areas import LocalTokens

        return LocalTokens(self)

    @cached_property
    def roles(self) -> LocalRoles:
        from .areas import LocalRoles

        return LocalRoles(self)

    @cached_property
    def deployments(self) -> LocalDeployments:
        from .areas import LocalDeployments

        return LocalDeployments(self)

    @property
    def location(self) -> str:
        return str(self._layout.root)

    def whoami(self) -> dict[str, Any]:
        """Who acts on this registry: the local author ($MODELVC_AUTHOR, git, user)."""
        return {"name": default_author()}

    # ---- opening
    @classmethod
    def init(cls, path: str | Path = ".", *, meta_url: str | None = None,
             objects_url: str | None = None) -> Registry:
        """Create a registry in PATH/.modelvc (SQLite + local objects by default)."""
        lay = _layout.create(Path(path), meta=meta_url, objects=objects_url)
        from ..meta.lite import open_meta
        from ..meta.store import MetaStore

        meta = open_meta(lay.meta_url, real=MetaStore.create(lay.meta_url))
        return cls(lay, meta, open_store(lay.objects_url, deferred_fsync=True))

    @classmethod
    def open(cls, location: str | Path | None = None, *, token: str | None = None
             ) -> RegistryAPI:
        """Open the registry at `location`, $MODELVC_REGISTRY, or the nearest .modelvc.

        An http(s):// URL opens a `modelvc server` (token: `token` or $MODELVC_TOKEN) as a
        modelvc.remote.RemoteRegistry. Both implement modelvc.api.RegistryAPI."""
        url = os.environ.get("MODELVC_REGISTRY", "") if location is None else str(location)
        if isinstance(location, str | None):
            for prefix, opener in OPENERS.items():  # http(s): registered by modelvc/__init__
                if url.startswith(prefix):
                    return opener(url, token)
        return cls.open_local(location)

    @classmethod
    def open_local(cls, location: str | Path | None = None) -> Registry:
        """The embedded registry at `location` (a folder; see `open`). For the processes
        that host one: the server, `modelvc deploy`, the fleet gateways."""
        lay = _layout.find(location)
        from ..meta.lite import open_meta  # reads without SQLAlchemy on SQLite

        meta = open_meta(lay.meta_url)
        return cls(lay, meta, open_store(lay.objects_url, deferred_fsync=True))

    def close(self) -> None:
        self._jobs.shutdown()
        self._blocks.shutdown()
        self._meta.close()
        self._store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commit
    def commit(
        self,
        path: str | Path,
        *,
        model: str,
        branch: str | None = None,
        message: str = "",
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        parent: str | None = None,
        data: Sequence[str | Path] = (),
        author: str | None = None,
        cwd: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
        lineage: dict[str, Any] | None = None,
        root: bool = False,
    ) -> Version:
        """Record PATH (a file or folder) as a new immutable version of MODEL.

        The parent is the branch head (or `parent`). A branch that does not exist is
        created at `parent`, else at the main branch's head (as `git checkout -b`), or,
        with `root=True`, as a new line with no parent. If another writer moves the
        branch meanwhile, the version is re-parented onto the new head (both versions
        are kept) unless an explicit `parent` (or `root`) was given: RefMoved then.
        """
        from ..commit import collect_files

        files = collect_files(Path(path))
        total = sum(p.stat().st_size for _, p in files)
        return self._commit(
            lambda storer, refs: storer.store(files, refs), total, model=model,
            branch=branch, message=message, params=params, metrics=metrics, tags=tags,
            parent=parent, data=data, author=author, cwd=cwd, progress=progress,
            lineage=lineage, kind="file" if Path(path).is_file() else "folder", root=root)

    def commit_files(
        self,
        files: Mapping[str, Any],
        *,
        model: str,
        branch: str | None = None,
        message: str = "",
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        parent: str | None = None,
        data: Sequence[str | Path] = (),
        author: str | None = None,
        cwd: str | Path | None = None,
        lineage: dict[str, Any] | None = None,
        root: bool = False,
    ) -> Version:
        """Record FILES (path in the version -> bytes, or a state dict stored as a
        safetensors file) as a new version of MODEL, as `commit` records a folder,
        without a file written or read: what a training loop checkpoints."""
        from ..formats.memory import mem_files

        mfiles = mem_files(files)
        return self._commit(
            lambda storer, refs: storer.store_memory(mfiles, refs),
            sum(f.plan.size for f in mfiles), model=model, branch=branch, message=message,
            params=params, metrics=metrics, tags=tags, parent=parent, data=data,
            author=author, cwd=cwd, progress=None, lineage=lineage, kind="folder", root=root)

    def _commit(self, store: Callable[[FileStorer, References], StoreResult], total: int, *,
                model: str, branch: str | None, message: str, params: dict[str, Any] | None,
                metrics: dict[str, Any] | None, tags: Sequence[str], parent: str | None,
                data: Sequence[str | Path], author: str | None, cwd: str | Path | None,
                progress: Callable[[int, int], None] | None, lineage: dict[str, Any] | None,
                kind: str, root: bool = False) -> Version:
        check_name(model, "model name")
        branch = check_ref_name(branch or DEFAULT_BRANCH, "branch name")
        self._meta.will_write()  # the SQL layer loads while the files are encoded
        from ..commit import FileStorer
        from ..ingest.record import Draft, base_for, new_tags, record
        from ..references import References

        tags = new_tags(self._meta, model, tags)  # before anything is written
        where, paths = Path(cwd or Path.cwd()), [Path(d) for d in data]
        captured: Future[dict[str, Any]] | None = None
        if paths or (lineage and set(lineage) & CAPTURED):
            # A missing data path or a clash is refused before anything is written.
            lineage = with_extra(capture(where, paths), lineage)
        else:  # captured while the files are encoded (git runs as a subprocess)
            captured = self._jobs.submit(capture, where, paths)
        who = author or default_author()
        base = base_for(self._meta, model, branch,
                        self._parent(parent, model).id if parent is not None else None, parent,
                        root=root)
        parent_m = self._manifest(base.parent_id) if base.parent_id else None
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        with self._layout.lock(exclusive=False):
            stored = store(FileStorer(self._io, self._jobs, progress=tick),
                           References(parent_m))
            if captured is not None:
                lineage = with_extra(captured.result(), lineage)
            draft = Draft(model=model, branch=branch, author=who, message=message,
                          params=dict(params or {}), metrics=dict(metrics or {}),
                          lineage=lineage or {}, kind=kind, tags=tags)
            # Objects were written without fsync; make them durable in one batch
            # before anything that refers to them (invariant 1).
            flush(self._store, stored.new_ids)
            row = record(self._meta, self._io, self._store, draft, base, tuple(stored.files),
                         objects=list(stored.objects.values()),
                         ref_objects=list(stored.ref_objects.values()),
                         new_bytes=stored.new_bytes)
        if self._io.known is not None:
            self._io.known.save()  # the files just read: the next commit's references
        self.events.after_mutation()
        return row

    def run(self, *, model: str, branch: str, **kwargs: Any) -> Run:
        """A training run committing checkpoints to MODEL@BRANCH (modelvc.api.run.Run).
        Staged folders are committed by a child process at the lowest CPU priority
        (registry/committer.py) unless `isolate=False`."""
        from ..api.run import Run
        from .committer import ProcessCommitter

        if kwargs.pop("isolate", True):
            kwargs["committer"] = partial(ProcessCommitter, self)
        return Run(self, model=model, branch=branch, **kwargs)
