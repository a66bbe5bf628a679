"""What the Registry's mixins (reads.py, refs.py, host.py, exchange.py, writes.py) and its
areas (areas.py, gate_runs.py) may use of it: its folder, metadata, object store, the
helpers built on them and the resolving verbs of lookup.py, declared once here for mypy
(so none of them imports core.py, which imports them). All private but `resolve`: only
`registry/` and what it hands them to touch them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .. import layout as _layout_mod
    from ..events import Events
    from ..gates.authority import Authority
    from ..manifest import Manifest
    from ..meta.api import RefRow, VersionRow
    from ..meta.store import MetaStore
    from ..objects.base import ObjectStore
    from ..signing.trust import Trust
    from ..storage import ObjectIO


class RegistryParts:
    _layout: _layout_mod.Layout
    _meta: MetaStore
    _store: ObjectStore
    _jobs: ThreadPoolExecutor
    if TYPE_CHECKING:  # built by Registry on first use (core.py, reads.py)
        @property
        def _io(self) -> ObjectIO: ...

        @property
        def _trust(self) -> Trust: ...

        @property
        def _governance(self) -> Authority: ...

        @property
        def events(self) -> Events: ...

    if TYPE_CHECKING:  # defined by Registry (lookup.py)
        def resolve(self, ref: str, *, deleted: bool = False) -> VersionRow: ...

        def _ref_or_none(self, model: str, name: str) -> RefRow | None: ...

        def _manifest(self, version_id: str) -> Manifest: ...
