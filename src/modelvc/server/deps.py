"""FastAPI dependencies shared by the routers: the state, the caller, the registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..registry import Registry
from .auth import Principal, authenticate
from .state import ServerState


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
