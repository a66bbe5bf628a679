"""The embedded registry: `Registry` (core.py) with its read verbs, areas (keys,
signatures, gates, tokens, roles, deployments), hosting verbs and write verbs, each in
the module named for it. Only this package and modelvc.ingest touch the metadata
store, the object store and ObjectIO; everything above calls the public verbs.

`from modelvc.registry import Registry` is the public name (as before the package)."""

from ..api.types import UNSET as UNSET
from .core import Registry as Registry
from .core import Version as Version
from .writes import DEFAULT_BRANCH as DEFAULT_BRANCH

__all__ = ["DEFAULT_BRANCH", "UNSET", "Registry", "Version"]
