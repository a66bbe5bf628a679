"""modelvc: version control and continuous delivery for neural-network models.

`from modelvc import Registry` is resolved lazily so that importing the package (and
starting the CLI) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from .api.openers import OPENERS

if TYPE_CHECKING:
    from .api import RegistryAPI
    from .registry import Registry, Version

__version__ = "0.1.0"
__all__ = ["Registry", "Version", "__version__", "errors"]


def _open_server(url: str, token: str | None) -> RegistryAPI:
    from .remote import RemoteRegistry  # httpx and friends: only when a URL is opened

    return RemoteRegistry(url, token=token)


OPENERS["http://"] = OPENERS["https://"] = _open_server


def __getattr__(name: str) -> Any:
    if name in ("Registry", "Version"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'modelvc' has no attribute {name!r}")
