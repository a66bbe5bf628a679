"""`modelvc deploy watch`: plain channel moves (`modelvc promote`, `modelvc rollback`, a
gate, the Registry API) drive a deployment's rollouts.

The watcher compares the deployment's channel with the version the fleet serves; when
they differ it runs the deployment's strategy to the channel's version (the channel has
already moved, so nothing is moved at the commit point). A rollback to the previous
version is the same path, and one step: every replica still holds it warm.

A version the fleet refused (the stage aborted, the canary regressed) is not tried again
until the channel moves again: the channel's revision counts every move, so re-promoting
the same version is a deliberate retry, while heartbeats and restarts of the watcher's
wake-ups are not. Refusals are read from the audit trail (fleet.refusals: the controller
records each one there, with the channel revision it was refused at), so a restarted
watcher, or one on another host, skips them too; a watcher queries the trail only when
the channel names a version the fleet does not serve, and then only for newer entries.
Wake-ups: PostgreSQL NOTIFY on ref moves and deployment changes (meta.refops, meta.fleet),
with a slow re-read as the safety net; on SQLite, polling.

Stopping: `stop_on_signals()` makes SIGINT and SIGTERM set a stop flag that the loop
checks, and wake its wait, instead of raising KeyboardInterrupt into whatever runs. A
KeyboardInterrupt is not safe to rely on here: one landing in SQLAlchemy's pool pre-ping
while psycopg waits for the answer is replaced by the pre-ping's cleanup error
("can't change 'autocommit' now: connection in transaction status ACTIVE"), which the
loop took for an unreachable database and retried, forever. The wake-up is a socket
pair, not a threading.Event: a handler runs in the main thread between any two
bytecodes, possibly while that thread holds the Event's lock inside its wait, and
setting the Event there would deadlock. A rollout in progress finishes (bounded by the
stage and verify timeouts and the canary window: interrupting it would leave the
deployment mid-switch); a second signal interrupts it at once.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from ..errors import Conflict
from ..meta.fleet import DEPLOY_CHANNEL, REF_CHANNEL
from ..records import Deployment
from . import refusals
from .controller import Controller, Outcome
from .notify import Listener, is_postgres
from .refusals import Refusal

log = logging.getLogger("modelvc.fleet")


class Watcher:
    """Follow deployment `name`'s channel until `stop()`. `step()` is one look.
    `on_outcome` hears of each rollout, `on_skip` (once per refusal) of a version the
    watcher leaves alone because the fleet refused it at the channel's revision."""

    def __init__(self, controller: Controller, name: str, *, poll: float = 0.2,
                 safety: float = 2.0,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 on_skip: Callable[[Refusal], None] | None = None) -> None:
        self.c, self.name = controller, name
        self.on_outcome = on_outcome or (lambda _o: None)
        self.on_skip = on_skip or (lambda _r: None)
        self.looks = 0  # completed looks (tests wait on it instead of on the clock)
        # (version id, channel revision) -> its refusal: from the audit trail and our own
        self.refused: dict[tuple[str, int], Refusal | None] = {}
        self._audit_seen = 0  # newest audit id read for this deployment's refusals
        self._announced: set[tuple[str, int]] = set()
        # the signal that stopped the loop (0: stop() was called), None while running
        self.stopped_by: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()  # see the module doc: not an Event
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._listener: Listener | None = None
        url = controller.rollouts.url
        self.push = is_postgres(url)
        self.interval = safety if self.push else poll
        if self.push:
            self._listener = Listener(url, [REF_CHANNEL, DEPLOY_CHANNEL],
                                      lambda _c, _d: self.wake(), self.wake).start()

    def step(self) -> Outcome | None:
        """Roll out what the channel names if the fleet does not serve it yet."""
        rollouts = self.c.rollouts
        d = rollouts.get_deployment(self.name)
        ref = rollouts.get_ref(d.model, d.channel)
        vid = ref.version_id
        if d.pending_id is not None:
            if self.c.running(d.name):
                return None  # another controller is mid-switch
            if vid is None or vid == d.version_id:  # interrupted, going nowhere: drop it
                log.warning("fleet: %s: %s", self.name, self.c.abort(self.name).reason)
                return None
        elif vid is None or vid == d.version_id:
            return None  # nothing to do
        key = (vid, ref.revision)
        if self._refused(d, key):
            if key not in self._announced:  # wait for the channel to move again
                self._announced.add(key)
                r = self.refused[key]
                log.warning("fleet: %s: %s@%s names %s, which the fleet refused at revision "
                            "%d (%s); waiting for the channel to move", self.name, d.model,
                            d.channel, vid[:12], ref.revision, r.reason if r else "")
                if r is not None:
                    self.on_skip(r)
            return None
        log.info("fleet: %s@%s moved (revision %d): rolling out %s", d.model, d.channel,
                 ref.revision, vid[:12])
        out = self.c.switch(d, vid, ref.revision)
        if not out.ok and out.deployment.state == "aborted":
            # also in the audit trail (the controller recorded it); kept here in case that
            # write failed, so this process at least does not loop on it
            self.refused.setdefault(key, None)
            self._announced.add(key)  # the outcome itself says so
            log.warning("fleet: %s refused %s: %s (waiting for the channel to move)",
                        self.name, vid[:12], out.reason)
        return out

    def _refused(self, d: Deployment, key: tuple[str, int]) -> bool:
        """Did the fleet refuse this version at this channel revision? Newer audit
        entries are read only when the answer is not known yet."""
        if key in self.refused:
            return True
        for r in refusals.since(self.c.rollouts, d, self._audit_seen):
            self._audit_seen = max(self._audit_seen, r.audit_id)
            if r.revision is not None:
                self.refused[(r.version_id, r.revision)] = r
        # only the channel's current revision can matter from now on
        self.refused = {k: v for k, v in self.refused.items() if k[1] >= key[1]}
        return key in self.refused

    def run(self) -> None:
        """Loop until stop(): look, report, sleep until a wake-up (or the interval)."""
        backoff = self.interval
        while self.stopped_by is None:
            self._drain()
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
            log.debug("fleet: %s: look %d done", self.name, self.looks)  # tests wait on it
            if out is not None:
                self.on_outcome(out)
                continue  # the channel may have moved meanwhile
            if self.stopped_by is None:
                select.select([self._wake_r], [], [], backoff)

    def wake(self) -> None:
        """Look again now. Takes no lock, so a signal handler may call it."""
        with suppress(OSError):  # full (a wake-up is pending anyway) or closed (stopped)
            self._wake_w.send(b"w")

    def _drain(self) -> None:
        with suppress(OSError):  # empty
            while self._wake_r.recv(4096):
                pass

    def request_stop(self, signum: int = 0) -> None:
        """End run() after the look in progress (signal-safe: a flag and a wake-up)."""
        if self.stopped_by is None:
            self.stopped_by = signum
        self.wake()

    def stop(self) -> None:
        """End run() and the NOTIFY listener (not from a signal handler: it joins)."""
        self.request_stop()
        if self._listener is not None:
            self._listener.stop()

    def close(self) -> None:
        self.stop()
        self._wake_r.close()
        self._wake_w.close()

    @contextmanager
    def stop_on_signals(self, *signums: int) -> Iterator[None]:
        """While the block runs (in the main thread), the first SIGINT/SIGTERM (or
        `signums`) ends run() after the look in progress; a second one raises
        KeyboardInterrupt at once, as Python would have."""
        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.stopped_by is not None:
                raise KeyboardInterrupt
            self.request_stop(signum)
            # os.write, not logging: the handler may run inside a logging call
            os.write(2, f"{signal.Signals(signum).name}: stopping (a rollout in progress "
                        "finishes first; again to interrupt it)\n".encode())

        sigs = signums or (signal.SIGINT, signal.SIGTERM)
        before = {s: signal.signal(s, handler) for s in sigs}
        try:
            yield
        finally:
            for s, h in before.items():
                signal.signal(s, h)

    def start(self) -> threading.Thread:
        """run() in a daemon thread."""
        t = threading.Thread(target=self.run, name=f"modelvc-watch-{self.name}", daemon=True)
        t.start()
        return t
