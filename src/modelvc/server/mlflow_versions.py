"""MLflow model versions on modelvc: version N of a registered model is `MODEL@vN`,
committed from the staged files its `source` names (a logged model, a run's artifacts);
stages Staging/Production are the channels of those names (docs/mlflow.md)."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..mlflow.filters import matches, order, parse
from .mlflow import Ctx, api, bad, edited_tags, missing, need_str, paged
from .mlflow_registry import (
    ALL_STAGES,
    STAGE_CHANNEL,
    STAGES,
    _channels,
    _exists,
    _list,
    _live,
    _name,
    _need_model,
    _retire,
    _tag_dict,
    _touch,
    _touch_version,
    _version,
    version_json,
)


# ---- model versions
def source_path(ctx: Ctx, source: str) -> str:
    """The staged path (under sidecar.artifacts) a version's source names."""
    rel: str | None = None
    if source.startswith("models:/m-"):
        lm = ctx.side.get("lm", source[len("models:/"):].strip("/"))
        if lm is None:
            raise missing(f"logged model {source} not found on this server")
        rel = lm["artifact_path"]
    elif source.startswith("mlflow-artifacts:"):
        rel = urlparse(source).path
    elif source.startswith("runs:/"):
        rid, _, sub = source[len("runs:/"):].partition("/")
        run = ctx.side.get("run", rid)
        if run is None:
            raise missing(f"run {rid} not found on this server")
        rel = f"{run['artifact_path']}/{sub}"
    elif "/api/2.0/mlflow-artifacts/artifacts/" in source:
        rel = source.split("/api/2.0/mlflow-artifacts/artifacts/", 1)[1]
    if rel is None:
        raise bad(f"source {source!r} is not on this server: log the model through it "
                  "(MLFLOW_TRACKING_URI set to this server) or bring an existing registry "
                  "with `modelvc import mlflow`")
    return rel.strip("/")


def _materialize(ctx: Ctx, source: str, rel: str, tmp: Path) -> tuple[Path, bool]:
    """The files of REL: staged (True), or checked out of the version they became
    (a logged model registered under a second name)."""
    root = ctx.side.artifacts.resolve()
    staged = (root / rel).resolve()
    if not staged.is_relative_to(root) or staged == root:
        raise bad(f"invalid source {source!r}")
    if staged.exists():
        return staged, True
    moved = ctx.side.moved_to(rel)
    if moved is None:
        raise missing(f"no artifacts at {source} on this server")
    model, number, inner = moved
    ctx.need("reader", model)
    ctx.reg.checkout(f"{model}@v{number}", tmp / "co")
    path = (tmp / "co" / inner).resolve() if inner else tmp / "co"
    if not path.is_relative_to(tmp / "co") or not path.exists():
        raise missing(f"no artifacts at {source} on this server")
    return path, False


@api("POST", "/model-versions/create", "writer")
def create_model_version(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name, source = _name(body), need_str(body, "source")
    ctx.need("writer", name)
    run_id = str(body.get("run_id") or "")
    rel = source_path(ctx, source)
    model_id = str(body.get("model_id") or "")
    if source.startswith("models:/m-"):
        model_id = model_id or source[len("models:/"):]
    lm = ctx.side.get("lm", model_id) if model_id else None
    run_id = run_id or (lm or {}).get("source_run_id", "")
    run = ctx.side.get("run", run_id) if run_id else None
    # The run's params and metrics (their latest values) are the version's lineage.
    params = {**(lm or {}).get("params", {}), **(run or {}).get("params", {})}
    metrics = {k: m["value"] for k, m in (run or {}).get("latest", {}).items()
               if math.isfinite(m["value"])}  # a NaN loss stays in the run, not the version
    description = str(body.get("description") or "")
    with tempfile.TemporaryDirectory() as cwd:  # no git of the server's own folder
        path, staged = _materialize(ctx, source, rel, Path(cwd))
        v = ctx.reg.commit(path, model=name, message=description or f"mlflow: {source}",
                           params=params, metrics=metrics, author=ctx.who, cwd=cwd,
                           lineage={"mlflow": {"source": source, "run_id": run_id,
                                               "model_id": model_id}})
    if staged:  # the registry holds the files now (deltas and all): no second copy
        ctx.side.mark_registered(rel, name, v.number,
                                 file=path.name if path.is_file() else None)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    doc = ctx.side.get("rm", name)
    if doc is None or doc.get("deleted"):
        _touch(ctx, name, user_id=ctx.who, deleted=False)
    _touch_version(ctx, v, description=description, source=source, run_id=run_id,
                   tags=_tag_dict(body.get("tags")), run_link=body.get("run_link") or "",
                   model_id=model_id)
    return {"model_version": version_json(ctx, v)}


@api("GET", "/model-versions/get", "reader")
def get_model_version(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name)
    return {"model_version": version_json(ctx, _version(ctx, name, body.get("version")))}


@api("PATCH", "/model-versions/update", "writer")
def update_model_version(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "writer")
    v = _version(ctx, name, body.get("version"))
    if "description" in body:
        _touch_version(ctx, v, description=str(body.get("description") or ""))
    return {"model_version": version_json(ctx, v)}


@api("DELETE", "/model-versions/delete", "admin")
def delete_model_version(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "admin")
    v = _version(ctx, name, body.get("version"))
    _retire(ctx, v, "mlflow delete_model_version")
    ctx.side.delete("mv", f"{name}/{v.number}")
    return {}


@api("GET", "/model-versions/search", None)
def search_model_versions(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    conds = parse(body.get("filter"))
    names = [c[2] for c in conds if c[0] == "name" and c[1] == "="]
    candidates = names or sorted(set(ctx.reg.models()))
    rows = []
    for name in candidates:
        if not ctx.may("reader", name) or not _exists(ctx, name):
            continue
        chans = _channels(ctx, name)
        for v in _live(ctx, name):
            j = version_json(ctx, v, chans)
            row = {"name": name, "version_number": v.number, "run_id": j["run_id"],
                   "source_path": j["source"], "tags": {t["key"]: t["value"]
                                                        for t in j["tags"]},
                   "current_stage": j["current_stage"], "user_id": v.author}
            if matches(conds, row):
                j["version_number"] = v.number
                rows.append(j)
    rows = order(rows, _list(body.get("order_by")), ["name ASC", "version_number DESC"])
    out = paged("model_versions", rows, body, limit=200_000)
    for j in out["model_versions"]:
        j.pop("version_number", None)
    return out


api("POST", "/model-versions/search", None)(search_model_versions)


@api("GET", "/model-versions/get-download-uri", "reader")
def get_download_uri(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name)
    v = _version(ctx, name, body.get("version"))
    return {"artifact_uri": f"mlflow-artifacts:/_modelvc/{name}/{v.number}"}


@api("POST", "/model-versions/transition-stage", "promoter")
def transition_stage(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """Staging/Production: the version is promoted to the channel of that name (gated);
    Archived/None: recorded, and refused for a version a stage channel still holds."""
    name = _name(body)
    _need_model(ctx, name, "promoter")
    v = _version(ctx, name, body.get("version"))
    stage = need_str(body, "stage").lower()
    if stage not in ("none", "staging", "production", "archived"):
        raise bad(f"invalid stage {body['stage']!r}: one of {', '.join(ALL_STAGES)}")
    chans = _channels(ctx, name)
    if stage in STAGE_CHANNEL:
        ch = STAGE_CHANNEL[stage]
        before = chans.get(ch)
        ctx.reg.promote(f"{name}@v{v.number}", ch, actor=ctx.who, create=True,
                        reason=f"mlflow transition_model_version_stage {STAGES[ch]}")
        _touch_version(ctx, v, stage="None")  # the channel says Staging/Production
        archive = str(body.get("archive_existing_versions", "")).lower() == "true"
        if archive and before and before != v.id:
            old = ctx.reg.resolve(f"{name}@{before}")
            _touch_version(ctx, old, stage="Archived")
    else:
        held = [c for c in ("staging", "production") if chans.get(c) == v.id]
        if held:
            raise bad(f"{name} v{v.number} is what the channel {held[0]} serves: move that "
                      f"channel to another version first (transition another version to "
                      f"{STAGES[held[0]]}, or `modelvc rollback {name} {held[0]}`)")
        _touch_version(ctx, v, stage="Archived" if stage == "archived" else "None")
    return {"model_version": version_json(ctx, ctx.reg.resolve(f"{name}@v{v.number}"))}


@api("POST", "/model-versions/set-tag", "writer")
def set_model_version_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "writer")
    v = _version(ctx, name, body.get("version"))
    _touch_version(ctx, v, tags=edited_tags(ctx.side.get("mv", f"{name}/{v.number}"), body))
    return {}


@api("DELETE", "/model-versions/delete-tag", "writer")
def delete_model_version_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "writer")
    v = _version(ctx, name, body.get("version"))
    _touch_version(ctx, v, tags=edited_tags(ctx.side.get("mv", f"{name}/{v.number}"), body,
                                            delete=True))
    return {}
