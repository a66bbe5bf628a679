"""Ref moves and ancestry: a compare-and-swap with its audit entry in one transaction,
and the walks over parents (log, fast-forward checks, what a transfer sends)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..errors import InvalidName, ModelNotFound, NotFound, RefNotFound, UsageError
from ..meta.api import AuditEntry, RefKind, RefRow, VersionRow
from ..names import is_hex_prefix

if TYPE_CHECKING:
    from ..meta.store import MetaStore


def head_or_none(meta: MetaStore, model: str, branch: str) -> RefRow | None:
    """The branch's row, None when the model or branch does not exist yet."""
    try:
        row = meta.get_ref(model, branch)
    except (RefNotFound, ModelNotFound):
        return None
    if row.kind != "branch":
        raise UsageError(f"{model}@{branch} is a {row.kind}, not a branch")
    return row


def check_not_an_id(meta: MetaStore, model: str, name: str, what: str) -> None:
    """A new ref NAME that one of MODEL's version ids starts with (`4b68a9` copied from
    a log) would make every `MODEL@NAME` ambiguous at once. Shorter hex names stay
    valid otherwise (names.check_ref_name refuses 7+ hex): `bf16`, `beef`."""
    if is_hex_prefix(name) and meta.versions_by_prefix(model, name):
        raise InvalidName(f"invalid {what} {name!r}: a version id of {model} starts with it "
                          "(`MODEL@NAME` would be ambiguous)",
                          hint=f"add a word, e.g. build-{name}")


def move_ref(meta: MetaStore, model: str, name: str, kind: RefKind, *, expected: str | None,
             new: str | None, actor: str, action: str, reason: str = "",
             create: bool = False) -> RefRow:
    """Move MODEL@NAME from EXPECTED to NEW (RefMoved if it holds anything else),
    appending the ref move and an audit entry in the same transaction. A tag's
    creation is audited as "tag", its deletion as "delete". The caller tells the
    registry's events afterwards."""
    entry = AuditEntry(actor=actor, action="tag" if kind == "tag" and new else action,
                       target=f"{model}@{name}", model=model,
                       before={"version": expected} if not create else None,
                       after={"version": new, "kind": kind}, reason=reason)
    return meta.set_ref(model, name, kind, expected=expected, new=new, actor=actor,
                        action=action, reason=reason, create=create, audit=entry)


def ancestors(meta: MetaStore, start: Iterable[str], *, live_only: bool = False
              ) -> Iterator[VersionRow]:
    """START and every version reachable through parents, each once (depth first).
    Versions unknown here (history recorded elsewhere) are skipped; with LIVE_ONLY,
    deleted ones too, and the walk does not go through them."""
    seen: set[str] = set()
    stack = list(start)
    stack.reverse()
    while stack:
        vid = stack.pop()
        if vid in seen:
            continue
        seen.add(vid)
        try:
            v = meta.get_version(vid)
        except NotFound:
            continue
        if live_only and v.deleted_at is not None:
            continue
        yield v
        stack.extend(reversed(v.parents))


def newest_first(versions: Iterable[VersionRow]) -> list[VersionRow]:
    """VERSIONS with every version above its parents (a fork's origin, numbered in
    another model, comes below the fork's first version), the newest first among
    those free to go next (by creation time, then number)."""
    rows = {v.id: v for v in versions}
    children = dict.fromkeys(rows, 0)  # children not yet placed, per version
    for v in rows.values():
        for p in set(v.parents) & rows.keys():
            children[p] += 1

    def key(v: VersionRow) -> tuple[float, int, str]:
        return (-v.created_at.timestamp(), -v.number, v.id)

    ready = [key(v) for v in rows.values() if children[v.id] == 0]
    heapq.heapify(ready)
    out: list[VersionRow] = []
    while ready:
        v = rows[heapq.heappop(ready)[2]]
        out.append(v)
        for p in set(v.parents) & rows.keys():
            children[p] -= 1
            if children[p] == 0:
                heapq.heappush(ready, key(rows[p]))
    return out


def descends(meta: MetaStore, vid: str, ancestor: str) -> bool:
    """Whether ANCESTOR is VID or one of its ancestors."""
    return any(v.id == ancestor for v in ancestors(meta, [vid])) or vid == ancestor
