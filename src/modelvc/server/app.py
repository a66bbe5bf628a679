"""create_app(): the FastAPI application with every router mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import ModelvcError
from .state import ServerConfig, ServerState


def create_app(config: ServerConfig) -> FastAPI:
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="modelvc registry", version=__version__, lifespan=lifespan)
    app.state.modelvc = state

    @app.exception_handler(ModelvcError)
    async def modelvc_error(request: Request, exc: ModelvcError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message, "hint": exc.hint},
                            status_code=exc.http_status)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Routers are optional while they are being written; each owns its URL space:
    #   api.py      /api/v1/...            the Registry API (remote client speaks it)
    #   transfer.py /api/v1/objects/...    push/pull of objects and versions
    #   hf.py       /{repo}/resolve/..., /api/models/...   Hugging Face Hub clients
    for name in ("api", "transfer", "hf"):
        try:
            module = __import__(f"modelvc.server.{name}", fromlist=["router"])
        except ModuleNotFoundError as exc:
            if exc.name != f"modelvc.server.{name}":
                raise
            continue
        app.include_router(module.router)
    return app
