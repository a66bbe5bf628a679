"""Builders for test records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from modelvc.meta.api import NewVersion, ObjectRow


@dataclass(frozen=True)
class Backend:
    """Where a test's registry database lives."""

    kind: str  # "sqlite" | "postgres"
    url: str


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


def commit_until_accepted(url: str, model: str, worker: int, count: int) -> int:
    """Commit `count` versions on branch main, re-reading the head after every lost
    race (RefMoved). Returns how many races were lost. Runs in threads and in
    spawned processes, so it opens its own store."""
    from modelvc.errors import RefMoved, RefNotFound
    from modelvc.meta.store import MetaStore

    store = MetaStore.open(url)
    lost = 0
    try:
        for i in range(count):
            while True:
                try:
                    head: str | None = store.get_ref(model, "main").version_id
                except RefNotFound:
                    head = None
                v = new_version(model, (worker, i), parents=[head] if head else [])
                try:
                    store.insert_version(
                        v, branch="main", expected_head=head, create_branch=head is None,
                        actor=f"w{worker}",
                    )  # fmt: skip
                    break
                except RefMoved:
                    lost += 1
    finally:
        store.close()
    return lost
