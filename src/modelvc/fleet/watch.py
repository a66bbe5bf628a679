"""`modelvc deploy watch`: plain channel moves (`modelvc promote`, `modelvc rollback`, a
gate, the Registry API) drive a deployment's rollouts.

The watcher compares the deployment's channel with the version the fleet serves; when
they differ it runs the deployment's strategy to the channel's version (the channel has
already moved, so nothing is moved at the commit point). A rollback to the previous
version is the same path, and one step: every replica still holds it warm.

A version the fleet refused (the stage aborted) is not tried again until the channel
moves again: the channel's revision counts every move, so re-promoting the same version
is a deliberate retry, while heartbeats and restarts of the watcher's wake-ups are not.
Wake-ups: PostgreSQL NOTIFY on ref moves and deployment changes (meta.refops, meta.fleet),
with a slow re-read as the safety net; on SQLite, polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import Conflict
from ..meta.fleet import DEPLOY_CHANNEL, REF_CHANNEL
from .controller import Controller, Outcome
from .notify import Listener, is_postgres

log = logging.getLogger("modelvc.fleet")


class Watcher:
    """Follow deployment `name`'s channel until `stop()`. `step()` is one look."""

    def __init__(self, controller: Controller, name: str, *, poll: float = 0.2,
                 safety: float = 2.0,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.c, self.name = controller, name
        self.on_outcome = on_outcome or (lambda _o: None)
        self.looks = 0  # completed looks (tests wait on it instead of on the clock)
        self.refused: tuple[str, int] | None = None  # (version, channel revision) aborted
        self._wake, self._stop = threading.Event(), threading.Event()
        self._listener: Listener | None = None
        url = controller.reg.layout.meta_url
        self.push = is_postgres(url)
        self.interval = safety if self.push else poll
        if self.push:
            self._listener = Listener(url, [REF_CHANNEL, DEPLOY_CHANNEL],
                                      lambda _c, _d: self._wake.set(),
                                      self._wake.set).start()

    def step(self) -> Outcome | None:
        """Roll out what the channel names if the fleet does not serve it yet."""
        meta = self.c.meta
        d = meta.get_deployment(self.name)
        ref = meta.get_ref(d.model, d.channel)
        vid = ref.version_id
        if vid is None or vid == d.version_id or d.state in ("staging", "rolling"):
            return None  # nothing to do, or another controller is mid-switch
        if self.refused == (vid, ref.revision):
            return None  # the fleet refused it; wait for the channel to move again
        log.info("fleet: %s@%s moved (revision %d): rolling out %s", d.model, d.channel,
                 ref.revision, vid[:12])
        out = self.c.switch(d, vid)
        if not out.ok and out.deployment.state == "aborted":
            self.refused = (vid, ref.revision)
            log.warning("fleet: %s refused %s: %s (waiting for the channel to move)",
                        self.name, vid[:12], out.reason)
        return out

    def run(self) -> None:
        """Loop until stop(): look, report, sleep until a wake-up (or the interval)."""
        backoff = self.interval
        while not self._stop.is_set():
            self._wake.clear()
            try:
                out = self.step()
                backoff = self.interval
            except Conflict as exc:  # another controller moved it: look again
                log.info("fleet: %s", exc)
                out = None
            except Exception as exc:  # database unreachable: retry with backoff
                log.warning("fleet: watching %s: %s", self.name, exc)
                out, backoff = None, min(backoff * 2, 5.0)
            self.looks += 1
            if out is not None:
                self.on_outcome(out)
                continue  # the channel may have moved meanwhile
            self._wake.wait(backoff)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()

    def start(self) -> threading.Thread:
        """run() in a daemon thread."""
        t = threading.Thread(target=self.run, name=f"modelvc-watch-{self.name}", daemon=True)
        t.start()
        return t
