"""`python tests/signal_at.py WHERE SIGNAL CLI-ARGS...`: the modelvc CLI, sending itself
SIGNAL (SIGINT or SIGTERM) once, while its command runs, at WHERE:
- `ping:N`: inside SQLAlchemy's pool pre-ping of the Nth checkout that pings, right after
  the ping's query went out (psycopg's send; SQLite's execute), where a Ctrl-C used to
  come out as a database error ("can't change 'autocommit' now");
- `call:N`: at the Nth Python function call of the command (any point);
- `return:NAME:N`: when a function named NAME returns for the Nth time, in any thread
  (a transfer's `mark`, called as a stream's bytes go: mid-transfer).
$SIGNAL_AT_PGID names a process group to send the signal to instead (a server going
away under the command: SIGKILL), the command then running on.
Fault injection (the moment only); the rest is the real CLI on a real database. Prints
"signal-at: sent" to stderr when it fired."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from modelvc.cli import main

where, sig = sys.argv[1], signal.Signals[sys.argv[2]]
kind, _, n = where.partition(":")
func, _, n = n.rpartition(":")
count = {"seen": 0, "target": int(n)}
lock = threading.Lock()
PGID = int(os.environ.get("SIGNAL_AT_PGID", "0"))


def _fire() -> None:
    sys.setprofile(None)
    threading.setprofile(None)  # type: ignore[arg-type]
    os.write(2, b"signal-at: sent\n")
    if PGID:
        os.killpg(PGID, sig)
    else:
        os.kill(os.getpid(), sig)  # handled at the caller's next bytecode (main thread)


def _hook(frame: FrameType, event: str, arg: Any) -> None:
    if kind == "return":
        if event == "return" and frame.f_code.co_name == func:
            with lock:
                count["seen"] += 1
                if count["seen"] != count["target"]:
                    return
            _fire()
        return
    if kind == "call":
        if event == "call":
            count["seen"] += 1
            if count["seen"] == count["target"]:
                _fire()
        return
    # ping: psycopg's send returning inside do_ping, or SQLite's execute inside do_ping
    if (event == "return" and frame.f_code.co_name == "_execute_send") or \
            (event == "c_return" and frame.f_code.co_name == "do_ping"):
        f: FrameType | None = frame
        while f is not None and f.f_code.co_name != "do_ping":
            f = f.f_back
        if f is not None:
            count["seen"] += 1
            if count["seen"] == count["target"]:
                _fire()


_invoke = main.Group.invoke


def _profiled(self: main.Group, ctx: Any) -> Any:
    sys.setprofile(_hook)  # only the command: start-up stays fast
    if kind == "return":
        threading.setprofile(_hook)  # the transfer's worker threads
    try:
        return _invoke(self, ctx)
    finally:
        sys.setprofile(None)


main.Group.invoke = _profiled  # type: ignore[method-assign]

if __name__ == "__main__":
    main.main(sys.argv[3:])
