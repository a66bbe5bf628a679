"""Registry: the one public client. `Registry.open(...)` / `Registry.init(...)`.

Write order for a commit (DESIGN invariant 1): objects -> manifest -> one database
transaction (version row, number, object links, branch compare-and-swap). A crash at
any point leaves at most unreferenced objects, which gc removes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import layout as _layout
from ..api.openers import OPENERS
from ..api.types import UNSET, FileStorage, Unset
from ..auditseal import AuditSeal
from ..errors import (
    AlreadyExists,
    AmbiguousRef,
    Conflict,
    ModelNotFound,
    RefMoved,
    RefNotFound,
    UsageError,
)
from ..ingest.record import COMMIT_RETRIES
from ..lineage import author as default_author
from ..lineage import capture, with_extra
from ..manifest import Manifest, file_storage
from ..meta.api import (
    AuditRow,
    ObjectRow,
    RefKind,
    RefMove,
    RefRow,
    VersionRow,
)
from ..meta.store import MetaStore
from ..names import check_name, check_ref_name, is_hex_prefix, parse_ref
from ..objects import open_store
from ..objects.base import ObjectStore, flush
from .exchange import ExchangeOps
from .host import HostOps
from .writes import DEFAULT_BRANCH as DEFAULT_BRANCH
from .writes import _IngestOps

if TYPE_CHECKING:  # imported on first use: commands that only read metadata (log, refs,
    # history) never load numpy and the codecs, nor gates or signing: the CLI starts faster
    from ..api.protocol import RegistryAPI
    from ..checkout import CheckoutResult, TensorDict
    from ..diff import VersionDiff
    from ..events import Events
    from ..gates.authority import Authority
    from ..maintenance import GcReport, VerifyReport
    from ..signing.trust import Trust
    from ..storage import ObjectIO
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


_Unset = Unset


class _ReadOps:
    """Read-side and maintenance verbs, mixed into Registry (kept apart for size)."""

    layout: _layout.Layout
    _meta: MetaStore
    _store: ObjectStore
    audit_seal: AuditSeal
    _jobs: ThreadPoolExecutor
    _blocks: ThreadPoolExecutor

    @cached_property
    def _io(self) -> ObjectIO:
        """Tensors and blobs on the object store (built on first use)."""
        from ..storage import ObjectIO

        return ObjectIO(self._store, executor=self._blocks)

    @cached_property
    def trust(self) -> Trust:
        from ..signing.trust import Trust

        return Trust(self._meta, self._manifest)

    # Provided by Registry.
    resolve: Callable[..., Version]
    _manifest: Callable[[str], Manifest]

    def checkout(self, ref: str, dest: str | Path, *, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> CheckoutResult:
        """Rebuild the version's files in DEST, bit-exact and verified."""
        v = self.resolve(ref)
        self.trust.check(v)
        m = self._manifest(v.id)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, m.raw_size)

        from ..checkout import checkout

        return checkout(self._io, self._jobs, m, Path(dest), force=force, progress=tick)

    def load(self, ref: str, *, framework: str = "numpy", file: str | None = None) -> TensorDict:
        """Tensors of a version as a mapping, each decoded when first accessed."""
        v = self.resolve(ref)
        self.trust.check(v)
        from ..checkout import TensorDict

        return TensorDict(self._io, self._manifest(v.id), framework=framework, file=file)

    def diff(self, a: str, b: str, *, numeric: bool = True,
             progress: Callable[[int, int], None] | None = None) -> VersionDiff:
        va, vb = self.resolve(a), self.resolve(b)
        from ..diff import diff_manifests

        return diff_manifests(self._io, self._manifest(va.id), self._manifest(vb.id),
                              a_label=f"{va.model}@v{va.number}",
                              b_label=f"{vb.model}@v{vb.number}", numeric=numeric,
                              progress=progress)

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
        return maintenance.gc(self.layout, self._meta, self._io, dry_run=dry_run,
                              grace_seconds=grace_seconds, actor=actor or default_author(),
                              progress=progress, **extra)

    def audit(self, *, model: str | None = None, channel: str | None = None,
              actor: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after: int | None = None, before: int | None = None,
              limit: int | None = None, newest: bool = False) -> list[AuditRow]:
        """The audit trail, oldest first, filtered and paged (see RegistryAPI.audit)."""
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
        return problems + self.audit_seal.check(hashes)

    def delete(self, ref: str, *, reason: str = "", actor: str | None = None) -> int:
        """Delete a version (its number is never reused); returns objects re-based."""
        v = self.resolve(ref)
        from .. import maintenance

        return maintenance.delete_version(self.layout, self._meta, self._io, v,
                                          actor=actor or default_author(), reason=reason)


class Registry(_ReadOps, HostOps, ExchangeOps, _IngestOps):
    """A model registry: versions, branches, channels, tags, and their history."""

    def __init__(self, lay: _layout.Layout, meta: MetaStore, store: ObjectStore) -> None:
        self.layout = lay
        self._meta = meta
        self._store = store
        # Every audited change this process commits is sealed outside the database.
        self.audit_seal = AuditSeal(lay.root / "audit")
        meta.audit_seal = self.audit_seal.seal
        self._blocks = ThreadPoolExecutor(2, thread_name_prefix="modelvc-block")
        self._jobs = ThreadPoolExecutor(3, thread_name_prefix="modelvc-job")

    @cached_property
    def governance(self) -> Authority:
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

        return Rollouts(self._meta)

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

        return LocalGates(self)

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
        return str(self.layout.root)

    def whoami(self) -> dict[str, Any]:
        """Who acts on this registry: the local author ($MODELVC_AUTHOR, git, user)."""
        return {"name": default_author()}

    # ---- opening
    @classmethod
    def init(cls, path: str | Path = ".", *, meta_url: str | None = None,
             objects_url: str | None = None) -> Registry:
        """Create a registry in PATH/.modelvc (SQLite + local objects by default)."""
        lay = _layout.create(Path(path), meta=meta_url, objects=objects_url)
        meta = MetaStore.create(lay.meta_url)
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
        meta = MetaStore.open(lay.meta_url)
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
    ) -> Version:
        """Record PATH (a file or folder) as a new immutable version of MODEL.

        The parent is the branch head (or `parent`); a branch that does not exist is
        created at the parent. If another writer moves the branch meanwhile, the
        version is re-parented onto the new head (both versions are kept) unless an
        explicit `parent` was given, in which case RefMoved is raised.
        """
        check_name(model, "model name")
        branch = check_ref_name(branch or DEFAULT_BRANCH, "branch name")
        from ..ingest.record import new_tags

        tags = new_tags(self._meta, model, tags)  # before anything is written
        from ..commit import FileStorer, collect_files

        files = collect_files(Path(path))
        total = sum(p.stat().st_size for _, p in files)
        captured = capture(Path(cwd or Path.cwd()), [Path(d) for d in data])
        lineage = with_extra(captured, lineage)
        who = author or default_author()
        from ..ingest.record import Draft, base_for, record
        from ..ingest.references import References

        base = base_for(self._meta, model, branch,
                        self._parent(parent, model).id if parent is not None else None, parent)
        parent_m = self._manifest(base.parent_id) if base.parent_id else None
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        draft = Draft(model=model, branch=branch, author=who, message=message,
                      params=dict(params or {}), metrics=dict(metrics or {}), lineage=lineage,
                      kind="file" if Path(path).is_file() else "folder", tags=tags)
        with self.layout.lock(exclusive=False):
            stored = FileStorer(self._io, self._jobs, progress=tick).store(
                files, References(parent_m))
            # Objects were written without fsync; make them durable in one batch
            # before anything that refers to them (invariant 1).
            flush(self._store, stored.new_ids)
            row = record(self._meta, self._io, self._store, draft, base, tuple(stored.files),
                         objects=list(stored.objects.values()),
                         ref_objects=list(stored.ref_objects.values()),
                         new_bytes=stored.new_bytes)
        self.events.after_mutation()
        return row

    # ---- resolving
    def resolve(self, ref: str, *, deleted: bool = False) -> Version:
        """A ref (NAME, NAME@vN, NAME@branch|channel|tag, NAME@<id prefix>) -> Version.

        A deleted version resolves only with deleted=True (its row is kept as history)."""
        v = self._resolve(ref)
        if v.deleted_at is not None and not deleted:
            raise RefNotFound(f"{ref} (v{v.number}) was deleted at {v.deleted_at:%Y-%m-%d %H:%M}",
                              hint="its files are gone; who deleted it and why: "
                                   f"`modelvc audit --model {v.model} --action delete`")
        return v

    def _resolve(self, ref: str) -> Version:
        spec = parse_ref(ref)
        self._meta.get_model(spec.model)
        if spec.selector is None:
            head = self._head_or_none(spec.model, DEFAULT_BRANCH)
            if head is None or head.version_id is None:
                versions = self._meta.list_versions(spec.model)
                if not versions:
                    raise RefNotFound(f"model {spec.model} has no versions yet")
                return versions[0]
            return self._meta.get_version(head.version_id)
        if spec.number is not None:
            return self._meta.version_by_number(spec.model, spec.number)
        ref_row = self._ref_or_none(spec.model, spec.selector)
        by_id = self._meta.versions_by_prefix(spec.model, spec.selector) if (
            is_hex_prefix(spec.selector)) else []
        if ref_row is not None and by_id:
            raise AmbiguousRef(f"{ref} names both a {ref_row.kind} and a version id prefix")
        if ref_row is not None:
            if ref_row.version_id is None:
                raise RefNotFound(f"{ref_row.kind} {ref} points at no version")
            return self._meta.get_version(ref_row.version_id)
        if len(by_id) > 1:
            shown = ", ".join(f"v{v.number} {v.id[:12]}" for v in by_id[:5])
            raise AmbiguousRef(f"{ref} matches {len(by_id)} versions ({shown})")
        if by_id:
            return by_id[0]
        raise RefNotFound(
            f"{ref}: no version, branch, channel or tag {spec.selector!r} in model {spec.model}",
            hint=f"see `modelvc refs {spec.model}` and `modelvc log {spec.model}`",
        )

    def _parent(self, ref: str, model: str) -> Version:
        """An explicit parent. Another model's version makes a fork (docs/security.md:
        the server checks the writer may read it); `modelvc commit` asks for --fork."""
        return self.resolve(ref)

    def _channel_missing(self, model: str, channel: str, *, promoting: bool = False
                         ) -> RefNotFound:
        """No channel CHANNEL: the error names the channels the model has."""
        have = [r.name for r in self._meta.list_refs(model, "channel")]
        listed = ", ".join(have) if have else "none yet"
        create = f"`modelvc promote {model}@vN --to {channel} --create`"
        hint = (f"check the spelling; a new channel is created with {create}" if promoting
                else f"check the spelling (`modelvc channel list {model}`)")
        return RefNotFound(f"{model} has no channel {channel!r} (its channels: {listed})",
                           hint=hint)

    def _ref_or_none(self, model: str, name: str) -> RefRow | None:
        try:
            return self._meta.get_ref(model, name)
        except (RefNotFound, ModelNotFound):
            return None

    def _head_or_none(self, model: str, branch: str) -> RefRow | None:
        from ..ingest.record import head_or_none

        return head_or_none(self._meta, model, branch)

    def _label(self, version_id: str | None) -> str:
        if version_id is None:
            return "nothing"
        v = self._meta.get_version(version_id)
        return f"v{v.number} ({v.id[:12]})"

    def _manifest(self, version_id: str) -> Manifest:
        return Manifest.from_bytes(self._io.read_blob(version_id), expect_id=version_id)

    def manifest(self, ref: str) -> Manifest:
        return self._manifest(self.resolve(ref).id)

    # ---- listing
    def storage(self, ref: str) -> list[FileStorage]:
        v = self.resolve(ref)
        return file_storage(self._manifest(v.id), self._meta.version_objects(v.id))

    def models(self) -> list[str]:
        return [m.name for m in self._meta.list_models()]

    def versions(self, model: str) -> list[Version]:
        """Newest first. ModelNotFound for an unknown model (as over a server)."""
        self._meta.get_model(model)
        return self._meta.list_versions(model)

    def log(self, ref: str) -> list[Version]:
        """The version and its ancestors (first-parent and merges), newest first."""
        from ..ingest.refs import ancestors

        out = ancestors(self._meta, [self.resolve(ref).id])
        return sorted(out, key=lambda v: v.number, reverse=True)

    def refs(self, model: str, kind: str | None = None) -> list[RefRow]:
        self._meta.get_model(model)
        return self._meta.list_refs(model, kind)  # type: ignore[arg-type]

    # ---- refs
    def _move(self, model: str, name: str, kind: RefKind, *, expected: str | None,
              new: str | None, who: str, action: str, reason: str = "",
              create: bool = False) -> RefRow:
        """A compare-and-swap ref move with its audit entry, in one transaction."""
        from ..ingest.refs import move_ref

        row = move_ref(self._meta, model, name, kind, expected=expected, new=new, actor=who,
                       action=action, reason=reason, create=create)
        self.events.after_mutation()
        return row

    def create_branch(self, model: str, name: str, *, at: str | None = None,
                      actor: str | None = None) -> RefRow:
        check_ref_name(name, "branch name")
        target = self.resolve(at or model).id
        return self._move(model, name, "branch", expected=None, new=target,
                          who=actor or default_author(), action="create", create=True)

    def delete_ref(self, model: str, name: str, *, actor: str | None = None,
                   reason: str = "") -> None:
        row = self._meta.get_ref(model, name)
        if row.kind == "tag":
            raise Conflict(f"tag {model}@{name} is immutable and cannot be deleted")
        self.governance.authorize_ref_delete(model, name, row.kind, actor or default_author())
        self._move(model, name, row.kind, expected=row.version_id, new=None,
                   who=actor or default_author(), action="delete", reason=reason)

    def tag(self, ref: str, name: str, *, actor: str | None = None) -> RefRow:
        check_ref_name(name, "tag name")
        v = self.resolve(ref)
        return self._move(v.model, name, "tag", expected=None, new=v.id,
                          who=actor or default_author(), action="create", create=True)

    def promote(self, ref: str, channel: str, *, reason: str = "", actor: str | None = None,
                expected: str | _Unset | None = UNSET, force: bool = False,
                create: bool = True) -> RefRow:
        """Point CHANNEL of the version's model at the version (compare-and-swap).

        When a policy is applied, the version must have passed the channel's gates
        (and the actor hold the role); `force` skips the gates, needs the admin role
        and a reason, and is recorded as such. `expected`: the version the channel
        must hold now (default: whatever it holds when read here). `create=False`
        refuses a channel that does not exist yet unless the applied policy declares
        it (the CLI passes it: a typo must not make a new channel)."""
        check_ref_name(channel, "channel name")
        v = self.resolve(ref)
        # Under `trust: require` every gateway refuses an unsigned version: a channel
        # must not name one (force skips gates, not signatures).
        self.trust.check(v)
        if not create and self._ref_or_none(v.model, channel) is None and (
                not self.governance.declares(v.model, channel)):
            raise self._channel_missing(v.model, channel, promoting=True)
        who = actor or default_author()
        clearance = self.governance.authorize_promotion(v, channel, who, force=force,
                                                        reason=reason)
        # Regression gates judged against the channel's value when they ran: the swap
        # must start from exactly that value (a promotion landing meanwhile fails it).
        expected = cast("str | _Unset | None", clearance.expected(expected))
        current = self._ref_or_none(v.model, channel)
        if current is not None and current.kind != "channel":
            raise UsageError(f"{v.model}@{channel} is a {current.kind}, not a channel")
        action = "force" if force else "promote"
        for _ in range(COMMIT_RETRIES):
            try:
                if current is None:
                    if isinstance(expected, str):
                        raise RefMoved(f"{v.model}@{channel} does not exist yet; "
                                       f"expected {expected[:12]}")
                    return self._move(v.model, channel, "channel", expected=None, new=v.id,
                                      who=who, action=action, reason=reason, create=True)
                exp = current.version_id if isinstance(expected, _Unset) else expected
                return self._move(v.model, channel, "channel", expected=exp, new=v.id,
                                  who=who, action=action, reason=reason)
            except (RefMoved, AlreadyExists) as exc:
                if clearance.pinned:  # retrying would skip the regression gates
                    raise self.governance.moved_since_gated(v, channel, clearance) from exc
                # Without an explicit expectation the caller just wants the channel on
                # this version: another promoter was first, so move on from theirs.
                if not isinstance(expected, _Unset):
                    raise
                current = self._ref_or_none(v.model, channel)
        raise RefMoved(f"{v.model}@{channel} kept moving; retry the promotion")

    def rollback(self, model: str, channel: str, *, to: str | None = None, reason: str = "",
                 actor: str | None = None) -> RefRow:
        """Move CHANNEL back to its previous target (or to `to`) in one recorded step."""
        who = actor or default_author()
        current = self._ref_or_none(model, channel)
        if current is None:
            self._meta.get_model(model)
            raise self._channel_missing(model, channel)
        if current.kind != "channel":
            raise UsageError(f"{model}@{channel} is a {current.kind}, not a channel")
        self.governance.authorize_rollback(model, channel, who)
        if to is not None:
            target = self.resolve(to)
            if target.model != model:
                raise UsageError(f"{to} is not a version of {model}")
            target_id = target.id
        else:
            prev = previous_target(self._meta.ref_history(model, channel), current.version_id)
            if prev is None:
                raise Conflict(f"{model}@{channel} has no earlier version to roll back to")
            target_id = prev
        if target_id is not None:
            self.trust.check(self._meta.get_version(target_id))
        return self._move(model, channel, "channel", expected=current.version_id,
                          new=target_id, who=who, action="rollback", reason=reason)

    def history(self, model: str, name: str | None = None) -> list[RefMove]:
        self._meta.get_model(model)
        moves = self._meta.ref_history(model, name)
        if name is not None and not moves:
            raise self._channel_missing(model, name)
        return moves

    def at(self, model: str, name: str, when: datetime) -> Version | None:
        """What ref NAME (e.g. channel production) pointed to at time `when`."""
        vid = self._meta.ref_at(model, name, when)
        if vid is None:
            self.history(model, name)  # a ref that never existed: say so (RefNotFound)
        return self._meta.get_version(vid) if vid else None

    def objects_of(self, ref: str) -> Iterable[ObjectRow]:
        return self._meta.version_objects(self.resolve(ref).id)


def previous_target(moves: list[RefMove], current: str | None) -> str | None:
    """Walk a channel's history as a stack: promotions push, rollbacks pop."""
    stack: list[str] = []
    for m in moves:
        if m.new is None:
            stack.clear()
        elif m.action == "rollback":
            while stack and stack[-1] != m.new:
                stack.pop()
            if not stack:
                stack.append(m.new)
        elif not stack or stack[-1] != m.new:
            stack.append(m.new)
    if stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None

