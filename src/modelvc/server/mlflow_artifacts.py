"""MLflow's artifact proxy (`mlflow-artifacts:` URIs), as the MLflow client speaks it:

    PUT    /api/2.0/mlflow-artifacts/artifacts/{path}   upload one file (streamed)
    GET    /api/2.0/mlflow-artifacts/artifacts/{path}   download one file
    GET    /api/2.0/mlflow-artifacts/artifacts?path=    list a directory
    DELETE /api/2.0/mlflow-artifacts/artifacts/{path}   delete a staged file

Two spaces: `_modelvc/MODEL/N/...` is registered version N of MODEL, read from the
registry (bit-exact, each object verified; reader on MODEL); every other path is a run's
or a logged model's staged files (sidecar.artifacts), which become a version when
`create_model_version` names them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..errors import ModelNotFound, RefNotFound
from ..manifest import Manifest
from .auth import authenticate
from .mlflow import Ctx, MlflowError, bad, missing, router

BASE = "/api/2.0/mlflow-artifacts/artifacts"
REGISTERED = "_modelvc"


def _ctx(request: Request) -> Ctx:
    state = request.app.state.modelvc
    return Ctx(request, authenticate(request, state), state)


def _staged(ctx: Ctx, path: str) -> Path:
    root = ctx.side.artifacts.resolve()
    target = (root / path.strip("/")).resolve() if path.strip("/") else root
    if not target.is_relative_to(root):
        raise bad(f"invalid artifact path {path!r}")
    return target


def _registered(ctx: Ctx, path: str) -> tuple[str, Manifest, str]:
    """`_modelvc/MODEL/N/REST` -> (model, the version's manifest, REST)."""
    parts = path.strip("/").split("/", 3)
    if len(parts) < 3:
        raise missing(f"{path} names no registered model version (_modelvc/MODEL/N/...)")
    model, number, rest = parts[1], parts[2], parts[3] if len(parts) > 3 else ""
    ctx.need("reader", model)
    try:
        return model, ctx.reg.manifest(f"{model}@v{int(number)}"), rest
    except (ValueError, RefNotFound, ModelNotFound) as exc:
        raise missing(f"model version {model}/{number} not found") from exc


def _owner_check(ctx: Ctx, path: str) -> None:
    """A staged path is EXP/RUN/artifacts/... or EXP/models/MODEL_ID/artifacts/...: only
    the run's or logged model's creator writes there."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        doc = ctx.side.get("lm", parts[2])
        what, owner = f"logged model {parts[2]}", (doc or {}).get("creator")
    elif len(parts) >= 3 and parts[2] == "artifacts":
        doc = ctx.side.get("run", parts[1])
        what, owner = f"run {parts[1]}", (doc or {}).get("user_id")
    else:
        doc, what, owner = None, "", None
    if doc is None:
        raise bad(f"{path}: artifacts go under a run's or a logged model's artifact URI "
                  "(EXP/RUN_ID/artifacts/... or EXP/models/MODEL_ID/artifacts/...)")
    ctx.need_owner(owner, what)


def _registered_path(moved: tuple[str, int, str]) -> str:
    model, number, inner = moved
    return f"{REGISTERED}/{model}/{number}/{inner}".rstrip("/")


def _listing(ctx: Ctx, path: str) -> list[dict[str, Any]]:
    if path.strip("/").split("/")[0] == REGISTERED:
        _, manifest, rest = _registered(ctx, path)
        prefix = f"{rest.strip('/')}/" if rest.strip("/") else ""
        seen: dict[str, dict[str, Any]] = {}
        for f in manifest.files:
            if f.path == rest.strip("/"):
                return [{"path": f.path.rsplit("/", 1)[-1], "is_dir": False,
                         "file_size": f.size}]
            if not f.path.startswith(prefix):
                continue
            head, sep, _ = f.path[len(prefix):].partition("/")
            seen.setdefault(head, {"path": head, "is_dir": True} if sep else
                            {"path": head, "is_dir": False, "file_size": f.size})
        return list(seen.values())
    ctx.need_somewhere("reader")
    target = _staged(ctx, path)
    moved = None if target.exists() else ctx.side.moved_to(path)
    if moved is not None:  # registered since: listed from its version
        return _listing(ctx, _registered_path(moved))
    if target.is_file():
        return [{"path": target.name, "is_dir": False, "file_size": target.stat().st_size}]
    if not target.is_dir():
        return []
    return [{"path": p.name, "is_dir": True} if p.is_dir() else
            {"path": p.name, "is_dir": False, "file_size": p.stat().st_size}
            for p in sorted(target.iterdir())]


@router.get(BASE, include_in_schema=False)
async def list_artifacts(request: Request) -> Response:
    ctx = _ctx(request)
    files = await run_in_threadpool(_listing, ctx, request.query_params.get("path", ""))
    return JSONResponse({"files": files})


@router.get(BASE + "/{path:path}", include_in_schema=False)
async def download(request: Request, path: str) -> Response:
    ctx = _ctx(request)
    if path.strip("/").split("/")[0] == REGISTERED:
        model, manifest, rest = await run_in_threadpool(_registered, ctx, path)
        entry = manifest.file(rest)
        if entry is None:
            raise missing(f"{rest} is not a file of {model} ({path})")
        reg = ctx.reg

        def chunks() -> Iterator[bytes]:
            yield from reg.file_bytes(entry)

        return StreamingResponse(chunks(), media_type="application/octet-stream", headers={
            "Content-Length": str(entry.size), "X-Sha256": entry.sha256,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(rest)}"})
    ctx.need_somewhere("reader")
    target = _staged(ctx, path)
    if not target.exists():
        moved = await run_in_threadpool(ctx.side.moved_to, path)
        if moved is not None:  # registered since: served from its version
            return await download(request, _registered_path(moved))
    if not target.is_file():
        raise missing(f"artifact {path} not found")
    return FileResponse(target, media_type="application/octet-stream")


@router.put(BASE + "/{path:path}", include_in_schema=False)
async def upload(request: Request, path: str) -> Response:
    ctx = _ctx(request)
    if path.strip("/").split("/")[0] == REGISTERED or not path.strip("/"):
        raise MlflowError("PERMISSION_DENIED", "registered versions are immutable: log a new "
                          "model and register it as a new version")
    ctx.need_somewhere()
    await run_in_threadpool(_owner_check, ctx, path)
    target = _staged(ctx, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                await run_in_threadpool(out.write, chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return JSONResponse({})


@router.delete(BASE + "/{path:path}", include_in_schema=False)
async def delete(request: Request, path: str) -> Response:
    ctx = _ctx(request)
    if path.strip("/").split("/")[0] == REGISTERED:
        raise MlflowError("PERMISSION_DENIED", "registered versions are deleted through "
                          "delete_model_version, not their files")
    ctx.need_somewhere()
    await run_in_threadpool(_owner_check, ctx, path)
    target = _staged(ctx, path)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    return JSONResponse({})
