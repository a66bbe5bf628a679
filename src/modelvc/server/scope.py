"""Which stored objects a principal may see.

Object ids are content hashes: knowing one must not be enough to read it. An object is
readable when a live version of a model the principal may read lists it, or when it is
a delta reference (objects.ref_id, transitively) of an object such a version lists.
Unreadable objects are answered exactly like absent ones, so existence does not leak.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ObjectNotFound
from ..registry import Registry
from .auth import Principal, can
from .state import Possession

Usage = dict[str, set[str]]  # object id -> names of models whose live versions use it


class Scope:
    """The readable / used split of a batch of object ids for one principal."""

    def __init__(self, reg: Registry, principal: Principal, ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(ids))
        self._can: dict[str, bool] = {}
        self._p = principal
        usage = reg.object_users(self.ids)
        # Most objects are listed by a version directly; only the rest (delta
        # references, other models' objects) need the walk down the delta chains.
        rest = [i for i in self.ids if not self._any_readable(usage.get(i, ()))]
        for oid, names in (reg.object_users(rest, through_deltas=True) if rest else {}).items():
            usage.setdefault(oid, set()).update(names)
        self.usage = usage

    def _any_readable(self, names: Iterable[str]) -> bool:
        for m in names:
            if m not in self._can:
                self._can[m] = can(self._p, "reader", m)
            if self._can[m]:
                return True
        return False

    def readable(self) -> list[str]:
        return [i for i in self.ids if self._any_readable(self.usage.get(i, ()))]

    def hidden(self) -> set[str]:
        """Used by live versions, none of them readable: must look absent. Objects no
        live version uses (an interrupted push's, awaiting its version) stay visible to
        writers so that a resumed push skips them."""
        return {i for i in self.ids
                if i in self.usage and not self._any_readable(self.usage[i])}


def require_access(reg: Registry, principal: Principal, possession: Possession,
                   ids: Iterable[str], what: str = "object") -> None:
    """ObjectNotFound unless every id is stored and, when another model's live version
    uses it, the principal may read it or has sent its bytes. An absent object and a
    hidden one get the same answer, so the refusal does not reveal which it was."""
    ids = list(dict.fromkeys(ids))
    held = reg.held_objects(ids)
    hidden = set(possession.unproven(principal.name, Scope(reg, principal, held).hidden()))
    for oid in sorted(set(ids) - held | hidden):
        raise not_uploaded(oid, what)


def not_uploaded(oid: str, what: str = "object") -> ObjectNotFound:
    """The one answer for an absent object and for one the caller may not know of."""
    return ObjectNotFound(f"{what} {oid} was not uploaded",
                          hint="upload the ids /uploads/missing (or objects/have) "
                               "does not list, then retry")
