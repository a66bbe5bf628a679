"""What the process hosting an embedded registry (the server, a gateway) asks of it
beyond RegistryAPI: authenticating tokens, object scope, readiness, rebuilding file
bytes and raw tensors to stream. Public verbs of `Registry` (a mixin), not of the
Protocol: a RemoteRegistry has no use for them, and callers outside the registry never
touch its metadata or object store themselves."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptObject, PermissionDenied
from ..lineage import author as default_author
from ..records import Ref, Version
from .parts import RegistryParts

if TYPE_CHECKING:
    from ..gates.policy import Policy
    from ..manifest import FileEntry, Manifest
    from ..records import RoleBinding, Token
    from ..repair import RepairReport


class HostOps(RegistryParts):

    def repair(self, *, progress: Callable[[str, int, int], None] | None = None,
               actor: str | None = None) -> RepairReport:
        """Verify, then re-encode the objects an old writer left undecodable from bytes
        that still decode (repair.py), move those whose own bytes are damaged to
        .modelvc/aside/ (the next commit of their bytes stores them afresh), and verify
        again. Under the registry's exclusive
        lock; audited; when a policy names admins, only they may."""
        from .. import repair

        who = actor or default_author()
        pol = self._governance.policy()
        if pol is not None and pol.admins and not pol.is_admin(who):
            raise PermissionDenied(f"{who} may not repair the registry: it rewrites "
                                   "stored objects, which needs the admin role",
                                   hint="ask an admin (roles.admin in the policy)")
        with self._layout.lock(exclusive=True):
            return repair.repair(self._meta, self._io, actor=who, progress=progress,
                                 aside=self._layout.root / "aside")

    def audit_outside(self, *, action: str, target: str, model: str | None = None,
                      after: Any = None, reason: str = "", actor: str | None = None) -> int:
        """Record a change made outside the database (staged checkpoints dropped:
        `modelvc staging drop`) in the audit trail; its id."""
        from ..meta.api import AuditEntry

        return self._meta.append_audit(AuditEntry(
            actor=actor or default_author(), action=action, target=target, model=model,
            after=after, reason=reason))

    def scratch(self, name: str) -> Path:
        """A folder of the registry's for NAME's in-flight work (upload sessions, objects
        being received), shared by the processes on this registry: tmp/NAME."""
        return self._layout.root / "tmp" / name

    def config_value(self, key: str) -> Any:
        """An entry of the registry's config.json as on disk now (None if absent)."""
        config: dict[str, Any] = json.loads((self._layout.root / "config.json").read_text())
        return config.get(key)

    def set_config_value(self, key: str, value: Any) -> None:
        """Write an entry of config.json (atomically; its mode is kept)."""
        self._layout.set_config(key, value)

    def where(self) -> tuple[Path, str, str]:
        """The registry folder, its metadata database URL and its object store URL."""
        return self._layout.root, self._layout.meta_url, self._layout.objects_url

    def token_grant(self, secret_hash: str) -> tuple[Token, list[RoleBinding]] | None:
        """The API token with this sha256 and its subject's role bindings (one query;
        None if unknown). The caller checks revocation and expiry."""
        return self._meta.token_grant(secret_hash)

    def ref(self, model: str, name: str) -> Ref:
        """One ref (one indexed read: what a gateway polls). RefNotFound if absent."""
        return self._meta.get_ref(model, name)

    def change_token(self) -> object | None:
        """Differs after any metadata commit since it was read (a gateway reads it
        before polling its refs: equal, nothing moved); None if it cannot tell cheaply."""
        return self._meta.change_token()

    def version(self, version_id: str) -> Version:
        """A version by its full id, deleted or not (NotFound if unknown)."""
        return self._meta.get_version(version_id)

    def object_users(self, ids: Iterable[str], *, through_deltas: bool = False
                     ) -> dict[str, set[str]]:
        """Object id -> models whose live versions list it (or, through_deltas, list an
        object whose delta chain reaches it): who may see an object (server/scope.py)."""
        return self._meta.object_users(ids, through_deltas=through_deltas)

    def held_objects(self, ids: Iterable[str]) -> set[str]:
        """Which of these objects the store holds."""
        return self._store.has_many(ids)

    def create_model(self, name: str) -> None:
        """An empty model (a Hugging Face client's create_repo); nothing if it exists."""
        self._meta.ensure_model(name)

    # Upload records: what a subject proved to hold by sending its bytes (server/state.py
    # Possession), in the database so every server process on it agrees.
    def record_uploads(self, subject: str, ids: Iterable[str]) -> None:
        self._meta.record_uploads(subject, ids)

    def uploaded(self, subject: str, ids: Iterable[str], *, since: datetime) -> set[str]:
        """Which of these ids SUBJECT uploaded at or after SINCE."""
        return self._meta.uploaded(subject, ids, since=since)

    def expire_uploads(self, before: datetime) -> int:
        """Forget uploads older than BEFORE; how many went."""
        return self._meta.expire_uploads(before)

    def check_trust(self, version: Version) -> None:
        """Raise (SignatureInvalid...) unless the applied policy's trust section accepts
        VERSION: what checkout and load check, for routes that serve its bytes."""
        self._trust.check(version)

    def applied_policy(self) -> Policy | None:
        """The policy applied to this registry, parsed (None: none applied)."""
        return self._governance.policy()

    def check_ready(self) -> None:
        """Raise unless the metadata database and the object store answer."""
        self._meta.ping()
        self._store.has("0" * 64)

    def manifest_of(self, version_id: str) -> Manifest:
        """The manifest of a version by its full id (verified against it)."""
        from ..manifest import Manifest

        return Manifest.from_bytes(self._io.read_blob(version_id), expect_id=version_id)

    def manifest_bytes(self, version_id: str) -> bytes:
        """The manifest exactly as stored (its BLAKE3 is the version id)."""
        return self._io.read_blob(version_id)

    def tensor_bytes(self, object_id: str) -> Iterator[bytes]:
        """A tensor's raw little-endian bytes, block by block, verified (its last block
        held back until it is: see `held_back`)."""
        return held_back(bytes(x) for x in self._io.iter_tensor(object_id))

    def file_bytes(self, entry: FileEntry, start: int = 0, end: int | None = None
                   ) -> Iterator[bytes]:
        """A file's bytes [start, end) rebuilt segment by segment (tensors block by
        block, each object verified against its id); a whole-file read also checks the
        sha256 the manifest records, so a bad rebuild aborts instead of completing (the
        last piece held back until the checks passed: see `held_back`)."""
        return held_back(self._file_pieces(entry, start, end))

    def _file_pieces(self, entry: FileEntry, start: int, end: int | None
                     ) -> Iterator[bytes]:
        end = entry.size if end is None else end
        whole = start == 0 and end == entry.size
        h = hashlib.sha256() if whole else None
        pos = 0
        for seg in entry.segments:
            seg_end = pos + seg.size
            if seg_end <= start:
                pos = seg_end
                continue
            if pos >= end:
                break
            for part in self._io.iter_object(seg.id, seg.tensor is not None):
                n = len(part)
                lo, hi = max(start - pos, 0), min(end - pos, n)
                if hi > lo:
                    chunk = bytes(part[lo:hi]) if (lo, hi) != (0, n) else bytes(part)
                    if h is not None:
                        h.update(chunk)
                    yield chunk
                pos += n
            if pos != seg_end:
                raise CorruptObject(f"object {seg.id[:12]} rebuilds to the wrong size")
        if h is not None and h.hexdigest() != entry.sha256:
            raise CorruptObject(f"{entry.path} does not rebuild to its recorded sha256")


def held_back(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """PIECES, each passed on only once the next is made, the last once PIECES ended
    without error. An object's id (and a file's sha256) is checked after its last piece
    is made: an answer streamed with its Content-Length (a checkout, a Hub or MLflow
    download) then ends short when the check fails, which every HTTP client takes for
    a failed download, instead of complete with wrong bytes."""
    held: bytes | None = None
    for piece in pieces:
        if held is not None:
            yield held
        held = piece
    if held is not None:
        yield held
