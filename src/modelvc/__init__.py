"""modelvc: version control and continuous delivery for neural-network models.

`from modelvc import Registry` is resolved lazily so that importing the package (and
starting the CLI) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .registry import Registry, Version

__version__ = "0.1.0"
__all__ = ["Registry", "Version", "__version__", "errors"]


def __getattr__(name: str) -> Any:
    if name in ("Registry", "Version"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'modelvc' has no attribute {name!r}")
