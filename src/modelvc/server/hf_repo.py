"""Hugging Face Hub names and errors on top of the registry (shared by hf.py and hf_upload.py).

Repo ids: `NAME` is the model NAME and `ORG/NAME` is the model `ORG--NAME` (model names
cannot hold '/', and huggingface_hub refuses '--' inside repo ids, so the mapping is
one-to-one for every id a client can send). Revisions: `main` is the model's default
head (its `main` branch, or its newest version when it has none); anything else is a
modelvc selector: branch, channel, tag, `vN`, or a version id prefix, which covers the
40-hex commit ids we hand out (the first 40 hex digits of the BLAKE3 version id).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ..errors import (
    AmbiguousRef,
    InvalidName,
    InvalidRef,
    ModelNotFound,
    ModelvcError,
    RefNotFound,
    Unauthenticated,
    UsageError,
)
from ..manifest import Manifest
from ..meta.api import VersionRow
from ..names import check_name
from ..registry import Registry
from .auth import Principal, authenticate, authorize
from .state import ServerState

SHA_LEN = 40  # what Hub clients accept as a commit id ([0-9a-f]{40})


class HfError(Exception):
    """An error answered the way Hub clients understand: status plus X-Error-Code."""

    def __init__(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit

    def response(self) -> Response:
        headers = {"X-Error-Message": _header_text(self.message)}
        if self.code:  # no code: the Hub's plain errors (huggingface_hub shows the message)
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _header_text(message: str) -> str:
    """A header value: printable ASCII, one line, bounded (a NUL or a 5,000-character
    name echoed from the request must not break or bloat the response head)."""
    text = " ".join(message[:500].encode("ascii", "replace").decode().split())
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def hub_error(exc: ModelvcError, request: Request) -> HfError:
    """A modelvc error as the Hub answers it: the status, the message (and hint) in
    X-Error-Message, which huggingface_hub shows, and the Hub's code where it has one:
    a 401 on a repository's URL is RepoNotFound (the Hub's answer for a private repo),
    so transformers asks for a token instead of reporting "a connection error"."""
    text = f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message
    if isinstance(exc, Unauthenticated):
        path = request.url.path
        on_repo = path.startswith("/api/models/") or "/resolve/" in path
        return HfError(401, "RepoNotFound" if on_repo else "", text)
    return HfError(exc.http_status, "", text)


class HfRoute(APIRoute):
    """Routes whose errors become Hub-style error responses (routers cannot register
    exception handlers): HfError as it is, a ModelvcError (401, 403, 409, ...) through
    hub_error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except HfError as exc:
                return exc.response()
            except ModelvcError as exc:
                return hub_error(exc, request).response()

        return run


def repo_not_found(repo_id: str) -> HfError:
    return HfError(404, "RepoNotFound", f"Repository {repo_id} not found")


def model_name(repo_id: str) -> str:
    """`NAME` -> NAME, `ORG/NAME` -> ORG--NAME; anything else names no repository."""
    parts = repo_id.split("/")
    if len(parts) > 2 or any("--" in p for p in parts[1:]):
        raise repo_not_found(repo_id)
    name = "--".join(parts)
    try:
        return check_name(name, "repository name")
    except InvalidName as exc:
        raise repo_not_found(repo_id) from exc


def repo_id_of(model: str) -> str:
    """The inverse of model_name (for URLs we hand out)."""
    org, sep, name = model.partition("--")
    return f"{org}/{name}" if sep and name and "--" not in name else model


def hub_time(t: datetime) -> str:
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def commit_sha(version_id: str) -> str:
    return version_id[:SHA_LEN]


@dataclass(frozen=True)
class Resolved:
    repo_id: str
    model: str
    version: VersionRow
    manifest: Manifest

    @property
    def sha(self) -> str:
        return commit_sha(self.version.id)


class _ManifestCache:
    """Manifests by version id. Content-addressed, so entries never go stale; clients
    send a HEAD per file (transformers probes many), each would re-read the blob."""

    def __init__(self, size: int = 256) -> None:
        self._d: OrderedDict[str, Manifest] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, reg: Registry, version_id: str) -> Manifest:
        with self._lock:
            hit = self._d.get(version_id)
            if hit is not None:
                self._d.move_to_end(version_id)
                return hit
        m = reg.manifest_of(version_id)
        with self._lock:
            self._d[version_id] = m
            while len(self._d) > self._size:
                self._d.popitem(last=False)
        return m


_manifests = _ManifestCache()


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.modelvc
    return state


def access(request: Request, repo_id: str, role: str) -> tuple[Principal, str, Registry]:
    """Authenticate, map the repo id, authorize ROLE on the model: every route starts here."""
    state = server_state(request)
    principal = authenticate(request, state)
    model = model_name(repo_id)
    authorize(principal, role, model)
    return principal, model, state.registry()


class EmptyRepo(HfError):
    """`main` of a repository with no version yet: the Hub answers EntryNotFound (a
    fresh repo has no files), which push_to_hub and upload_folder expect."""

    def __init__(self, repo_id: str) -> None:
        super().__init__(404, "EntryNotFound", f"{repo_id} is empty: it has no version yet")


def resolve(reg: Registry, repo_id: str, model: str, revision: str) -> Resolved:
    """A Hub revision of a repo -> the version and its manifest, or a Hub-style 404."""
    try:
        reg.refs(model)  # ModelNotFound first: a missing repo is not a missing revision
    except ModelNotFound as exc:
        raise repo_not_found(repo_id) from exc
    try:
        v = reg.resolve(model if revision == "main" else f"{model}@{revision}")
    except (RefNotFound, AmbiguousRef, InvalidRef, InvalidName) as exc:
        if revision != "main":
            raise HfError(404, "RevisionNotFound",
                          f"Invalid rev id: {revision} ({exc.message})") from exc
        # Hub clients always ask for `main`: without a main branch it is the newest
        # version (the Registry API's bare MODEL refuses to guess instead).
        live = [x for x in reg.versions(model) if x.deleted_at is None]
        if not live:
            raise EmptyRepo(repo_id) from exc
        v = live[0]
    except UsageError as exc:
        raise HfError(404, "RevisionNotFound", f"Invalid rev id: {revision}") from exc
    reg.check_trust(v)  # the same policy as checkout and load: no unsigned bypass over HTTP
    return Resolved(repo_id, model, v, _manifests.get(reg, v.id))


def split_api_path(rest: str, markers: tuple[str, ...]) -> tuple[str, str | None, list[str]]:
    """`REPO_ID[/MARKER/TAIL...]` with a one- or two-segment repo id -> parts."""
    parts = rest.strip("/").split("/")
    for i in (1, 2):
        # `refs` takes no tail (so `ORG/refs` is the refs of repo ORG, not a repo)
        if (len(parts) > i + 1 or (len(parts) == i + 1 and parts[i] == "refs")) \
                and parts[i] in markers:
            return "/".join(parts[:i]), parts[i], parts[i + 1:]
    if len(parts) <= 2 and all(parts):
        return "/".join(parts), None, []
    raise no_endpoint(f"/api/models/{rest}")


def no_endpoint(path: str) -> HfError:
    """A 404 for a route this server does not have. No X-Error-Code: RepoNotFound would
    make clients say an existing repository does not exist."""
    return HfError(404, "", f"no such endpoint {path} on this modelvc server (see "
                   "docs/huggingface.md for the Hub endpoints it serves)")


def public_base(request: Request) -> str:
    url = server_state(request).config.public_url or str(request.base_url)
    return url.rstrip("/")


def tree_entry(r: Resolved, path: str) -> dict[str, Any] | None:
    """The tree entry of one path at the version: a file, a directory, or None."""
    f = r.manifest.file(path)
    if f is not None:
        return {"type": "file", "path": f.path, "size": f.size, "oid": f.sha256}
    if path and any(x.path.startswith(f"{path}/") for x in r.manifest.files):
        return {"type": "directory", "path": path, "oid": dir_oid(r.manifest, path),
                "size": 0}
    return None


def dir_oid(m: Manifest, d: str) -> str:
    """A stable id for a directory's content (the Hub gives a git tree id)."""
    h = hashlib.sha1(usedforsecurity=False)
    for f in m.files:
        if f.path.startswith(f"{d}/"):
            h.update(f"{f.path}\0{f.sha256}\n".encode())
    return h.hexdigest()
