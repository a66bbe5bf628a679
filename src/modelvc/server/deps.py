"""FastAPI dependencies shared by the routers: the state, the caller, the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from ..registry import Registry
from .auth import Principal, authenticate, authorize, authorize_somewhere
from .state import ServerState

NAMED = "<named>"  # `least(role, on=NAMED)`: the body or query names the model


def state_of(request: Request) -> ServerState:
    st: ServerState = request.app.state.modelvc
    return st


def principal(request: Request) -> Principal:
    return authenticate(request, state_of(request))


def registry(request: Request) -> Registry:
    return state_of(request).registry()


P = Annotated[Principal, Depends(principal)]
R = Annotated[Registry, Depends(registry)]
S = Annotated[ServerState, Depends(state_of)]


def least(role: str, on: str | None = "model") -> Any:
    """A route's least ROLE, checked before its body is parsed (so a caller who may not
    call the route is refused the same whatever it sent, and learns no body schema): on
    the model in path parameter ON, on the whole registry (None), or, where the body or
    query names the model (NAMED), on some model; the route then checks the one named.
    app.py runs the check too when the body is not even JSON (FastAPI parses JSON
    before any dependency runs). Use: `@router.post(..., dependencies=[least("writer")])`.
    The handler still checks the role itself: the web UI (server/ui.py) calls handlers
    as functions, where no dependency runs."""

    def check(request: Request) -> None:
        p = principal(request)
        if on == NAMED:
            authorize_somewhere(p, role)
        else:
            authorize(p, role, None if on is None else request.path_params[on])

    check.least = True  # type: ignore[attr-defined]
    return Depends(check)


def least_checks(route: Any) -> list[Callable[[Request], None]]:
    """The `least` checks a route declares."""
    return [d.dependency for d in getattr(route, "dependencies", ())
            if getattr(d.dependency, "least", False)]
