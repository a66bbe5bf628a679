"""Upload possession (a mixin of MetaStore): which objects each subject proved to hold
by sending their bytes to a registry server (verified against the id on arrival).

A commit or a pushed version may name another model's object only with such a proof
(knowing an id is not enough). Kept in the database, so every server process sharing
it agrees: behind a load balancer the uploads may reach one process and the commit
another. A proof lasts as long as the caller says (`since`); `expire_uploads` deletes
older rows (indexed on `at`). Rows are not audited: they change nothing a reader sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .area import Area
from .rows import chunks, now
from .schema import uploads

T = TypeVar("T")


class UploadsArea(Area):
    def record_uploads(self, subject: str, ids: Iterable[str], *,
                       at: datetime | None = None) -> None:
        """SUBJECT sent these objects' bytes (now, or at `at`): insert, or move the
        row's time forward on a repeated upload. One transaction."""
        keys = sorted(set(ids))  # one order for every writer: no upsert deadlocks
        if not keys:
            return
        when = at or now()

        def tx(conn: sa.Connection) -> None:
            mod = sqlite if conn.dialect.name == "sqlite" else postgresql
            for batch in chunks(keys):
                stmt = mod.insert(uploads)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[uploads.c.subject, uploads.c.object_id],
                    set_={"at": stmt.excluded.at})
                conn.execute(stmt, [{"subject": subject, "object_id": i, "at": when}
                                    for i in batch])

        self._tx(tx, write=True)

    def uploaded(self, subject: str, ids: Iterable[str], *, since: datetime) -> set[str]:
        """The ids among `ids` SUBJECT uploaded at or after `since` (one indexed query
        per 500 ids)."""
        keys = sorted(set(ids))

        def tx(conn: sa.Connection) -> set[str]:
            out: set[str] = set()
            for batch in chunks(keys):
                q = sa.select(uploads.c.object_id).where(
                    uploads.c.subject == subject, uploads.c.object_id.in_(batch),
                    uploads.c.at >= since)
                out.update(conn.execute(q).scalars())
            return out

        return self._tx(tx) if keys else set()

    def expire_uploads(self, before: datetime) -> int:
        """Forget uploads older than `before`; returns how many rows went."""

        def tx(conn: sa.Connection) -> int:
            return int(conn.execute(sa.delete(uploads).where(uploads.c.at < before)).rowcount)

        return self._tx(tx, write=True)
