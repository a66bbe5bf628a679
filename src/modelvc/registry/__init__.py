"""The embedded registry: `Registry` (core.py: open, commit, resolve, list) and its
verbs in mixins named for what they hold: reads.py (checkout, load, diff,
maintenance, audit), refs.py (branches, tags, promote, rollback, history), writes.py
(amend, commit over HTTP), host.py (what a server or gateway asks), exchange.py
(push, pull, clone), plus areas.py (keys, signatures, gates, tokens, roles,
deployments), rollouts.py (the fleet's switch steps) and gate_runs.py. Only this
package and modelvc.ingest touch the metadata store, the object store and ObjectIO
(private: `_meta`, `_store`, `_io`); everything above calls the public verbs
(tests/test_private.py).

`from modelvc.registry import Registry` is the public name (as before the package)."""

from ..records import UNSET as UNSET
from .core import Registry as Registry
from .core import Version as Version
from .writes import DEFAULT_BRANCH as DEFAULT_BRANCH

__all__ = ["DEFAULT_BRANCH", "UNSET", "Registry", "Version"]
