"""Builders for test records."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from modelvc.meta.api import NewVersion, ObjectRow


def hexid(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def obj(name: str, ref: str | None = None, kind: str = "tensor") -> ObjectRow:
    return ObjectRow(
        id=hexid("obj", name),
        kind=kind,  # type: ignore[arg-type]
        codec="delta" if ref else "planes",
        raw_size=100,
        stored_size=40,
        ref_id=hexid("obj", ref) if ref else None,
    )


def new_version(model: str, tag: object, *, objects: list[ObjectRow] | None = None,
                parents: list[str] | None = None) -> NewVersion:  # fmt: skip
    return NewVersion(
        id=hexid("version", model, tag),
        model=model,
        author="alice",
        message=f"commit {tag}",
        parents=parents or [],
        params={"lr": 0.001, "tag": str(tag)},
        metrics={"acc": 0.9},
        lineage={"git": "abc"},
        raw_size=1000,
        stored_size=300,
        created_at=datetime.now(UTC),
        objects=objects or [],
    )
