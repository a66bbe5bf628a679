"""The least role each route of the server needs, for the auth matrix (test_auth_matrix.py).

Every (method, path template) of the route table must be listed here: the matrix fails
on a route that is not, so a new route declares its role. The matrix then probes every
route with each weaker principal (refused: no 2xx, no 5xx, the same answer as for a
model or object that does not exist) and, on a registry of its own, with the declared
role itself (not refused: the declaration is not stronger than the route needs).

Levels, weakest first (the probes name the model `bert`, or `team--bert` under an org):
- any: any valid token (lists filtered to what the caller may read, whoami, unknown
  paths under a prefix, which answer 404);
- reader, writer, promoter, admin: that role on the model (MLflow experiments, runs and
  logged models belong to no model: that role on some model; a run or logged model is
  changed only by whoever created it, the probes' writer, or an admin on '*');
- admin*: admin on '*' (the whole registry: tokens, keys, webhooks, gc, verify).
"""

from __future__ import annotations

LEVELS = ("any", "reader", "writer", "promoter", "admin", "admin*")

_MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")


def _mlflow(level: str, *pairs: str) -> dict[tuple[str, str], str]:
    """PAIRS ("METHOD /path") under both of MLflow's prefixes."""
    out = {}
    for pair in pairs:
        method, path = pair.split(" ", 1)
        for prefix in _MLFLOW_PREFIXES:
            out[(method, prefix + path)] = level
    return out


def _plain(level: str, *pairs: str) -> dict[tuple[str, str], str]:
    return {(p.split(" ", 1)[0], p.split(" ", 1)[1]): level for p in pairs}


LEAST: dict[tuple[str, str], str] = {
    # ---- modelvc API
    **_plain("any",
             "GET /api/v1/whoami", "GET /api/v1/models", "GET /api/v1/deployments",
             "GET /api/v1/replicas", "GET /api/v1/keys", "GET /api/v1/policy",
             "GET /api/v1/keys/{name_or_id}",
             "GET /api/v1/roles"),  # the probe asks for the caller's own (subject=nobody)
    **_plain("reader",
             "GET /api/v1/audit", "GET /api/v1/stats", "GET /api/v1/storage",  # ?model=bert
             "GET /api/v1/deployments/{name}", "GET /api/v1/diff", "GET /api/v1/log",
             "GET /api/v1/manifest", "GET /api/v1/models/{model}/at",
             "GET /api/v1/models/{model}/gates/runs",
             "GET /api/v1/models/{model}/gates/runs/{run_id}/report",
             "GET /api/v1/models/{model}/history", "GET /api/v1/models/{model}/refs",
             "GET /api/v1/models/{model}/signatures", "GET /api/v1/models/{model}/versions",
             "GET /api/v1/objects/{oid}", "GET /api/v1/resolve", "GET /api/v1/transfer/refs",
             "GET /api/v1/uploads/{oid}",
             "GET /api/v1/versions/{version_id}/files/{path:path}",
             "GET /api/v1/versions/{version_id}/tensors/{object_id}",
             "POST /api/v1/models/{model}/signatures/check", "POST /api/v1/objects/fetch",
             "POST /api/v1/objects/have", "POST /api/v1/transfer/ancestry",
             "POST /api/v1/transfer/closure", "POST /api/v1/transfer/have-versions"),
    **_plain("writer",
             "POST /api/v1/models/{model}/amend", "POST /api/v1/models/{model}/branches",
             "POST /api/v1/models/{model}/commits", "POST /api/v1/models/{model}/tags",
             "POST /api/v1/models/{model}/uploads/missing",
             "PUT /api/v1/models/{model}/uploads/{object_id}", "PUT /api/v1/objects/{oid}",
             "PUT /api/v1/uploads/{oid}", "POST /api/v1/objects/pack",
             "POST /api/v1/transfer/refs", "POST /api/v1/transfer/versions",
             "POST /api/v1/models/{model}/gates/run", "POST /api/v1/models/{model}/signatures"),
    **_plain("promoter",
             "DELETE /api/v1/models/{model}/refs/{name}",
             "POST /api/v1/models/{model}/channels/{channel}/promote",
             "POST /api/v1/models/{model}/channels/{channel}/rollback"),
    **_plain("admin",
             "POST /api/v1/deployments", "DELETE /api/v1/deployments/{name}",
             "POST /api/v1/roles", "DELETE /api/v1/roles", "POST /api/v1/versions/delete"),
    **_plain("admin*",
             "GET /api/v1/audit/verify", "GET /api/v1/tokens",
             "POST /api/v1/tokens", "DELETE /api/v1/tokens/{token_id}",
             "GET /api/v1/transfer/models", "GET /api/v1/webhooks", "POST /api/v1/webhooks",
             "DELETE /api/v1/webhooks/{webhook_id}", "GET /api/v1/webhooks/deliveries",
             "POST /api/v1/webhooks/deliver", "POST /api/v1/gc", "POST /api/v1/verify",
             "POST /api/v1/keys", "DELETE /api/v1/keys/{name}", "PUT /api/v1/policy"),
    # ---- Hugging Face Hub API
    **_plain("any",
             "GET /api/whoami-v2", "GET /api/models", "POST /api/validate-yaml",
             *(f"{m} /api/models/{{rest:path}}" for m in ("POST", "PUT"))),
    **_plain("reader",
             "GET /api/models/{rest:path}", "DELETE /api/models/{rest:path}",
             "PATCH /api/models/{rest:path}", "GET /{repo}/resolve/{rest:path}",
             "GET /{org}/{repo}/resolve/{rest:path}",
             "POST /api/models/{repo}/paths-info/{name}",
             "POST /api/models/{org}/{repo}/paths-info/{name}"),
    **_plain("writer",
             "POST /api/models/{repo}/branch/{name}", "DELETE /api/models/{repo}/branch/{name}",
             "POST /api/models/{repo}/tag/{name}", "DELETE /api/models/{repo}/tag/{name}",
             "POST /api/models/{org}/{repo}/branch/{name}",
             "DELETE /api/models/{org}/{repo}/branch/{name}",
             "POST /api/models/{org}/{repo}/tag/{name}",
             "DELETE /api/models/{org}/{repo}/tag/{name}"),
    **_plain("writer", "POST /api/repos/create"),  # writer on the name it creates
    **_plain("admin", "DELETE /api/repos/delete"),
    # ---- MLflow (tracking, logged models, registry) and its artifact store
    **_mlflow("any",
              *(f"{m} /{{rest:path}}" for m in ("DELETE", "GET", "PATCH", "POST", "PUT")),
              "GET /model-versions/search", "POST /model-versions/search",
              "GET /registered-models/search", "POST /registered-models/search"),
    **_mlflow("reader",
              "GET /experiments/search", "POST /experiments/search", "POST /runs/search",
              "POST /logged-models/search",
              "GET /experiments/get", "GET /experiments/get-by-name",
              "GET /logged-models/{model_id}", "GET /metrics/get-history", "GET /runs/get",
              "GET /model-versions/get", "GET /model-versions/get-download-uri",
              "GET /registered-models/alias", "GET /registered-models/get",
              "GET /registered-models/get-latest-versions",
              "POST /registered-models/get-latest-versions"),
    **_mlflow("writer",
              "POST /experiments/create", "POST /experiments/delete",
              "POST /experiments/restore", "POST /experiments/set-experiment-tag",
              "POST /experiments/update", "POST /logged-models",
              "DELETE /logged-models/{model_id}", "PATCH /logged-models/{model_id}",
              "DELETE /logged-models/{model_id}/tags/{tag_key}",
              "PATCH /logged-models/{model_id}/tags", "POST /logged-models/{model_id}/params",
              *(f"POST /runs/{what}" for what in (
                  "create", "delete", "delete-tag", "log-batch", "log-inputs", "log-metric",
                  "log-model", "log-parameter", "outputs", "restore", "set-tag", "update")),
              "POST /model-versions/create", "POST /model-versions/set-tag",
              "DELETE /model-versions/delete-tag", "PATCH /model-versions/update",
              "POST /registered-models/set-tag", "DELETE /registered-models/delete-tag",
              "PATCH /registered-models/update", "POST /registered-models/create",
              "POST /registered-models/rename"),
    **_mlflow("promoter",
              "POST /model-versions/transition-stage", "POST /registered-models/alias",
              "DELETE /registered-models/alias"),
    **_mlflow("admin",
              "DELETE /model-versions/delete", "DELETE /registered-models/delete"),
    **_plain("any", *(f"{m} /api/2.0/mlflow-artifacts/{{rest:path}}"
                      for m in ("DELETE", "GET", "PATCH", "POST", "PUT"))),
    **_plain("reader", "GET /api/2.0/mlflow-artifacts/artifacts",
             "GET /api/2.0/mlflow-artifacts/artifacts/{path:path}"),
    **_plain("writer", "PUT /api/2.0/mlflow-artifacts/artifacts/{path:path}",
             "DELETE /api/2.0/mlflow-artifacts/artifacts/{path:path}"),
}
