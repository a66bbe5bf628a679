"""`python tests/fleet/signal_in_ping.py CLI-ARGS...`: the modelvc CLI, sending itself
SIGINT once, at the point where a Ctrl-C used to vanish: inside `Watcher.run`, in
SQLAlchemy's pool pre-ping, right after psycopg sent the ping's query. A
KeyboardInterrupt raised there was replaced by the pre-ping's cleanup error and taken
for an unreachable database. Fault injection (the moment only); everything else is the
real CLI on a real PostgreSQL. Prints "signal-in-ping: sent" to stderr when it fired."""

from __future__ import annotations

import os
import runpy
import signal
import sys
from types import FrameType
from typing import Any

from modelvc.fleet import watch

fired = False


def _in_ping(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "do_ping":
            return True
        frame = frame.f_back
    return False


def _hook(frame: FrameType, event: str, _arg: Any) -> None:
    global fired
    if fired or event != "return" or frame.f_code.co_name != "_execute_send":
        return
    if _in_ping(frame):
        fired = True
        sys.setprofile(None)
        os.write(2, b"signal-in-ping: sent\n")
        os.kill(os.getpid(), signal.SIGINT)  # handled at the caller's next bytecode


_run = watch.Watcher.run


def _profiled_run(self: watch.Watcher) -> None:
    sys.setprofile(_hook)  # only the loop: startup stays fast
    try:
        _run(self)
    finally:
        sys.setprofile(None)


watch.Watcher.run = _profiled_run  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "modelvc"
    runpy.run_module("modelvc.cli.main", run_name="__main__")
