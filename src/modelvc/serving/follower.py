"""One slot that serves what a ref (channel, branch, or fixed version) points to: it
polls the ref and switches when it moves (the versions come from swap.Pool)."""

from __future__ import annotations

import asyncio
import logging

from ..errors import NotFound
from ..meta.api import RefRow, VersionRow
from .swap import Loaded, LoadFailed, Pool

log = logging.getLogger("modelvc.serving")


class Follower:
    """One slot that serves what a ref (channel, branch, or fixed version) points to."""

    def __init__(self, pool: Pool, model: str, ref: str, *, keep_previous: bool = True
                 ) -> None:
        self.pool, self.model, self.ref = pool, model, ref
        self.keep_previous = keep_previous
        self.current: Loaded | None = None
        self.previous: Loaded | None = None
        self.revision: int | None = None
        self.target: str | None = None  # version id the ref points to
        self.last_error: str | None = None
        self.epoch = 0  # fleet routing epoch of `current` (modelvc.fleet); 0 outside a fleet
        self.fixed = ref.startswith("v") and ref[1:].isdigit()
        self._seen: object | None = None  # the registry's change token at the last read
        self._lock = asyncio.Lock()  # one refresh at a time, or a version is held twice

    async def refresh(self) -> bool:
        """Look at the ref (one indexed SELECT); switch if it moved. True if switched."""
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        if self.fixed:
            if self.current is not None or self.last_error is not None:
                return False
            ref = f"{self.model}@{self.ref}"
            try:
                v = await self.pool.call(lambda: self.pool.reg.resolve(ref))
            except NotFound as exc:
                self.last_error = exc.message
                return False
            return await self.switch(v)
        reg, known, seen = self.pool.reg, self.revision, self._seen

        def read() -> tuple[object | None, RefRow | None, VersionRow | None]:
            """The registry's change token; if it moved since the last read, the ref,
            and the version it points to if that moved too: one thread round trip per
            poll, one statement while nothing was committed (not on the loop: a
            statement can wait inside SQLite, and the loop must never wait)."""
            token = reg.change_token()
            if token is not None and token == seen:
                return token, None, None
            row = reg.ref(self.model, self.ref)
            vid = row.version_id
            return token, row, (reg.version(vid) if vid is not None and row.revision != known
                                else None)

        try:
            got: tuple[object | None, RefRow | None, VersionRow | None] = \
                await self.pool.call(read)
            token, row, target = got
        except NotFound as exc:  # a channel may be created later: keep looking
            self.last_error = exc.message
            return False
        if row is None:
            return False
        self._seen = token
        if row.revision == self.revision:
            return False
        self.revision, self.target = row.revision, row.version_id
        if target is None or (self.current and self.current.version.id == target.id):
            return False
        return await self.switch(target)

    async def switch(self, v: VersionRow) -> bool:
        try:
            new = await self.pool.hold(v)
        except LoadFailed as exc:
            self.last_error = str(exc)
            log.error("%s@%s stays on %s: %s", self.model, self.ref,
                      self.current.label if self.current else "nothing", exc)
            return False
        was = self.current.label if self.current else "nothing"
        self.install(new)
        if was != new.label:  # one line per switch: what a gateway served, and when
            log.info("%s@%s: serving %s (was %s)", self.model, self.ref, new.label, was)
        return True

    def install(self, new: Loaded, epoch: int | None = None) -> None:
        """Serve `new` (loaded and warm; the caller's hold passes to this slot) from now
        on: one assignment in the event loop, the old version stays warm as previous."""
        old, self.current, self.last_error = self.current, new, None
        if epoch is not None:
            self.epoch = epoch
        m = self.pool.metrics
        m.swaps.labels(self.model, self.ref).inc()
        m.serving.labels(self.model, self.ref).set(new.version.number)
        if old is new:
            self.pool.release(old)  # the same version at a new epoch: one hold is enough
        elif old is not None:
            if self.keep_previous:
                if self.previous is not None:
                    self.pool.release(self.previous)
                self.previous = old
            else:
                self.pool.release(old)

    def close(self) -> None:
        for item in (self.current, self.previous):
            if item is not None:
                self.pool.release(item)
        self.current = self.previous = None
