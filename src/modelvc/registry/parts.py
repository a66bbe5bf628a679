"""What the Registry's mixins (host.py, exchange.py, writes.py, refs.py) may use of it:
its folder, metadata, object store and the helpers built on them, declared once here
for mypy. All private: only `registry/` and what it hands them to touch them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .. import layout as _layout_mod
    from ..events import Events
    from ..gates.authority import Authority
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
