"""MLflow tracking on modelvc: experiments and runs (params, metric batches, tags), kept
in the sidecar (modelvc has no runs; MLflow 3 logged models: mlflow_logged_models.py).
What they are for here: `mlflow.<flavor>.log_model(..., registered_model_name=...)`
logs a model's files to a run or logged model, then registers them; the run's params
and metrics become the new version's params and metrics (its lineage).

Writing needs the writer role on some model, reading the reader role on some model.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .mlflow import Ctx, MlflowError, api, bad, missing, need_str, paged

DEFAULT = "0"


def _now() -> int:
    return int(time.time() * 1000)


def _kv(d: dict[str, Any]) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in sorted(d.items())]


def _pairs(items: Any, what: str) -> dict[str, str]:
    if not items:
        return {}
    if not isinstance(items, list) or not all(isinstance(t, dict) and "key" in t
                                              for t in items):
        raise bad(f"{what} must be a list of {{key, value}}")
    return {str(t["key"]): str(t.get("value", "")) for t in items}


# ---- experiments
def _experiment(ctx: Ctx, exp_id: str) -> dict[str, Any]:
    doc = ctx.side.get("exp", exp_id)
    if doc is None and exp_id == DEFAULT:
        doc = {"name": "Default", "created": _now(), "tags": {}, "lifecycle": "active"}
        ctx.side.insert("exp", DEFAULT, doc)
    if doc is None:
        raise missing(f"No Experiment with id={exp_id} exists")
    return doc


def _exp_json(exp_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"experiment_id": exp_id, "name": doc["name"],
            "artifact_location": f"mlflow-artifacts:/{exp_id}",
            "lifecycle_stage": doc.get("lifecycle", "active"),
            "creation_time": doc.get("created", 0),
            "last_update_time": doc.get("updated", doc.get("created", 0)),
            "tags": _kv(doc.get("tags", {}))}


def _by_name(ctx: Ctx, name: str) -> tuple[str, dict[str, Any]] | None:
    _experiment(ctx, DEFAULT)
    return next(((k, d) for k, d in ctx.side.items("exp") if d["name"] == name), None)


@api("GET", "/experiments/get-by-name", "reader")
def get_experiment_by_name(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    name = need_str(body, "experiment_name")
    found = _by_name(ctx, name)
    if found is None:
        raise missing(f"Could not find experiment with name '{name}'")
    return {"experiment": _exp_json(*found)}


@api("GET", "/experiments/get", "reader")
def get_experiment(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    exp_id = need_str(body, "experiment_id")
    return {"experiment": _exp_json(exp_id, _experiment(ctx, exp_id))}


@api("POST", "/experiments/create", "writer")
def create_experiment(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()
    name = need_str(body, "name")
    if body.get("artifact_location"):
        raise bad("artifact_location is chosen by modelvc (artifacts go through its proxy)")
    if _by_name(ctx, name) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS",
                          f"Experiment(name={name}) already exists.")
    exp_id = str(uuid.uuid4().int % 10**18)
    ctx.side.put("exp", exp_id, {"name": name, "created": _now(), "lifecycle": "active",
                                 "tags": _pairs(body.get("tags"), "tags"),
                                 "user_id": ctx.who})
    return {"experiment_id": exp_id}


@api("POST", "/experiments/search", "reader")
def search_experiments(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    if body.get("filter"):
        raise bad("modelvc's MLflow API does not filter experiments (list them all)")
    _experiment(ctx, DEFAULT)
    view = str(body.get("view_type") or "ACTIVE_ONLY")
    rows = [_exp_json(k, d) for k, d in ctx.side.items("exp")
            if view == "ALL" or (d.get("lifecycle", "active") == "active") ==
            (view == "ACTIVE_ONLY")]
    return paged("experiments", rows, body, default=1000, limit=50000)


api("GET", "/experiments/search", "reader")(search_experiments)


def _edit_experiment(ctx: Ctx, body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    ctx.need_somewhere()
    exp_id = need_str(body, "experiment_id")
    doc = _experiment(ctx, exp_id)
    doc.update(changes, updated=_now())
    ctx.side.put("exp", exp_id, doc)
    return {}


@api("POST", "/experiments/update", "writer")
def update_experiment(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return _edit_experiment(ctx, body, name=need_str(body, "new_name"))


@api("POST", "/experiments/delete", "writer")
def delete_experiment(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return _edit_experiment(ctx, body, lifecycle="deleted")


@api("POST", "/experiments/restore", "writer")
def restore_experiment(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return _edit_experiment(ctx, body, lifecycle="active")


@api("POST", "/experiments/set-experiment-tag", "writer")
def set_experiment_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()  # before the lookup: a refusal must not tell whether it exists
    doc = _experiment(ctx, need_str(body, "experiment_id"))
    return _edit_experiment(ctx, body, tags={**doc.get("tags", {}), need_str(body, "key"):
                                             str(body.get("value", ""))})


# ---- runs
def _run(ctx: Ctx, run_id: str) -> dict[str, Any]:
    doc = ctx.side.get("run", run_id)
    if doc is None:
        raise missing(f"Run '{run_id}' not found")
    return doc


def _run_json(run_id: str, d: dict[str, Any]) -> dict[str, Any]:
    info = {"run_id": run_id, "run_uuid": run_id, "run_name": d.get("run_name", ""),
            "experiment_id": d["experiment_id"], "user_id": d.get("user_id", ""),
            "status": d.get("status", "RUNNING"), "start_time": d.get("start_time", 0),
            "artifact_uri": f"mlflow-artifacts:/{d['artifact_path']}",
            "lifecycle_stage": d.get("lifecycle", "active")}
    if d.get("end_time"):
        info["end_time"] = d["end_time"]
    data = {"metrics": list(d.get("latest", {}).values()), "params": _kv(d.get("params", {})),
            "tags": _kv(d.get("tags", {}))}
    outputs = {"model_outputs": [{"model_id": m, "step": 0} for m in d.get("outputs", [])]}
    return {"info": info, "data": data, "inputs": {}, "outputs": outputs}


@api("POST", "/runs/create", "writer")
def create_run(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere()
    exp_id = str(body.get("experiment_id") or DEFAULT)
    _experiment(ctx, exp_id)
    run_id = uuid.uuid4().hex
    tags = _pairs(body.get("tags"), "tags")
    name = str(body.get("run_name") or tags.get("mlflow.runName") or f"run-{run_id[:8]}")
    tags.setdefault("mlflow.runName", name)
    doc = {"experiment_id": exp_id, "run_name": name, "user_id": ctx.who,
           "status": "RUNNING", "start_time": int(body.get("start_time") or _now()),
           "artifact_path": f"{exp_id}/{run_id}/artifacts", "params": {}, "tags": tags,
           "metrics": [], "latest": {}, "lifecycle": "active"}
    ctx.side.put("run", run_id, doc)
    return {"run": _run_json(run_id, doc)}


@api("GET", "/runs/get", "reader")
def get_run(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    run_id = str(body.get("run_id") or body.get("run_uuid") or "")
    return {"run": _run_json(run_id, _run(ctx, run_id))}


def _edit_run(ctx: Ctx, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ctx.need_somewhere()
    run_id = str(body.get("run_id") or body.get("run_uuid") or "")
    doc = _run(ctx, run_id)
    ctx.need_owner(doc.get("user_id"), f"run {run_id}")
    return run_id, doc


@api("POST", "/runs/update", "writer")
def update_run(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    run_id, doc = _edit_run(ctx, body)
    for key in ("status", "end_time", "run_name"):
        if body.get(key) not in (None, ""):
            doc[key] = body[key]
    if body.get("run_name"):
        doc["tags"]["mlflow.runName"] = body["run_name"]
    ctx.side.put("run", run_id, doc)
    return {"run_info": _run_json(run_id, doc)["info"]}


def _log(doc: dict[str, Any], metrics: Any, params: Any, tags: Any) -> None:
    for m in metrics or []:
        if not isinstance(m, dict) or "key" not in m or "value" not in m:
            raise bad("each metric needs key and value")
        value = float(m["value"])
        entry = {"key": str(m["key"]), "value": value,
                 "timestamp": int(m.get("timestamp") or _now()), "step": int(m.get("step") or 0)}
        doc["metrics"].append(entry)
        old = doc["latest"].get(entry["key"])
        if old is None or (entry["step"], entry["timestamp"]) >= (old["step"], old["timestamp"]):
            doc["latest"][entry["key"]] = entry
    for k, v in _pairs(params, "params").items():
        if k in doc["params"] and doc["params"][k] != v:
            raise bad(f"Changing param values is not allowed. Param with key='{k}' was "
                      f"already logged with value='{doc['params'][k]}'")
        doc["params"][k] = v
    doc["tags"].update(_pairs(tags, "tags"))


@api("POST", "/runs/log-batch", "writer")
def log_batch(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    run_id, doc = _edit_run(ctx, body)
    try:
        _log(doc, body.get("metrics"), body.get("params"), body.get("tags"))
    except (TypeError, ValueError) as exc:
        raise bad(f"invalid batch: {exc}") from exc
    ctx.side.put("run", run_id, doc)
    return {}


@api("POST", "/runs/log-metric", "writer")
def log_metric(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return log_batch(ctx, {**body, "metrics": [body]})


@api("POST", "/runs/log-parameter", "writer")
def log_param(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return log_batch(ctx, {**body, "params": [body]})


@api("POST", "/runs/set-tag", "writer")
def set_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    return log_batch(ctx, {**body, "tags": [body]})


@api("POST", "/runs/delete-tag", "writer")
def delete_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    run_id, doc = _edit_run(ctx, body)
    doc["tags"].pop(need_str(body, "key"), None)
    ctx.side.put("run", run_id, doc)
    return {}


@api("POST", "/runs/delete", "writer")
def delete_run(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    run_id, doc = _edit_run(ctx, body)
    ctx.side.put("run", run_id, {**doc, "lifecycle": "deleted"})
    return {}


@api("POST", "/runs/restore", "writer")
def restore_run(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    run_id, doc = _edit_run(ctx, body)
    ctx.side.put("run", run_id, {**doc, "lifecycle": "active"})
    return {}


@api("POST", "/runs/outputs", "writer")
def log_outputs(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    run_id, doc = _edit_run(ctx, body)
    for m in body.get("models") or []:
        if isinstance(m, dict) and m.get("model_id") not in doc.setdefault("outputs", []):
            doc["outputs"].append(str(m.get("model_id")))
    ctx.side.put("run", run_id, doc)
    return {}


@api("POST", "/runs/log-inputs", "writer")
def log_inputs(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    _edit_run(ctx, body)  # datasets are not kept: accepted so training code runs
    return {}


@api("POST", "/runs/log-model", "writer")
def log_model_history(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    _edit_run(ctx, body)  # MLflow 2's model history tag: the files themselves are what counts
    return {}


@api("POST", "/runs/search", "reader")
def search_runs(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    if body.get("filter"):
        raise bad("modelvc's MLflow API does not filter runs (list an experiment's runs)")
    exps = {str(e) for e in body.get("experiment_ids") or []}
    rows = [_run_json(k, d) for k, d in ctx.side.items("run")
            if (not exps or d["experiment_id"] in exps) and d.get("lifecycle") != "deleted"]
    rows.sort(key=lambda r: -int(r["info"]["start_time"]))
    return paged("runs", rows, body, default=1000, limit=50000)


@api("GET", "/metrics/get-history", "reader")
def metric_history(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    ctx.need_somewhere("reader")
    key = body.get("metric_key")
    key = key[0] if isinstance(key, list) else key
    doc = _run(ctx, str(body.get("run_id") or body.get("run_uuid") or ""))
    return {"metrics": [m for m in doc.get("metrics", []) if m["key"] == key]}
