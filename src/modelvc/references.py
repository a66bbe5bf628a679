"""The delta reference policy: a new tensor deltas against its parent version's tensor
of the same file and name, else (after re-sharding) of the same name in any file."""

from __future__ import annotations

from .manifest import Manifest, SegmentRef


class References:
    def __init__(self, parent: Manifest | None) -> None:
        self.index: dict[tuple[str, str], SegmentRef] = parent.tensor_index() if parent else {}
        self.by_name: dict[str, SegmentRef] = {}
        for (_, name), seg in self.index.items():
            self.by_name.setdefault(name, seg)

    def get(self, file: str, tensor: str) -> SegmentRef | None:
        return self.index.get((file, tensor)) or self.by_name.get(tensor)

    def ids(self) -> frozenset[str]:
        """The parent's tensor objects (all stored)."""
        return frozenset(seg.id for seg in self.index.values())
