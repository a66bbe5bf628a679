"""MLflow 3 logged models on modelvc's MLflow API: a model's files logged outside a run
(or as a run's output) before they are registered; kept in the sidecar beside the runs
and experiments of mlflow_tracking.py. Writing needs the writer role on some model,
reading the reader role on some model.
"""

from __future__ import annotations

import uuid
from operator import itemgetter
from typing import Any

from ..mlflow.filters import Cond, FilterError, matches, parse
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


# What a logged-model search filters and orders on: MLflow's own attribute names (and
# its aliases of them); `params.KEY` and `tags.KEY` too. modelvc keeps no metrics on a
# logged model, so `metrics.KEY` (and `datasets`, which only scope metrics) are refused.
_ATTRS = {"model_id", "name", "experiment_id", "status", "model_type", "source_run_id",
          "artifact_location", "creation_timestamp_ms", "last_updated_timestamp_ms"}
_ALIASES = {"creation_time": "creation_timestamp_ms", "creation_timestamp":
            "creation_timestamp_ms", "last_updated_timestamp": "last_updated_timestamp_ms",
            "artifact_uri": "artifact_location"}
_STATUSES = ("PENDING", "READY", "FAILED", "UNSPECIFIED")
SUPPORTED = ("`KEY OP VALUE` joined by AND; KEY one of " + ", ".join(sorted(_ATTRS)) +
             " (attributes. allowed before it), params.KEY or tags.KEY; OP one of "
             "= != < <= > >= LIKE ILIKE IN NOT IN")


def _row(model_id: str, d: dict[str, Any]) -> dict[str, Any]:
    return {"model_id": model_id, "name": d["name"], "experiment_id": d["experiment_id"],
            "status": str(d["status"]).removeprefix("LOGGED_MODEL_"),
            "model_type": d.get("model_type", ""),
            "source_run_id": d.get("source_run_id", ""),
            "artifact_location": f"mlflow-artifacts:/{d['artifact_path']}",
            "creation_timestamp_ms": d["created"],
            "last_updated_timestamp_ms": d.get("updated", d["created"]),
            "params": d.get("params", {}), "tags": d.get("tags", {})}


def _conds(text: Any) -> list[Cond]:
    if text is not None and not isinstance(text, str):
        raise bad(f"filter must be a string, not {text!r}")
    try:
        conds = parse(text, entities=("tags", "params", "metrics"))
    except FilterError as exc:
        raise bad(f"{exc}. modelvc filters logged models by {SUPPORTED}") from exc
    out: list[Cond] = []
    for key, op, want in conds:
        if key.startswith("metrics."):
            raise bad(f"modelvc keeps no metrics on logged models, so it cannot filter on "
                      f"{key!r}; it filters by {SUPPORTED}")
        if not key.startswith(("tags.", "params.")):
            key = _ALIASES.get(key, key)
            if key not in _ATTRS:
                raise bad(f"logged models have no attribute {key!r} to filter on; modelvc "
                          f"filters logged models by {SUPPORTED}")
        if key == "status":
            if op not in ("=", "!=", "IN", "NOT IN"):
                raise bad(f"status compares with = != IN NOT IN, not {op}")
            vals = [str(w).removeprefix("LOGGED_MODEL_") for w in
                    (want if isinstance(want, list) else [want])]
            if unknown := [v for v in vals if v not in _STATUSES]:
                raise bad(f"unknown logged model status {unknown[0]!r}: one of "
                          f"{', '.join(_STATUSES)}")
            want = vals if isinstance(want, list) else vals[0]
        out.append((key, op, want))
    return out


def _sorted(rows: list[dict[str, Any]], order_by: Any) -> list[dict[str, Any]]:
    """ROWS by the order_by clauses ({field_name, ascending}), the newest first if none."""
    clauses = order_by if isinstance(order_by, list) else [] if order_by is None else None
    if clauses is None:
        raise bad(f"order_by must be a list of {{field_name, ascending}}, not {order_by!r}")
    rows = sorted(rows, key=lambda r: (r["creation_timestamp_ms"], r["model_id"]),
                  reverse=True)
    for c in reversed(clauses):
        field = c.get("field_name") if isinstance(c, dict) else None
        if not isinstance(field, str):
            raise bad(f"an order_by clause needs a field_name, not {c!r}")
        key = _ALIASES.get(field.removeprefix("attributes."), field.removeprefix(
            "attributes."))
        if key not in _ATTRS or c.get("dataset_name") or c.get("dataset_digest"):
            raise bad(f"modelvc orders logged models by an attribute "
                      f"({', '.join(sorted(_ATTRS))}), not {field!r}")
        rows = sorted(rows, key=itemgetter(key), reverse=c.get("ascending") is False)
    return rows


@api("POST", "/logged-models/search", "reader")
def search_logged_models(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    conds = _conds(body.get("filter"))
    if body.get("datasets"):
        raise bad("modelvc keeps no metrics on logged models, so `datasets` (which scope "
                  "metric filters) cannot be searched")
    exps = {str(e) for e in body.get("experiment_ids") or []}
    docs = dict(ctx.side.items("lm"))
    rows = [_row(k, d) for k, d in docs.items()
            if (not exps or d["experiment_id"] in exps)
            and d["status"] != "LOGGED_MODEL_DELETED"]
    try:
        rows = [r for r in rows if matches(conds, r)]
    except FilterError as exc:
        raise bad(str(exc)) from exc
    rows = _sorted(rows, body.get("order_by"))
    return paged("models", [_lm_json(r["model_id"], docs[r["model_id"]]) for r in rows],
                 body, default=100, limit=50000)
