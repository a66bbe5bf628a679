"""MetaStore's objects area: the rows of stored objects (tensors, blobs, chunks,
manifests), who uses them, and paging through them for gc and verify."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from ..errors import ObjectNotFound
from . import objectsql
from .api import ObjectRow
from .area import Area


class ObjectsArea(Area):
    def get_objects(self, ids: Iterable[str]) -> dict[str, ObjectRow]:
        """Known objects among `ids` (unknown ids are absent)."""
        return self._tx(partial(objectsql.get, ids=list(ids)))

    def update_object(self, row: ObjectRow) -> None:
        """Rewrite codec/stored_size/ref_id after a re-base. ObjectNotFound if absent."""
        if self._tx(partial(objectsql.update, row=row), write=True) != 1:
            raise ObjectNotFound(f"no object {row.id} in the registry database")

    def delete_objects(self, ids: Iterable[str]) -> None:
        """Conflict if a version still links one of them (nothing is deleted then)."""
        self._tx(partial(objectsql.delete, ids=list(ids)), write=True)

    def object_users(self, ids: Iterable[str], *, through_deltas: bool = False
                     ) -> dict[str, set[str]]:
        """Object id -> names of the models whose live versions list it (or, with
        through_deltas, list an object whose delta chain reaches it)."""
        fn = objectsql.users_through_deltas if through_deltas else objectsql.users_direct
        return self._tx(partial(fn, ids=list(ids)))

    def live_object_ids(self) -> set[str]:
        """Objects linked to a live version, plus (transitively) their delta refs."""
        return self._tx(objectsql.live_ids)

    def iter_objects(self) -> Iterator[ObjectRow]:
        """Every object by id, in pages; each page is its own short read."""
        last = ""
        while True:
            page = self._tx(partial(objectsql.page, after=last))
            yield from page
            if len(page) < objectsql.PAGE:
                return
            last = page[-1].id
