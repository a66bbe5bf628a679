"""Hugging Face Hub names and errors on top of the registry (shared by hf.py and hf_upload.py).

Repo ids: `NAME` is the model NAME and `ORG/NAME` is the model `ORG--NAME` (model names
cannot hold '/', and huggingface_hub refuses '--' inside repo ids, so the mapping is
one-to-one for every id a client can send). Revisions: `main` is the model's default
head (its `main` branch, or its newest version when it has none); anything else is a
modelvc selector: branch, channel, tag, `vN`, or a version id prefix, which covers the
40-hex commit ids we hand out (the first 40 hex digits of the BLAKE3 version id).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ..errors import (
    AmbiguousRef,
    InvalidName,
    InvalidRef,
    ModelNotFound,
    RefNotFound,
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
        headers = {"X-Error-Code": self.code,
                   "X-Error-Message": self.message.encode("ascii", "replace").decode()}
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


class HfRoute(APIRoute):
    """Routes whose HfError becomes the Hub-style error response (routers cannot register
    exception handlers; other errors go on to the app's ModelvcError handler)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except HfError as exc:
                return exc.response()

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
        m = reg._manifest(version_id)
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


def resolve(reg: Registry, repo_id: str, model: str, revision: str) -> Resolved:
    """A Hub revision of a repo -> the version and its manifest, or a Hub-style 404."""
    try:
        reg.meta.get_model(model)
    except ModelNotFound as exc:
        raise repo_not_found(repo_id) from exc
    try:
        v = reg.resolve(model if revision == "main" else f"{model}@{revision}")
    except (RefNotFound, AmbiguousRef, InvalidRef, InvalidName) as exc:
        raise HfError(404, "RevisionNotFound",
                      f"Invalid rev id: {revision} ({exc.message})") from exc
    except UsageError as exc:
        raise HfError(404, "RevisionNotFound", f"Invalid rev id: {revision}") from exc
    reg.trust.check(v)  # the same policy as checkout and load: no unsigned bypass over HTTP
    return Resolved(repo_id, model, v, _manifests.get(reg, v.id))


def split_api_path(rest: str, markers: tuple[str, ...]) -> tuple[str, str | None, list[str]]:
    """`REPO_ID[/MARKER/TAIL...]` with a one- or two-segment repo id -> parts."""
    parts = rest.strip("/").split("/")
    for i in (1, 2):
        if len(parts) > i + 1 and parts[i] in markers:
            return "/".join(parts[:i]), parts[i], parts[i + 1:]
    if len(parts) <= 2 and all(parts):
        return "/".join(parts), None, []
    raise HfError(404, "RepoNotFound", f"no such endpoint /api/models/{rest}")


def public_base(request: Request) -> str:
    url = server_state(request).config.public_url or str(request.base_url)
    return url.rstrip("/")
