"""MLflow 3 logged models on modelvc's MLflow API: a model's files logged outside a run
(or as a run's output) before they are registered; kept in the sidecar beside the runs
and experiments of mlflow_tracking.py. Writing needs the writer role on some model,
reading the reader role on some model.
"""

from __future__ import annotations

import uuid
from typing import Any

from .mlflow import Ctx, api, bad, missing, need_str, paged
from .mlflow_tracking import DEFAULT, _experiment, _kv, _now, _pairs


def _lm(ctx: Ctx, model_id: str) -> dict[str, Any]:
    doc = ctx.side.get("lm", model_id)
    if doc is None:
        raise missing(f"Logged model with ID '{model_id}' not found.")
    return doc


def _lm_json(model_id: str, d: dict[str, Any]) -> dict[str, Any]:
    info = {"model_id": model_id, "experiment_id": d["experiment_id"], "name": d["name"],
            "creation_timestamp_ms": d["created"], "last_updated_timestamp_ms":
            d.get("updated", d["created"]), "artifact_uri":
            f"mlflow-artifacts:/{d['artifact_path']}", "status": d["status"],
            "creator_id": 0, "model_type": d.get("model_type", ""),
            "source_run_id": d.get("source_run_id", ""), "tags": _kv(d.get("tags", {}))}
    return {"info": info, "data": {"params": _kv(d.get("params", {})), "metrics": []}}


@api("POST", "/logged-models", "writer")
def create_logged_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()
    exp_id = str(body.get("experiment_id") or DEFAULT)
    _experiment(ctx, exp_id)
    model_id = f"m-{uuid.uuid4().hex}"
    doc = {"experiment_id": exp_id, "name": str(body.get("name") or "model"),
           "created": _now(), "status": "LOGGED_MODEL_PENDING",
           "model_type": str(body.get("model_type") or ""),
           "source_run_id": str(body.get("source_run_id") or ""),
           "artifact_path": f"{exp_id}/models/{model_id}/artifacts",
           "params": _pairs(body.get("params"), "params"),
           "tags": _pairs(body.get("tags"), "tags"), "creator": ctx.who}
    ctx.side.put("lm", model_id, doc)
    return {"model": _lm_json(model_id, doc)}


@api("GET", "/logged-models/{model_id}", "reader")
def get_logged_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    model_id = need_str(body, "model_id")
    return {"model": _lm_json(model_id, _lm(ctx, model_id))}


def _edit_lm(ctx: Ctx, body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    ctx.need_somewhere()
    model_id = need_str(body, "model_id")
    doc = _lm(ctx, model_id)
    ctx.need_owner(doc.get("creator"), f"logged model {model_id}")
    doc.update(changes, updated=_now())
    ctx.side.put("lm", model_id, doc)
    return {"model": _lm_json(model_id, doc)}


@api("PATCH", "/logged-models/{model_id}", "writer")
def finalize_logged_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return _edit_lm(ctx, body, status=str(body.get("status") or "LOGGED_MODEL_READY"))


@api("PATCH", "/logged-models/{model_id}/tags", "writer")
def set_logged_model_tags(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()  # before the lookup: a refusal must not tell whether it exists
    doc = _lm(ctx, need_str(body, "model_id"))
    _edit_lm(ctx, body, tags={**doc.get("tags", {}), **_pairs(body.get("tags"), "tags")})
    return {}


@api("DELETE", "/logged-models/{model_id}/tags/{tag_key}", "writer")
def delete_logged_model_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()  # before the lookup: a refusal must not tell whether it exists
    doc = _lm(ctx, need_str(body, "model_id"))
    tags = dict(doc.get("tags", {}))
    tags.pop(need_str(body, "tag_key"), None)
    _edit_lm(ctx, body, tags=tags)
    return {}


@api("POST", "/logged-models/{model_id}/params", "writer")
def log_logged_model_params(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()  # before the lookup: a refusal must not tell whether it exists
    doc = _lm(ctx, need_str(body, "model_id"))
    _edit_lm(ctx, body, params={**doc.get("params", {}), **_pairs(body.get("params"),
                                                                  "params")})
    return {}


@api("DELETE", "/logged-models/{model_id}", "writer")
def delete_logged_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    _edit_lm(ctx, body, status="LOGGED_MODEL_DELETED")
    return {}


@api("POST", "/logged-models/search", "reader")
def search_logged_models(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    if body.get("filter"):
        raise bad("modelvc's MLflow API does not filter logged models")
    exps = {str(e) for e in body.get("experiment_ids") or []}
    rows = [_lm_json(k, d) for k, d in ctx.side.items("lm")
            if (not exps or d["experiment_id"] in exps)
            and d["status"] != "LOGGED_MODEL_DELETED"]
    return paged("models", rows, body, default=100, limit=50000)
