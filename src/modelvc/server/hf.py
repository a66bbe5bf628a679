"""Hugging Face Hub compatibility: with HF_ENDPOINT pointed here, huggingface_hub and
transformers read versions (and upload_folder writes them, see hf_upload.py).

Read side (details in docs/huggingface.md):
    GET|HEAD /{repo_id}/resolve/{rev}/{path}       file bytes (200, or 206 for a Range)
    GET /api/models/{repo_id}[/revision/{rev}]     repo info: sha, siblings
    GET /api/models/{repo_id}/tree/{rev}[/{dir}]   file and directory listing
Repo ids are one or two segments, so routes key on the literal markers.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ..formats.detect import PICKLE_EXTS
from ..manifest import FileEntry
from . import hf_account, hf_refs, hf_upload
from .hf_repo import (
    EmptyRepo,
    HfError,
    HfRoute,
    Resolved,
    access,
    dir_oid,
    hub_time,
    no_endpoint,
    resolve,
    server_state,
    split_api_path,
)

router = APIRouter(route_class=HfRoute, tags=["huggingface"])
# The specific routes first: hf_upload's POST /api/models/{rest:path} takes the rest.
router.include_router(hf_account.router)
router.include_router(hf_refs.router)
router.include_router(hf_upload.router)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# ---- files
@router.api_route("/{repo}/resolve/{rest:path}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def resolve_one(repo: str, rest: str, request: Request) -> Response:
    return _resolve_file(request, repo, rest)


@router.api_route("/{org}/{repo}/resolve/{rest:path}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def resolve_two(org: str, repo: str, rest: str, request: Request) -> Response:
    return _resolve_file(request, f"{org}/{repo}", rest)


def _resolve_file(request: Request, repo_id: str, rest: str) -> Response:
    revision, _, path = rest.partition("/")
    _, model, reg = access(request, repo_id, "reader")
    r = resolve(reg, repo_id, model, revision)
    entry = r.manifest.file(path) if path else None
    if entry is None:
        raise HfError(404, "EntryNotFound", f"{path or '(empty path)'} does not exist "
                      f"at revision {revision} of {repo_id}", commit=r.sha)
    headers = {
        "X-Repo-Commit": r.sha,
        "ETag": f'"{entry.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        # RFC 6266/5987: header values are latin-1, file names may be anything.
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        # Commits are immutable: a commit URL may be cached, a branch/channel URL may move.
        "Cache-Control": "public, max-age=31536000, immutable" if r.sha == revision
        else "no-cache",
    }
    start, end, status = 0, entry.size, 200
    wanted = request.headers.get("range")
    if wanted:
        parsed = _parse_range(wanted, entry.size)
        if parsed is None:
            headers["Content-Range"] = f"bytes */{entry.size}"
            return Response(status_code=416, headers=headers)
        start, end = parsed
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = reg.file_bytes(entry, start, end)
    return StreamingResponse(body, status_code=status, headers=headers)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` / `bytes=a-` / `bytes=-n` range -> [start, end), None if unsatisfiable.
    Multi-range requests are not something Hub clients send; they get None (416)."""
    m = _RANGE.match(value.strip())
    if not m or not (m.group(1) or m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        return (max(0, size - n), size) if n > 0 and size > 0 else None
    start = int(m.group(1))
    end = min(size, int(m.group(2)) + 1) if m.group(2) else size
    return (start, end) if start < end else None


# ---- /api/models
@router.api_route("/api/models/{rest:path}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def api_models(rest: str, request: Request, recursive: str = "false") -> Response:
    repo_id, marker, tail = split_api_path(rest, ("revision", "tree", "refs", "commits"))
    _, model, reg = access(request, repo_id, "reader")
    private = not server_state(request).config.anonymous_read
    security = request.query_params.get("securityStatus", "").lower() in ("true", "1")
    if marker is None or (marker == "revision" and len(tail) == 1):
        try:
            r = resolve(reg, repo_id, model, tail[0] if tail else "main")
        except EmptyRepo:  # a fresh repo: the Hub answers its info with no files
            return JSONResponse(_empty_info(repo_id, private))
        return JSONResponse(_info(r, private, security))
    if marker == "tree" and tail:
        try:
            r = resolve(reg, repo_id, model, tail[0])
        except EmptyRepo:
            return JSONResponse([])
        deep = recursive.lower() in ("true", "1")
        return JSONResponse(_tree(r, "/".join(tail[1:]).strip("/"), deep))
    if marker == "refs" and not tail:
        return JSONResponse(hf_refs.refs(reg, repo_id, model))
    if marker == "commits" and len(tail) == 1:
        return JSONResponse(hf_refs.commits(reg, resolve(reg, repo_id, model, tail[0])))
    raise no_endpoint(f"/api/models/{rest}")


def _empty_info(repo_id: str, private: bool) -> dict[str, Any]:
    return {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": None,
            "private": private, "disabled": False, "gated": False, "downloads": 0,
            "likes": 0, "tags": [], "siblings": []}


def _info(r: Resolved, private: bool, security: bool = False) -> dict[str, Any]:
    v = r.version
    extra: dict[str, Any] = {}
    if security:
        # modelvc never unpickles and runs no malware scanner: no scan was done, and the
        # pickle files (the files a scan is about) are named, for the caller to judge.
        extra["securityRepoStatus"] = {
            "scansDone": False,
            "filesWithIssues": [{"path": f.path, "level": "caution",
                                 "pickleImports": None} for f in r.manifest.files
                                if PurePosixPath(f.path).suffix in PICKLE_EXTS]}
    return extra | {
        "_id": r.sha,
        "id": r.repo_id,
        "modelId": r.repo_id,
        "sha": r.sha,
        "lastModified": hub_time(v.created_at),
        "createdAt": hub_time(v.created_at),
        "private": private,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": [{"rfilename": f.path, "size": f.size, "blobId": f.sha256}
                     for f in r.manifest.files],
        "modelvc": {"model": r.model, "version": v.number, "id": v.id,
                    "message": v.message, "author": v.author},
    }


def _tree(r: Resolved, base: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = f"{base}/" if base else ""
    files: list[FileEntry] = []
    dirs: set[str] = set()
    for f in r.manifest.files:
        if not f.path.startswith(prefix):
            continue
        parts = f.path[len(prefix):].split("/")
        depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
        dirs.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        if recursive or len(parts) == 1:
            files.append(f)
    if base and not files and not dirs:
        raise HfError(404, "EntryNotFound", f"{base} does not exist in {r.repo_id}",
                      commit=r.sha)
    out: list[dict[str, Any]] = [
        {"type": "directory", "path": d, "oid": dir_oid(r.manifest, d), "size": 0}
        for d in sorted(dirs)
    ]
    out.extend({"type": "file", "path": f.path, "size": f.size, "oid": f.sha256}
               for f in files)
    return out


@router.api_route("/api/models/{rest:path}", methods=["PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
def api_models_other(rest: str, request: Request) -> Response:
    """Settings, discussions and the like: a 404 that names no missing repository."""
    repo_id, _, _ = split_api_path(rest, ("settings", "discussions", "branch", "tag"))
    access(request, repo_id, "reader")
    raise no_endpoint(f"/api/models/{rest}")
