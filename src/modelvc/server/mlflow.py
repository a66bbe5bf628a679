"""The MLflow REST API on `modelvc server` (docs/mlflow.md): with MLFLOW_TRACKING_URI
pointed here and MLFLOW_TRACKING_TOKEN set to a modelvc token, MLflow's own client
registers, promotes (aliases = channels) and loads models.

    /api/2.0/mlflow/...            tracking and model registry (mlflow_tracking.py,
    /ajax-api/2.0/mlflow/...       mlflow_registry.py); the same routes twice, as MLflow
    /api/2.0/mlflow-artifacts/...  the artifact proxy (mlflow_artifacts.py)

This module holds what they share: the route table, the request context (caller,
registry, sidecar), and MLflow's error shape {"error_code", "message"} with its HTTP
status. Every route authenticates first, then checks its least role (`api()`) before it
reads the body, so a caller it refuses gets 401/403 whatever it sent; an unknown call is
ENDPOINT_NOT_FOUND, a modelvc error its MLflow counterpart, never a 500 for a call
modelvc cannot map.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ..errors import (
    AlreadyExists,
    Conflict,
    GateNotPassed,
    InvalidName,
    InvalidRef,
    ModelvcError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    UsageError,
)
from ..mlflow.filters import FilterError, page
from ..mlflow.sidecar import Sidecar
from ..registry import Registry
from .auth import Principal, authenticate, authorize, can
from .state import ServerState

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
STATUS = {"INVALID_PARAMETER_VALUE": 400, "RESOURCE_ALREADY_EXISTS": 400,
          "BAD_REQUEST": 400, "RESOURCE_DOES_NOT_EXIST": 404, "ENDPOINT_NOT_FOUND": 404,
          "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_CONFLICT": 409,
          "INVALID_STATE": 400, "NOT_IMPLEMENTED": 501, "INTERNAL_ERROR": 500}


class MlflowError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error_code": self.code, "message": self.message},
                            status_code=STATUS.get(self.code, 400))


def bad(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def paged(key: str, rows: list[Any], body: dict[str, Any], *, default: int | None = None,
          limit: int = 1000) -> dict[str, Any]:
    """A search's answer: the page of ROWS (under KEY) that the body's `max_results`
    (DEFAULT if none or 0; None: the filters' own) and `page_token` ask for, with the
    next page's token unless it is the last."""
    size = body.get("max_results")
    chunk, nxt = page(rows, size or default if default is not None else size,
                      body.get("page_token"), limit=limit)
    return {key: chunk, **({"next_page_token": nxt} if nxt else {})}


def missing(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def from_modelvc(exc: ModelvcError) -> MlflowError:
    """A modelvc error in MLflow's terms (the hint kept: it says what to do)."""
    text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    if isinstance(exc, Unauthenticated):
        return MlflowError("UNAUTHENTICATED", text)
    if isinstance(exc, GateNotPassed | PermissionDenied):
        return MlflowError("PERMISSION_DENIED", text)
    if isinstance(exc, NotFound):
        return missing(text)
    if isinstance(exc, AlreadyExists):
        return MlflowError("RESOURCE_ALREADY_EXISTS", text)
    if isinstance(exc, Conflict):
        return MlflowError("RESOURCE_CONFLICT", text)
    if isinstance(exc, UsageError | InvalidName | InvalidRef):
        return bad(text)
    return MlflowError("INTERNAL_ERROR", text)


class MlflowRoute(APIRoute):
    """Errors in MLflow's shape (routers cannot register exception handlers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except MlflowError as exc:
                return exc.response()
            except ModelvcError as exc:
                return from_modelvc(exc).response()
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                # A body of the wrong shape (a dict where MLflow sends a list, ...): the
                # caller's mistake, said as MLflow would, never a 500.
                return bad(f"invalid request to {request.url.path}: "
                           f"{type(exc).__name__}: {exc}").response()

        return run


router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])
_sidecars: dict[str, Sidecar] = {}
_lock = threading.Lock()


@dataclass
class Ctx:
    request: Request
    principal: Principal
    state: ServerState

    @property
    def reg(self) -> Registry:
        return self.state.registry()

    @property
    def side(self) -> Sidecar:
        folder = self.state.config.registry
        with _lock:
            if folder not in _sidecars:
                _sidecars[folder] = Sidecar(folder)
            return _sidecars[folder]

    @property
    def who(self) -> str:
        return self.principal.name

    def need(self, role: str, model: str | None) -> None:
        authorize(self.principal, role, model)

    def may(self, role: str, model: str | None) -> bool:
        return can(self.principal, role, model)

    def need_somewhere(self, role: str = "writer",
                       what: str = "MLflow experiments, runs and artifacts") -> None:
        """Experiments, runs, logged models and staged artifacts belong to no model:
        writing them needs the writer role on some model, reading them the reader role
        on some model (a token with no role, or a reader writing, is refused). Also
        every route's least role, before its body is read (`api()`)."""
        if self.principal.anonymous and role != "reader":
            raise Unauthenticated("anonymous callers may only read")
        scopes = {*self.principal.bindings, *(self.principal.caps or {})}
        if not any(self.may(role, None if s == "*" else s) for s in scopes):
            raise PermissionDenied(f"{self.who} needs the {role} role on some model for "
                                   f"{what}",
                                   hint=f"`modelvc role grant {self.who} {role} --on MODEL`")


    def need_owner(self, owner: str | None, what: str) -> None:
        """Runs, logged models and their staged files are written by whoever created them
        (or an admin on '*'): another writer must not swap files about to be registered."""
        if owner != self.who and not self.may("admin", None):
            raise PermissionDenied(f"{what} belongs to {owner}: {self.who} may not change it",
                                   hint="log to a run or logged model of your own")


Handler = Callable[[Ctx, dict[str, Any]], dict[str, Any]]
TABLE: list[tuple[str, str, str | None, Handler]] = []
# Routes about one registered model, named by the request's `name` (all but the searches)
MODEL_ROUTES = ("/registered-models/", "/model-versions/")


def api(method: str, path: str, least: str | None) -> Callable[[Handler], Handler]:
    """Register a handler for METHOD PREFIX+PATH under both of MLflow's prefixes.

    LEAST is the weakest role that may call it at all (None: any caller), held on some
    model: the route checks it before it reads the body (the model is named in the
    body, or the call is about experiments and runs, which belong to no model). On a
    route about one registered model (MODEL_ROUTES) it is checked again on the model the
    request names, as soon as that is known: from the query (GET: before any body),
    else once the body is parsed, before the handler validates any other field. The
    handler then checks the role it needs on what the body names."""
    def deco(fn: Handler) -> Handler:
        TABLE.append((method, path, least, fn))
        return fn
    return deco


def _params(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in request.query_params:
        values = request.query_params.getlist(k)
        out[k] = values if len(values) > 1 or k in ("stages", "run_ids", "experiment_ids",
                                                     "metric_key") else values[0]
    return out


def _route(fn: Handler, method: str, path: str, least: str | None
           ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    named = least is not None and path.startswith(MODEL_ROUTES)

    async def endpoint(request: Request) -> Response:
        state: ServerState = request.app.state.modelvc
        ctx = Ctx(request, authenticate(request, state), state)
        if least is not None:  # before the body: a refused caller learns nothing of it
            ctx.need_somewhere(least, f"{method} {request.url.path}")
        body: dict[str, Any] = dict(request.path_params)
        if method == "GET" or (method == "DELETE" and not await request.body()):
            body.update(_params(request))
        else:
            raw = await request.body()
            try:
                data = json.loads(raw) if raw.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise bad(f"the request body is not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise bad("the request body must be a JSON object")
            body.update(data)
        if least is not None and named and isinstance(body.get("name"), str):
            ctx.need(least, body["name"])  # a role on another model is not enough
        try:
            result = await run_in_threadpool(fn, ctx, body)
        except FilterError as exc:  # a search's filter, order_by or page the caller sent
            raise bad(str(exc)) from exc
        return JSONResponse(finite(result))
    return endpoint


def mount() -> None:
    """Add every registered handler to the router, then the catch-all 404s."""
    for method, path, least, fn in TABLE:
        for prefix in PREFIXES:
            router.add_api_route(prefix + path, _route(fn, method, path, least), methods=[method],
                                 include_in_schema=False)

    async def unknown(request: Request, rest: str) -> Response:
        authenticate(request, request.app.state.modelvc)
        raise MlflowError("ENDPOINT_NOT_FOUND",
                          f"{request.method} {request.url.path} is not served by modelvc's "
                          "MLflow API (docs/mlflow.md lists what is)")

    for prefix in (*PREFIXES, "/api/2.0/mlflow-artifacts"):
        router.add_api_route(prefix + "/{rest:path}", unknown,
                             methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                             include_in_schema=False)


def finite(value: Any) -> Any:
    """NaN and infinities as protobuf JSON spells them (strict JSON has no such numbers;
    MLflow clients log NaN metrics)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def ms(t: Any) -> int:
    """A datetime (or epoch seconds) as MLflow's epoch milliseconds."""
    if hasattr(t, "timestamp"):
        return int(t.timestamp() * 1000)
    return int(float(t) * 1000)


def need_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise bad(f"missing value for required parameter '{key}'")
    return value


def edited_tags(doc: dict[str, Any] | None, body: dict[str, Any], *, delete: bool = False
                ) -> dict[str, Any]:
    """The sidecar DOC's tags with BODY's key set to its value (set-tag calls), or
    removed (delete-tag calls)."""
    tags = dict((doc or {}).get("tags", {}))
    key = need_str(body, "key")
    if delete:
        tags.pop(key, None)
    else:
        tags[key] = str(body.get("value", ""))
    return tags
