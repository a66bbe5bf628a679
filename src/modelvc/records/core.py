"""The records every command uses: versions, their files' storage, refs and their
moves, the audit trail (and UNSET, `finite`). Re-exported by modelvc.records."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

RefKind = Literal["branch", "channel", "tag"]
SignatureStatus = Literal["valid", "invalid", "revoked", "untrusted", "unknown-key"]


class Unset:
    """Marks an argument that was not given (where None is a meaningful value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


@dataclass(frozen=True)
class Version:
    id: str  # 64-hex BLAKE3 of the manifest bytes
    model: str
    number: int  # v1, v2, ... per model, allocated inside the insert transaction
    created_at: datetime
    author: str
    message: str
    parents: list[str]  # version ids
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]  # git, data fingerprints, environment
    raw_size: int  # bytes of the files as checked out
    stored_size: int  # bytes newly stored by this version (objects it introduced)
    deleted_at: datetime | None = None


@dataclass(frozen=True)
class FileStorage:
    """What one file of a version takes in the registry."""

    path: str
    raw_size: int  # bytes as checked out
    stored_size: int  # bytes of its distinct objects in the store (a delta: the delta only)
    objects: int  # distinct objects (tensors, byte segments)
    codecs: dict[str, int]  # codec ("zstd", "delta", "planes", ...) -> its stored bytes


@dataclass(frozen=True)
class Ref:
    model: str
    name: str
    kind: RefKind
    version_id: str | None
    updated_at: datetime
    revision: int  # bumped on every move


@dataclass(frozen=True)
class RefMove:
    id: int
    model: str
    name: str
    kind: RefKind
    old: str | None
    new: str | None
    actor: str
    at: datetime
    action: str  # create | commit | promote | rollback | delete | force
    reason: str


def previous_target(moves: list[RefMove], current: str | None) -> str | None:
    """Where a rollback of a channel at CURRENT goes: its history (MOVES, oldest first)
    walked as a stack, promotions push, rollbacks pop. The registry moves the channel
    there; the UI says so before it asks."""
    stack: list[str] = []
    for m in moves:
        if m.new is None:
            stack.clear()
        elif m.action == "rollback":
            while stack and stack[-1] != m.new:
                stack.pop()
            if not stack:
                stack.append(m.new)
        elif not stack or stack[-1] != m.new:
            stack.append(m.new)
    if stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the hash-chained audit trail."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    target: str
    before: Any
    after: Any
    reason: str
    prev_hash: str
    hash: str


def finite(x: Any) -> Any:
    """JSON has no NaN/inf: say so in text instead of writing invalid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    return x
