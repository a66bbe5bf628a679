"""Hugging Face Hub compatibility: with HF_ENDPOINT pointed here, huggingface_hub and
transformers read versions (and upload_folder writes them, see hf_upload.py).

Read side (details in docs/huggingface.md):
    GET|HEAD /{repo_id}/resolve/{rev}/{path}       file bytes (200, or 206 for a Range)
    GET /api/models/{repo_id}[/revision/{rev}]     repo info: sha, siblings
    GET /api/models/{repo_id}/tree/{rev}[/{dir}]   file and directory listing
Repo ids are one or two segments, so routes key on the literal markers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import CorruptObject
from ..manifest import FileEntry, Manifest
from ..storage import ObjectIO
from . import hf_upload
from .hf_repo import (
    HfError,
    HfRoute,
    Resolved,
    access,
    resolve,
    server_state,
    split_api_path,
)

router = APIRouter(route_class=HfRoute, tags=["huggingface"])
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
    body = _iter_bytes(reg.io, entry, start, end)
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


def _iter_bytes(io: ObjectIO, entry: FileEntry, start: int, end: int) -> Iterator[bytes]:
    """The file's bytes [start, end) segment by segment (tensors block by block, each
    object verified against its id); a whole-file read also checks the sha256 that the
    ETag promised, so a bad rebuild aborts the response instead of completing it."""
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
        for part in io.iter_object(seg.id, seg.tensor is not None):
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


# ---- /api/models
@router.api_route("/api/models/{rest:path}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def api_models(rest: str, request: Request, recursive: str = "false") -> Response:
    repo_id, marker, tail = split_api_path(rest, ("revision", "tree"))
    _, model, reg = access(request, repo_id, "reader")
    private = not server_state(request).config.anonymous_read
    if marker is None:
        return JSONResponse(_info(resolve(reg, repo_id, model, "main"), private))
    if marker == "revision" and len(tail) == 1:
        return JSONResponse(_info(resolve(reg, repo_id, model, tail[0]), private))
    if marker == "tree":
        r = resolve(reg, repo_id, model, tail[0])
        deep = recursive.lower() in ("true", "1")
        return JSONResponse(_tree(r, "/".join(tail[1:]).strip("/"), deep))
    raise HfError(404, "EntryNotFound", f"no such endpoint /api/models/{rest}")


def _hub_time(t: datetime) -> str:
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _info(r: Resolved, private: bool) -> dict[str, Any]:
    v = r.version
    return {
        "_id": r.sha,
        "id": r.repo_id,
        "modelId": r.repo_id,
        "sha": r.sha,
        "lastModified": _hub_time(v.created_at),
        "createdAt": _hub_time(v.created_at),
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
        {"type": "directory", "path": d, "oid": _dir_oid(r.manifest, d), "size": 0}
        for d in sorted(dirs)
    ]
    out.extend({"type": "file", "path": f.path, "size": f.size, "oid": f.sha256}
               for f in files)
    return out


def _dir_oid(m: Manifest, d: str) -> str:
    """A stable id for a directory's content (the Hub gives a git tree id)."""
    h = hashlib.sha1(usedforsecurity=False)
    for f in m.files:
        if f.path.startswith(f"{d}/"):
            h.update(f"{f.path}\0{f.sha256}\n".encode())
    return h.hexdigest()
