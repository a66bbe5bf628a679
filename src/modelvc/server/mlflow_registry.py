"""MLflow's Model Registry on modelvc (docs/mlflow.md has the mapping table).

A registered model is a modelvc model; model version N is `MODEL@vN`; an alias is a
channel (set through `promote`: recorded, audited, role-checked and gated by the
applied policy); stages Staging and Production are the channels `staging` and
`production`. Descriptions and key/value tags are kept in the sidecar. Roles: reads
need reader on the model, edits writer, aliases and stages promoter, deletions admin.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ModelNotFound, RefNotFound
from ..mlflow.filters import matches, order, parse
from ..names import check_name
from ..records import Version
from .mlflow import Ctx, MlflowError, api, bad, edited_tags, missing, ms, need_str, paged

STAGES = {"staging": "Staging", "production": "Production"}
STAGE_CHANNEL = {v.lower(): k for k, v in STAGES.items()}
ALL_STAGES = ("None", "Staging", "Production", "Archived")


def _tags(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


def _tag_dict(items: Any) -> dict[str, str]:
    if not items:
        return {}
    if not isinstance(items, list):
        raise bad("tags must be a list of {key, value}")
    return {str(t["key"]): str(t.get("value", "")) for t in items if isinstance(t, dict)
            and "key" in t}


def _name(body: dict[str, Any], key: str = "name") -> str:
    name = need_str(body, key)
    try:
        return check_name(name, "registered model name")
    except Exception as exc:
        raise bad(f"{name!r} is not a modelvc model name: {exc}") from exc


def _exists(ctx: Ctx, name: str) -> bool:
    doc = ctx.side.get("rm", name) or {}
    if doc.get("deleted"):
        return False
    return bool(doc) or name in ctx.reg.models()


def _live(ctx: Ctx, name: str) -> list[Version]:
    try:
        return list(ctx.reg.versions(name))
    except ModelNotFound:
        return []


def _need_model(ctx: Ctx, name: str, role: str = "reader") -> None:
    ctx.need(role, name)
    if not _exists(ctx, name):
        raise missing(f"Registered Model with name={name} not found")


def _version(ctx: Ctx, name: str, number: Any) -> Version:
    try:
        n = int(str(number))
    except ValueError as exc:
        raise bad(f"version must be a number, not {number!r}") from exc
    try:
        v = ctx.reg.resolve(f"{name}@v{n}")
    except (RefNotFound, ModelNotFound) as exc:
        raise missing(f"Model Version (name={name}, version={n}) not found") from exc
    if (ctx.side.get("rm", name) or {}).get("deleted"):
        raise missing(f"Model Version (name={name}, version={n}) not found")
    return v


def _channels(ctx: Ctx, name: str) -> dict[str, str]:
    """channel -> version id."""
    try:
        refs = ctx.reg.refs(name, kind="channel")
    except ModelNotFound:
        return {}
    return {r.name: r.version_id for r in refs if r.version_id}


def version_json(ctx: Ctx, v: Version, chans: dict[str, str] | None = None) -> dict[str, Any]:
    chans = _channels(ctx, v.model) if chans is None else chans
    doc = ctx.side.get("mv", f"{v.model}/{v.number}") or {}
    held = sorted(c for c, vid in chans.items() if vid == v.id)
    stage = next((STAGES[c] for c in ("production", "staging") if c in held),
                 doc.get("stage", "None"))
    mlf = v.lineage.get("mlflow", {}) if isinstance(v.lineage.get("mlflow"), dict) else {}
    out = {"name": v.model, "version": str(v.number), "creation_timestamp": ms(v.created_at),
           "last_updated_timestamp": int(doc.get("updated", ms(v.created_at))),
           "user_id": v.author, "current_stage": stage,
           "description": doc.get("description", v.message),
           "source": doc.get("source", mlf.get("source", f"modelvc:{v.model}@v{v.number}")),
           "run_id": doc.get("run_id", mlf.get("run_id", "")), "status": "READY",
           "tags": _tags(doc.get("tags", {})), "aliases": held,
           "run_link": doc.get("run_link", "")}
    if doc.get("model_id") or mlf.get("model_id"):
        out["model_id"] = doc.get("model_id") or mlf.get("model_id")
    return out


def model_json(ctx: Ctx, name: str) -> dict[str, Any]:
    doc = ctx.side.get("rm", name) or {}
    versions = _live(ctx, name)
    chans = _channels(ctx, name)
    number = {v.id: v.number for v in versions}
    latest: dict[str, dict[str, Any]] = {}
    for v in sorted(versions, key=lambda v: v.number):
        j = version_json(ctx, v, chans)
        latest[j["current_stage"]] = j
    created = doc.get("created") or (ms(versions[-1].created_at) if versions else 0)
    updated = max([int(doc.get("updated", created))] +
                  [ms(v.created_at) for v in versions[:1]])
    return {"name": name, "creation_timestamp": created, "last_updated_timestamp": updated,
            "description": doc.get("description", ""), "user_id": doc.get("user_id", ""),
            "latest_versions": list(latest.values()), "tags": _tags(doc.get("tags", {})),
            "aliases": [{"alias": c, "version": str(number[vid])}
                        for c, vid in sorted(chans.items()) if vid in number]}


def _touch(ctx: Ctx, name: str, **changes: Any) -> dict[str, Any]:
    doc = ctx.side.get("rm", name) or {"created": int(time.time() * 1000)}
    doc.update(changes, updated=int(time.time() * 1000))
    ctx.side.put("rm", name, doc)
    return doc


def _touch_version(ctx: Ctx, v: Version, **changes: Any) -> None:
    key = f"{v.model}/{v.number}"
    doc = ctx.side.get("mv", key) or {}
    doc.update(changes, updated=int(time.time() * 1000))
    ctx.side.put("mv", key, doc)


def _retire(ctx: Ctx, v: Version, reason: str) -> None:
    """Tombstone V. A branch at it (main, for the newest version) steps back to V's
    parent, or goes when V has none; a channel or tag at it refuses (move it first)."""
    ref = f"{v.model}@v{v.number}"
    for r in ctx.reg.refs(v.model, kind="branch"):
        if r.version_id != v.id:
            continue
        ctx.reg.delete_ref(v.model, r.name, actor=ctx.who, reason=reason)
        if v.parents:
            ctx.reg.create_branch(v.model, r.name, at=f"{v.model}@{v.parents[0]}",
                                  actor=ctx.who)
    ctx.reg.delete(ref, actor=ctx.who, reason=reason)


# ---- registered models
@api("POST", "/registered-models/create", "writer")
def create_registered_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    ctx.need("writer", name)
    if _exists(ctx, name):
        raise MlflowError("RESOURCE_ALREADY_EXISTS",
                          f"Registered Model (name={name}) already exists.")
    now = int(time.time() * 1000)
    ctx.side.put("rm", name, {"created": now, "updated": now, "user_id": ctx.who,
                              "description": body.get("description") or "",
                              "tags": _tag_dict(body.get("tags"))})
    return {"registered_model": model_json(ctx, name)}


@api("GET", "/registered-models/get", "reader")
def get_registered_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name)
    return {"registered_model": model_json(ctx, name)}


@api("POST", "/registered-models/rename", "writer")
def rename_registered_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name, new = _name(body), _name(body, "new_name")
    _need_model(ctx, name, "writer")
    ctx.need("writer", new)
    if _exists(ctx, new):
        raise MlflowError("RESOURCE_ALREADY_EXISTS",
                          f"Registered Model (name={new}) already exists.")
    if name in ctx.reg.models() and (_live(ctx, name) or ctx.reg.refs(name)):
        raise bad(f"modelvc does not rename a model that has versions: {name}'s name is "
                  "part of its refs, audit trail and signatures. Create the new name and "
                  "register versions there, or keep the name")
    doc = ctx.side.get("rm", name) or {}
    ctx.side.put("rm", new, {**doc, "updated": int(time.time() * 1000)})
    ctx.side.put("rm", name, {"deleted": True})
    return {"registered_model": model_json(ctx, new)}


@api("PATCH", "/registered-models/update", "writer")
def update_registered_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "writer")
    if "description" in body:
        _touch(ctx, name, description=str(body.get("description") or ""))
    return {"registered_model": model_json(ctx, name)}


@api("DELETE", "/registered-models/delete", "writer")
def delete_registered_model(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    """Every version tombstoned (objects kept until gc), every channel deleted: admin
    (writer for a model with no version yet)."""
    name = _name(body)
    _need_model(ctx, name, "admin" if _live(ctx, name) else "writer")
    for ch in _channels(ctx, name):
        ctx.reg.delete_ref(name, ch, actor=ctx.who, reason="mlflow delete_registered_model")
    for v in sorted(_live(ctx, name), key=lambda v: -v.number):
        _retire(ctx, v, "mlflow delete_registered_model")
    for key, _ in list(ctx.side.items("mv", f"{name}/")):
        ctx.side.delete("mv", key)
    ctx.side.put("rm", name, {"deleted": True})
    return {}


@api("GET", "/registered-models/search", None)
def search_registered_models(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    conds = parse(body.get("filter"))
    names = set(ctx.reg.models()) | {k for k, _ in ctx.side.items("rm")}
    rows = []
    for name in sorted(names):
        if not ctx.may("reader", name) or not _exists(ctx, name):
            continue
        doc = ctx.side.get("rm", name) or {}
        row = {"name": name, "tags": doc.get("tags", {})}
        if matches(conds, row):
            rows.append(model_json(ctx, name))
    rows = order(rows, _list(body.get("order_by")), ["name ASC"])
    return paged("registered_models", rows, body)


api("POST", "/registered-models/search", None)(search_registered_models)


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(x) for x in value]


@api("POST", "/registered-models/set-tag", "writer")
def set_registered_model_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "writer")
    _touch(ctx, name, tags=edited_tags(ctx.side.get("rm", name), body))
    return {}


@api("DELETE", "/registered-models/delete-tag", "writer")
def delete_registered_model_tag(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name, "writer")
    _touch(ctx, name, tags=edited_tags(ctx.side.get("rm", name), body, delete=True))
    return {}


@api("POST", "/registered-models/get-latest-versions", "reader")
def get_latest_versions(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name = _name(body)
    _need_model(ctx, name)
    stages = [s.capitalize() if s.lower() != "none" else "None"
              for s in _list(body.get("stages"))] or list(ALL_STAGES)
    latest = {j["current_stage"]: j for j in model_json(ctx, name)["latest_versions"]}
    return {"model_versions": [latest[s] for s in stages if s in latest]}


api("GET", "/registered-models/get-latest-versions", "reader")(get_latest_versions)


# ---- aliases = channels
@api("POST", "/registered-models/alias", "promoter")
def set_alias(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name, alias = _name(body), need_str(body, "alias")
    _need_model(ctx, name, "promoter")
    v = _version(ctx, name, need_str(body, "version"))
    # MLflow's set-alias makes the alias when it is new: the channel is created on purpose
    ctx.reg.promote(f"{name}@v{v.number}", alias, actor=ctx.who, create=True,
                    reason=f"mlflow set_registered_model_alias {alias}")
    return {}


@api("DELETE", "/registered-models/alias", "promoter")
def delete_alias(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name, alias = _name(body), need_str(body, "alias")
    _need_model(ctx, name, "promoter")
    if alias not in _channels(ctx, name):
        raise missing(f"Registered model alias {alias} not found.")
    ctx.reg.delete_ref(name, alias, actor=ctx.who,
                       reason="mlflow delete_registered_model_alias")
    return {}


@api("GET", "/registered-models/alias", "reader")
def get_by_alias(ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
    name, alias = _name(body), need_str(body, "alias")
    _need_model(ctx, name)
    chans = _channels(ctx, name)
    if alias not in chans:
        raise missing(f"Registered model alias {alias} not found.")
    return {"model_version": version_json(ctx, ctx.reg.resolve(f"{name}@{alias}"), chans)}
