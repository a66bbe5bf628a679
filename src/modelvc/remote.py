"""RemoteRegistry: the Registry API against a `modelvc server` (http:// or https://).

`Registry.open("http://host:port", token=...)` returns one. It has the same public
methods and dataclass results as the local Registry, and raises the same modelvc.errors
classes (the server sends each error's `code`). A commit hashes segments locally and
uploads only the raw segments the server lacks; the server encodes them (deltas and
all) and computes the version id. A segment larger than one chunk goes up in chunks
into an upload session, so a commit cut off mid-tensor resumes from what the server
holds (remote_commit.py). Checkouts stream files and verify their sha256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import blake3

from . import errors
from .checkout import CheckoutResult, Stage, TensorDict, plan_targets, reading, to_array
from .client.transport import Transport
from .diff import VersionDiff
from .errors import CorruptObject
from .maintenance import GcReport, VerifyReport, check_grace
from .manifest import FileEntry, Manifest, SegmentRef
from .meta.api import AuditRow, RefMove, RefRow, VersionRow
from .records import UNSET, FileStorage, Unset
from .remote_areas import (
    RemoteDeployments,
    RemoteGates,
    RemoteKeys,
    RemoteRoles,
    RemoteSignatures,
    RemoteTokens,
)
from .remote_commit import API, RemoteWrites
from .storage import ObjectIO
from .wire.values import decode, decode_as

if TYPE_CHECKING:
    from .events import RemoteEvents


class RemoteRegistry(RemoteWrites):
    """A registry behind a modelvc server."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 300.0) -> None:
        self._t = Transport(url, token=token, timeout=timeout)
        self.url = self._t.url

    @cached_property
    def events(self) -> RemoteEvents:
        """Webhooks through the server (admin on '*'), as Registry.events locally."""
        from .events import RemoteEvents

        return RemoteEvents(self._call)

    # ---- the areas of RegistryAPI (modelvc.remote_areas)
    @cached_property
    def keys(self) -> RemoteKeys:
        return RemoteKeys(self._call)

    @cached_property
    def signatures(self) -> RemoteSignatures:
        return RemoteSignatures(self._call)

    @cached_property
    def gates(self) -> RemoteGates:
        return RemoteGates(self._call)

    @cached_property
    def tokens(self) -> RemoteTokens:
        return RemoteTokens(self._call)

    @cached_property
    def roles(self) -> RemoteRoles:
        return RemoteRoles(self._call)

    @cached_property
    def deployments(self) -> RemoteDeployments:
        return RemoteDeployments(self._call)

    @property
    def location(self) -> str:
        return self.url

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> RemoteRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport
    def _call(self, method: str, path: str, *, raw: bool = False, **kw: Any) -> Any:
        resp = self._t.request(method, API + path, **kw)
        if not raw and resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    def _get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items()
                                                if v is not None})

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json=body)

    @staticmethod
    def _q(name: str) -> str:
        return quote(name, safe="")

    # ---- reading
    def whoami(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._get("/whoami"))

    def models(self) -> list[str]:
        return cast(list[str], self._get("/models"))

    def versions(self, model: str) -> list[VersionRow]:
        return decode(list[VersionRow], self._get(f"/models/{self._q(model)}/versions"))  # type: ignore[no-any-return]

    def resolve(self, ref: str, *, deleted: bool = False) -> VersionRow:
        return decode_as(VersionRow, self._get("/resolve", ref=ref, deleted=deleted))

    def log(self, ref: str) -> list[VersionRow]:
        return decode(list[VersionRow], self._get("/log", ref=ref))  # type: ignore[no-any-return]

    def manifest(self, ref: str) -> Manifest:
        v = self.resolve(ref)
        return self._manifest(v)

    def _manifest(self, v: VersionRow) -> Manifest:
        data = self._call("GET", "/manifest", raw=True, params={"ref": f"{v.model}@{v.id}"})
        return Manifest.from_bytes(data, expect_id=v.id)

    def storage(self, ref: str) -> list[FileStorage]:
        return decode(list[FileStorage], self._get("/storage", ref=ref))  # type: ignore[no-any-return]

    def refs(self, model: str, kind: str | None = None) -> list[RefRow]:
        return decode(list[RefRow], self._get(f"/models/{self._q(model)}/refs", kind=kind))  # type: ignore[no-any-return]

    def history(self, model: str, name: str | None = None) -> list[RefMove]:
        return decode(list[RefMove], self._get(f"/models/{self._q(model)}/history", name=name))  # type: ignore[no-any-return]

    def at(self, model: str, name: str, when: datetime) -> VersionRow | None:
        data = self._get(f"/models/{self._q(model)}/at", name=name, when=when.isoformat())
        return decode_as(VersionRow, data) if data else None

    def diff(self, a: str, b: str, *, numeric: bool = True,
             progress: Callable[[int, int], None] | None = None) -> VersionDiff:
        return decode_as(VersionDiff, self._get("/diff", a=a, b=b, numeric=numeric))

    def stats(self, model: str | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], self._get("/stats", model=model))

    def audit(self, *, model: str | None = None, channel: str | None = None,
              actor: str | None = None, action: str | None = None,
              since: datetime | None = None, until: datetime | None = None,
              after: int | None = None, before: int | None = None,
              limit: int | None = None, newest: bool = False) -> list[AuditRow]:
        data = self._get("/audit", model=model, channel=channel, actor=actor, action=action,
                         since=since.isoformat() if since else None,
                         until=until.isoformat() if until else None,
                         after=after, before=before, limit=limit, newest=newest or None)
        return decode(list[AuditRow], data)  # type: ignore[no-any-return]

    def verify_audit(self) -> list[str]:
        return cast(list[str], self._get("/audit/verify"))

    # ---- refs
    def create_branch(self, model: str, name: str, *, at: str | None = None,
                      actor: str | None = None) -> RefRow:
        """`actor` is ignored: the server records the token's subject."""
        return decode_as(RefRow, self._post(f"/models/{self._q(model)}/branches",
                                            {"name": name, "at": at}))

    def delete_ref(self, model: str, name: str, *, actor: str | None = None,
                   reason: str = "") -> None:
        self._call("DELETE", f"/models/{self._q(model)}/refs/{self._q(name)}",
                   params={"reason": reason})

    def tag(self, ref: str, name: str, *, actor: str | None = None) -> RefRow:
        model = ref.partition("@")[0]
        return decode_as(RefRow, self._post(f"/models/{self._q(model)}/tags",
                                            {"ref": ref, "name": name}))

    def promote(self, ref: str, channel: str, *, reason: str = "", actor: str | None = None,
                expected: str | Unset | None = UNSET, force: bool = False,
                create: bool = False) -> RefRow:
        given = not isinstance(expected, Unset)
        model = ref.partition("@")[0]
        body = {"ref": ref, "reason": reason, "force": force, "expected_given": given,
                "expected": expected if given else None, "create": create}
        return decode_as(RefRow, self._post(
            f"/models/{self._q(model)}/channels/{self._q(channel)}/promote", body))

    def rollback(self, model: str, channel: str, *, to: str | None = None, reason: str = "",
                 actor: str | None = None) -> RefRow:
        return decode_as(RefRow, self._post(
            f"/models/{self._q(model)}/channels/{self._q(channel)}/rollback",
            {"to": to, "reason": reason}))

    # ---- maintenance
    def delete(self, ref: str, *, reason: str = "", actor: str | None = None) -> int:
        return int(self._post("/versions/delete", {"ref": ref, "reason": reason}))

    def verify(self, *, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        return decode_as(VerifyReport, self._post("/verify", {}))

    def gc(self, *, dry_run: bool = True, grace_seconds: float = 3600.0,
           progress: Callable[[int, int], None] | None = None) -> GcReport:
        check_grace(grace_seconds)  # the local wording and hint, not the schema's
        return decode_as(GcReport, self._post("/gc", {"dry_run": dry_run,
                                                      "grace_seconds": grace_seconds}))

    # ---- checkout and load
    def checkout(self, ref: str, dest: str | Path, *, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> CheckoutResult:
        """Download the version's files into DEST, each verified against its sha256."""
        v = self.resolve(ref)
        m = self._manifest(v)
        dest = Path(dest)
        targets, others = plan_targets(m, dest, force=force, label=f"{v.model}@v{v.number}")
        done = 0
        with Stage() as stage:  # all or nothing, as a local checkout
            for entry, target in targets:
                for n in self._download(v, entry, target, stage):
                    done += n
                    if progress:
                        progress(done, m.raw_size)
        return CheckoutResult(dest, len(targets), m.raw_size, others)

    def _download(self, v: VersionRow, entry: FileEntry, target: Path, stage: Stage
                  ) -> Iterator[int]:
        """Stream ENTRY into TARGET (renamed into place only once whole and matching its
        sha256); yields the bytes written. A stream cut short (the server holds back an
        object's last piece until its id is checked: a damaged one cuts the answer) or
        with the wrong sha256 is asked for once more with `check`: the server then
        verifies the file before it answers, so a damaged object on the server comes
        back as its error (naming the version and file, and what to do), not as a
        dropped connection; a cut or a flipped bit in transit just heals."""
        label = f"{v.model}@v{v.number}, {entry.path}"
        url = f"{API}/versions/{v.id}/files/{quote(entry.path)}"
        told = 0  # bytes yielded so far (a second try yields only what is beyond)
        with reading(label), stage.writing(target) as out:
            for again in (False, True):
                out.seek(0)
                out.truncate()
                h = hashlib.sha256()
                got = 0
                try:
                    with self._t.stream("GET", url, params={"check": "1"} if again else None
                                        ) as resp:
                        for chunk in resp.iter_bytes(1 << 20):
                            out.write(chunk)
                            h.update(chunk)
                            got += len(chunk)
                            if got > told:
                                yield got - told
                                told = got
                except errors.StorageError:  # cut short (or unreachable): once more
                    if again:
                        raise
                    continue
                if got == entry.size and h.hexdigest() == entry.sha256:
                    break
                if again:
                    raise CorruptObject(
                        f"the file arrived damaged twice ({got} bytes, sha256 "
                        f"{h.hexdigest()[:12]}; the version records {entry.size} bytes, "
                        f"sha256 {entry.sha256[:12]}), though the server found it sound",
                        hint="something between the server and this machine (a proxy, "
                             "the network) changes the bytes: run the checkout again, or "
                             "from elsewhere; if it persists, run `modelvc verify` "
                             "against the server")

    def load(self, ref: str, *, framework: str = "numpy", file: str | None = None) -> TensorDict:
        v = self.resolve(ref)
        return RemoteTensorDict(self, v, self._manifest(v), framework=framework, file=file)

    def _tensor_bytes(self, v: VersionRow, oid: str) -> bytes:
        """The tensor's raw bytes, verified; an answer cut short or damaged is asked for
        once more with `check`, as a file in `_download`."""
        path = f"/versions/{v.id}/tensors/{oid}"
        try:
            raw = self._call("GET", path, raw=True)
        except errors.StorageError:
            raw = None
        if raw is None or blake3.blake3(raw).hexdigest() != oid:
            raw = self._call("GET", path, raw=True, params={"check": "1"})
            if blake3.blake3(raw).hexdigest() != oid:
                raise CorruptObject(
                    f"tensor object {oid[:12]} arrived damaged twice, though the server "
                    "found it sound",
                    hint="something between the server and this machine (a proxy, the "
                         "network) changes the bytes: load it again, or from elsewhere; "
                         "if it persists, run `modelvc verify` against the server")
        return cast(bytes, raw)


class RemoteTensorDict(TensorDict):
    """TensorDict whose tensors are downloaded (and verified) when first accessed."""

    def __init__(self, remote: RemoteRegistry, v: VersionRow, manifest: Manifest, *,
                 framework: str, file: str | None) -> None:
        super().__init__(cast(ObjectIO, None), manifest, framework=framework, file=file,
                         label=f"{v.model}@v{v.number}")
        self._remote, self._v = remote, v

    def __getitem__(self, name: str) -> Any:
        seg: SegmentRef = self._segs[name]
        with self.reading(name):
            raw = self._remote._tensor_bytes(self._v, seg.id)
        return to_array(raw, seg.dtype or "U8", seg.shape or (), self._framework)
