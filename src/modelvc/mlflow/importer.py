"""`modelvc import mlflow`: an MLflow registry (a tracking server, or a local sqlite/file
store) copied into a modelvc registry through the Registry API.

Each MLflow model version becomes one version (its artifacts committed as they are, so
safetensors get tensor deltas; its run's params and metrics its lineage), in MLflow's
version order; then aliases and the Staging/Production stages become channels.
Descriptions and key/value tags go to the sidecar, where modelvc's MLflow API shows them.

Resumable and idempotent: a version records where it came from in its lineage
(`mlflow.import`: store, model, version), and a run skips every version the registry
already holds; the sidecar documents and channels are re-applied (cheap, no data).
A kill -9 loses at most the version being committed (commits are atomic).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelvcError, UsageError
from ..registry import Registry
from .sidecar import Sidecar

_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

STAGE_CHANNELS = {"Staging": "staging", "Production": "production"}


@dataclass
class ModelReport:
    name: str
    versions: int = 0  # MLflow versions seen
    copied: int = 0  # committed by this run
    skipped: int = 0  # already imported by an earlier run
    mlflow_bytes: int = 0  # what MLflow keeps: every version's artifacts, whole
    stored_bytes: int = 0  # what modelvc stored for them (deltas, dedup, compression)
    numbers: dict[str, int] = field(default_factory=dict)  # MLflow version -> modelvc vN
    channels: dict[str, int] = field(default_factory=dict)  # alias/stage -> modelvc vN
    refused: list[str] = field(default_factory=list)  # channel moves the policy refused


@dataclass
class ImportReport:
    source: str
    models: list[ModelReport] = field(default_factory=list)

    @property
    def mlflow_bytes(self) -> int:
        return sum(m.mlflow_bytes for m in self.models)

    @property
    def stored_bytes(self) -> int:
        return sum(m.stored_bytes for m in self.models)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "mlflow_bytes": self.mlflow_bytes,
                "stored_bytes": self.stored_bytes,
                "ratio": round(self.stored_bytes / self.mlflow_bytes, 4)
                if self.mlflow_bytes else None,
                "models": [m.__dict__ for m in self.models]}


def _client(uri: str) -> Any:
    try:
        import mlflow
    except ModuleNotFoundError as exc:
        raise UsageError("`modelvc import mlflow` needs the MLflow client",
                         hint="pip install 'modelvc[mlflow]' (mlflow-skinny; a sqlite store "
                              "also needs SQLAlchemy and alembic, which modelvc has)") from exc
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _paged(call: Callable[..., Any], **kw: Any) -> Iterator[Any]:
    token = None
    while True:
        page = call(max_results=200, page_token=token, **kw)
        yield from page
        token = page.token
        if not token:
            return


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _imported(reg: Registry, name: str, source: str) -> dict[str, Any]:
    """MLflow version -> the modelvc Version imported from it (from their lineage)."""
    if name not in reg.models():
        return {}
    out = {}
    for v in reg.versions(name):
        mark = (v.lineage.get("mlflow") or {}).get("import") or {}
        if mark.get("from") == source and mark.get("model") == name:
            out[str(mark["version"])] = v
    return out


def import_mlflow(reg: Registry, tracking_uri: str, *, models: list[str] | None = None,
                  actor: str | None = None,
                  progress: Callable[[str], None] | None = None) -> ImportReport:
    """Copy MLflow's registered models (or MODELS) into REG; see the module doc."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        if not db.is_file():  # MLflow would create an empty store there
            raise UsageError(f"no MLflow database at {db}",
                             hint="sqlite:///relative/mlflow.db or sqlite:////absolute/path")
    client = _client(tracking_uri)
    with _process_uris(tracking_uri):
        return _import_all(reg, client, tracking_uri, models, actor, progress)


@contextmanager
def _process_uris(uri: str) -> Iterator[None]:
    """models:/ URIs resolve through the process's registry URI: URI's, meanwhile. MLflow
    keeps both URIs in module globals and mirrors them into os.environ; both are put back
    exactly (restoring the resolved URIs instead pinned them, so a caller configured by
    MLFLOW_TRACKING_URI later kept talking to the old store)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    import mlflow

    env = {k: os.environ.get(k) for k in _URI_ENV}
    before = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])  # type: ignore[arg-type]  # None: unset
        registry_utils._registry_uri = before[1]
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _import_all(reg: Registry, client: Any, tracking_uri: str, models: list[str] | None,
                actor: str | None, progress: Callable[[str], None] | None) -> ImportReport:
    side = Sidecar(reg.location)
    say = progress or (lambda _: None)
    report = ImportReport(tracking_uri)
    try:
        found = {m.name: m for m in _paged(client.search_registered_models)}
        wanted = models or sorted(found)
        missing = [m for m in wanted if m not in found]
        if missing:
            raise UsageError(f"not registered in {tracking_uri}: {', '.join(missing)}",
                             hint=f"it has: {', '.join(sorted(found)) or 'no models'}")
        for name in wanted:
            report.models.append(_import_model(reg, client, side, found[name],
                                               tracking_uri, actor, say))
    finally:
        side.close()
    return report


def _import_model(reg: Registry, client: Any, side: Sidecar, rm: Any, source: str,
                  actor: str | None, say: Callable[[str], None]) -> ModelReport:
    name = rm.name
    rep = ModelReport(name)
    versions = sorted(_paged(client.search_model_versions, filter_string=f"name='{name}'"),
                      key=lambda mv: int(mv.version))
    rep.versions = len(versions)
    done = _imported(reg, name, source)
    for i, mv in enumerate(versions, 1):
        v = done.get(str(mv.version))
        if v is not None:
            rep.skipped += 1
        else:
            v = _copy_version(reg, client, mv, source, actor)
            rep.copied += 1
            say(f"[{name} {i}/{len(versions)}] MLflow v{mv.version} -> {name}@v{v.number}: "
                f"{v.raw_size} bytes, {v.stored_size} stored")
        rep.numbers[str(mv.version)] = v.number
        rep.mlflow_bytes += v.raw_size
        rep.stored_bytes += v.stored_size
        doc = {"description": mv.description or "", "tags": dict(mv.tags or {}),
               "run_id": mv.run_id or "", "source": mv.source or "",
               "updated": int(mv.last_updated_timestamp or 0)}
        if mv.current_stage == "Archived":
            doc["stage"] = "Archived"
        side.put("mv", f"{name}/{v.number}", doc)
    side.put("rm", name, {"description": rm.description or "", "tags": dict(rm.tags or {}),
                          "created": int(rm.creation_timestamp or 0),
                          "updated": int(rm.last_updated_timestamp or 0)})
    wanted = {a: str(n) for a, n in (rm.aliases or {}).items()}
    for mv in versions:  # the newest version in a stage holds its channel
        if mv.current_stage in STAGE_CHANNELS:
            wanted[STAGE_CHANNELS[mv.current_stage]] = str(mv.version)
    held = {r.name: r.version_id for r in reg.refs(name, kind="channel")} \
        if name in reg.models() else {}
    for channel, mlflow_version in sorted(wanted.items()):
        number = rep.numbers.get(mlflow_version)
        if number is None:
            continue
        target = reg.resolve(f"{name}@v{number}")
        if held.get(channel) != target.id:
            try:
                reg.promote(f"{name}@v{number}", channel, actor=actor, create=True,
                            reason=f"mlflow import: {channel} of {source}")
            except ModelvcError as exc:  # a gated channel: reported, the rest goes on
                rep.refused.append(f"{channel} -> v{number}: {exc.message}")
                continue
        rep.channels[channel] = number
    return rep


def _copy_version(reg: Registry, client: Any, mv: Any, source: str, actor: str | None
                  ) -> Any:
    import mlflow

    params: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            params = dict(run.data.params)
            metrics = {k: v for k, v in run.data.metrics.items() if math.isfinite(v)}
        except Exception:  # a deleted run: the version still imports
            pass
    with tempfile.TemporaryDirectory(prefix="modelvc-mlflow-") as tmp:
        path = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{mv.name}/{mv.version}", dst_path=os.path.join(tmp, "a"),
            tracking_uri=source))
        if _size(path) == 0 and not any(path.iterdir() if path.is_dir() else [path]):
            raise UsageError(f"MLflow {mv.name} v{mv.version} has no artifacts")
        mark = {"from": source, "model": mv.name, "version": str(mv.version),
                "created": int(mv.creation_timestamp or 0)}
        return reg.commit(path, model=mv.name,
                          message=mv.description or f"MLflow {mv.name} v{mv.version}",
                          params=params, metrics=metrics,
                          author=actor or mv.user_id or "mlflow-import", cwd=tmp,
                          lineage={"mlflow": {"source": mv.source or "", "run_id":
                                              mv.run_id or "", "import": mark}})
