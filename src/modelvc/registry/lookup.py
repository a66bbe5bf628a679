"""The embedded registry's lookups, mixed into Registry (a module of its own for size):
resolving a ref to a version (NAME is main's head, never a guess), manifests, storage,
models, versions, log, refs."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import AmbiguousRef, ModelNotFound, RefNotFound
from ..manifest import Manifest, file_storage
from ..meta.api import ObjectRow, RefRow, VersionRow
from ..names import DEFAULT_BRANCH, did_you_mean, is_hex_prefix, parse_ref
from ..records import FileStorage
from .parts import RegistryParts

Version = VersionRow


class LookupOps(RegistryParts):
    # ---- resolving
    def resolve(self, ref: str, *, deleted: bool = False) -> Version:
        """A ref (NAME, NAME@vN, NAME@branch|channel|tag, NAME@<id prefix>) -> Version.

        A deleted version resolves only with deleted=True (its row is kept as history)."""
        v = self._resolve(ref)
        if v.deleted_at is not None and not deleted:
            named = ref if ref.endswith(f"@v{v.number}") else f"{ref} (v{v.number})"
            raise RefNotFound(f"{named} was deleted at {v.deleted_at:%Y-%m-%d %H:%M}",
                              hint="its files are gone; who deleted it and why: "
                                   f"`modelvc audit --model {v.model} --action delete`")
        return v

    def _resolve(self, ref: str) -> Version:
        spec = parse_ref(ref)
        self._meta.get_model(spec.model)
        if spec.selector is None:
            head = self._head_or_none(spec.model, DEFAULT_BRANCH)
            if head is None or head.version_id is None:
                raise self._no_main(spec.model)
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
        names = [r.name for r in self._meta.list_refs(spec.model)]
        raise RefNotFound(
            f"{ref}: no version, branch, channel or tag {spec.selector!r} in model {spec.model}",
            hint=did_you_mean(spec.selector, names, f"{spec.model}@{{}}")
            or f"see `modelvc refs {spec.model}` and `modelvc log {spec.model}`",
        )

    def _no_main(self, model: str) -> RefNotFound:
        """Bare MODEL names the main branch's head; without one nothing is guessed (the
        newest version of some other branch is not what MODEL means)."""
        if not self._meta.list_versions(model):
            return RefNotFound(f"model {model} has no versions yet")
        branches = [r.name for r in self._meta.list_refs(model, "branch") if r.version_id]
        if branches:
            return RefNotFound(f"{model} has no main branch; name a branch: "
                               f"{model}@{branches[0]}",
                               hint=f"its branches: {', '.join(branches[:10])}")
        return RefNotFound(f"{model} has no main branch; name a version: {model}@vN",
                           hint=f"see `modelvc log {model} --all`")

    def _parent(self, ref: str, model: str) -> Version:
        """An explicit parent. Another model's version makes a fork (docs/security.md:
        the server checks the writer may read it); `modelvc commit` asks for --fork."""
        return self.resolve(ref)

    def _ref_or_none(self, model: str, name: str) -> RefRow | None:
        try:
            return self._meta.get_ref(model, name)
        except (RefNotFound, ModelNotFound):
            return None

    def _head_or_none(self, model: str, branch: str) -> RefRow | None:
        from ..ingest.refs import head_or_none  # not ingest.record: a read loads no commit

        return head_or_none(self._meta, model, branch)

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
        """The version and its ancestors (first-parent and merges), newest first, each
        above its parents (numbers are per model: a fork's origin goes below it)."""
        from ..ingest.refs import ancestors, newest_first

        return newest_first(ancestors(self._meta, [self.resolve(ref).id]))

    def refs(self, model: str, kind: str | None = None) -> list[RefRow]:
        self._meta.get_model(model)
        return self._meta.list_refs(model, kind)  # type: ignore[arg-type]

    def objects_of(self, ref: str) -> Iterable[ObjectRow]:
        return self._meta.version_objects(self.resolve(ref).id)
