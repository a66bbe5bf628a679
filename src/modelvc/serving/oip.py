"""The Open Inference Protocol operations other than inference, as plain data, shared by
the REST routes (app.py) and the gRPC service (oipgrpc/service.py): server and model
metadata, readiness, and Triton's model config, repository index and statistics."""

from __future__ import annotations

from typing import Any

from .. import __version__ as modelvc_version
from ..errors import ModelvcError
from .gateway import Gateway, NotReady
from .swap import Loaded

EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository",
              "statistics", "modelvc_feedback"]


def server_metadata() -> dict[str, Any]:
    return {"name": "modelvc", "version": modelvc_version, "extensions": EXTENSIONS}


def _loaded_versions(gw: Gateway, model: str) -> list[Loaded]:
    return sorted((i for i in gw.pool.items.values() if i.model == model),
                  key=lambda i: i.version.number)


async def model_metadata(gw: Gateway, name: str, version: str | None) -> dict[str, Any]:
    sm = gw.served(name)
    item, channel = await gw.slot(sm, version, None)
    rt = item.runtime
    return {"name": sm.cfg.name,
            "versions": [str(i.version.number) for i in _loaded_versions(gw, sm.cfg.model)],
            "platform": rt.platform,
            "inputs": [s.as_json() for s in rt.inputs],
            "outputs": [s.as_json() for s in rt.outputs],
            "parameters": {"version": str(item.version.number), "channel": channel,
                           "version_id": item.version.id}}


async def model_ready(gw: Gateway, name: str, version: str | None) -> bool:
    sm = gw.served(name)
    try:
        await gw.slot(sm, version, None)
    except (NotReady, ModelvcError):  # a version that does not exist: not ready, no error
        return False
    return True


def _triton_type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


async def model_config(gw: Gateway, name: str, version: str | None) -> dict[str, Any]:
    """Triton's model configuration, from the version's runtime and signature. The batch
    dimension is part of `dims` (max_batch_size 0), as the runtimes declare it."""
    sm = gw.served(name)
    item, channel = await gw.slot(sm, version, None)
    rt = item.runtime
    backend = rt.platform.split("_")[0]
    return {"name": sm.cfg.name, "platform": rt.platform, "backend": backend,
            "max_batch_size": 0,
            "input": [{"name": s.name, "data_type": _triton_type(s.datatype),
                       "dims": list(s.shape)} for s in rt.inputs],
            "output": [{"name": s.name, "data_type": _triton_type(s.datatype),
                        "dims": list(s.shape)} for s in rt.outputs],
            "parameters": {"modelvc_version": {"string_value": str(item.version.number)},
                           "modelvc_version_id": {"string_value": item.version.id},
                           "modelvc_channel": {"string_value": channel}}}


def repository_index(gw: Gateway, ready_only: bool = False) -> list[dict[str, Any]]:
    """Every served model's loaded versions (READY) and followed refs that have none
    loaded (UNAVAILABLE, with the reason)."""
    rows: list[dict[str, Any]] = []
    for sm in gw.models.values():
        loaded = _loaded_versions(gw, sm.cfg.model)
        rows += [{"name": sm.cfg.name, "version": str(i.version.number), "state": "READY",
                  "reason": ""} for i in loaded]
        if not ready_only:
            rows += [{"name": sm.cfg.name, "version": "", "state": "UNAVAILABLE",
                      "reason": f"{sm.cfg.model}@{f.ref}: {f.last_error or 'not loaded yet'}"}
                     for f in sm.followers() if f.current is None]
    return rows


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def statistics(gw: Gateway, name: str | None, version: str | None) -> dict[str, Any]:
    """Triton's inference statistics per model and version served or that answered
    requests (success/fail counts and durations; no queue or cache to report)."""
    models = [gw.served(name)] if name else list(gw.models.values())
    want = version.removeprefix("v") if version else None
    stats: list[dict[str, Any]] = []
    for sm in models:
        for f in sm.followers():  # served versions with zeros before their first request
            if f.current is not None:  # (as Triton lists every loaded model)
                sm.totals_of(f.current.version.id).number = f.current.version.number
        for t in sorted(sm.totals.values(), key=lambda t: t.number):
            if want is not None and str(t.number) != want:
                continue
            ok = t.requests - t.errors
            zero = _duration(0, 0)
            stats.append({
                "name": sm.cfg.name, "version": str(t.number),
                "last_inference": t.last_ms, "inference_count": t.inferences,
                "execution_count": ok,
                "inference_stats": {"success": _duration(ok, t.success_ns),
                                    "fail": _duration(t.errors, t.fail_ns),
                                    "queue": zero,
                                    "compute_input": zero,
                                    "compute_infer": _duration(ok, t.success_ns),
                                    "compute_output": zero,
                                    "cache_hit": zero, "cache_miss": zero},
                "batch_stats": []})
    return {"model_stats": stats}
