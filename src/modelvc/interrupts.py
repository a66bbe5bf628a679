"""Ctrl-C and SIGTERM for one-shot commands: delivered between database transactions,
never inside one, and reported as an interruption.

Python raises KeyboardInterrupt at whatever bytecode runs when SIGINT lands. Inside
SQLAlchemy's pool pre-ping (psycopg has sent the ping and waits for its answer) the
interrupt left the connection mid-query, and the pool's cleanup error ("can't change
'autocommit' now") replaced it: the command reported a database failure. `handling()`
(the CLI's entry) installs a handler that only records the signal while the main thread
is inside `deferred()` (every metadata transaction, meta/engine.py) and raises
`Interrupted` when the transaction ends, or at once outside one. A second signal raises
at once (the user insists). `received()` tells the CLI's error handler that whatever
came out of the command came out of an interruption.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "deferred", "handled", "handling", "hint", "received",
           "set_hint"]

_state = {"signum": 0, "pending": 0, "depth": 0}
_hint: list[str] = []
_resumable: list[bool] = []


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended the command (a KeyboardInterrupt, so code that cleans up
    on Ctrl-C does so for SIGTERM too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def received() -> int:
    """The signal that interrupted this process (0: none)."""
    return _state["signum"]


def handled() -> None:
    """The signal was the command's normal end (a server's Ctrl-C stop, after its clean
    shutdown): not an interruption; the command's own exit code stands."""
    _state["signum"] = 0


def set_hint(text: str, *, resumable: bool = False) -> None:
    """What the user does after an interruption of the running command (its last say);
    RESUMABLE: running it again resumes it (a transfer: errors.RESUME_HINT)."""
    _hint[:] = [text]
    _resumable[:] = [resumable]


def hint() -> str | None:
    return _hint[0] if _hint else None


def resumable() -> bool:
    return bool(_resumable and _resumable[0])


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, _frame: FrameType | None) -> None:
    again = _state["signum"] != 0
    _state["signum"] = _state["signum"] or signum
    if _state["depth"] and not again:
        _state["pending"] = signum  # raised when the transaction ends
        return
    raise Interrupted(_state["signum"])


@contextmanager
def deferred() -> Iterator[None]:
    """A signal landing in the block (main thread, handler installed) is raised when the
    block ends: a database transaction is never cut between its statements' send and
    its answer."""
    if not _main():
        yield
        return
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if not _state["depth"] and _state["pending"]:
            signum, _state["pending"] = _state["pending"], 0
            raise Interrupted(signum)


@contextmanager
def handling() -> Iterator[None]:
    """SIGINT and SIGTERM interrupt the block as `Interrupted` (main thread only; a
    caller that installed its own handlers keeps them). A SIGINT ignored from the start
    (a command started with `&` from a script, or under nohup) stays ignored, and
    SIGTERM is still handled: a background push stopped by `kill` exits 143 cleanly."""
    if not _main():
        yield
        return
    sigs = [s for s, default in ((signal.SIGINT, signal.default_int_handler),
                                 (signal.SIGTERM, signal.SIG_DFL))
            if signal.getsignal(s) is default]
    if signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_IGN) \
            or not sigs:
        yield
        return
    before = {s: signal.signal(s, _handler) for s in sigs}
    _state.update(signum=0, pending=0, depth=0)
    _hint.clear()
    _resumable.clear()
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
