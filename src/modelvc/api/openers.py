"""Where `Registry.open(location)` looks for a registry that is not a folder: URL
prefix -> a function (url, token) -> RegistryAPI. The package root (modelvc/__init__.py)
registers http:// and https:// (the remote client), so the embedded registry, a lower
layer, never imports the client that sits above it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import RegistryAPI

Opener = Callable[[str, "str | None"], "RegistryAPI"]
OPENERS: dict[str, Opener] = {}
