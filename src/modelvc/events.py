"""Events: audit entries delivered to configured webhooks (see webhooks.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .meta.store import MetaStore


class Events:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta

    def after_mutation(self) -> None:
        """Called after every recorded mutation: push new audit entries to webhooks."""
        return None
