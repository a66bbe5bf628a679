"""`python tests/signal_at.py WHERE SIGNAL CLI-ARGS...`: the modelvc CLI, sending itself
SIGNAL (SIGINT or SIGTERM) once, while its command runs, at WHERE:
- `ping:N`: inside SQLAlchemy's pool pre-ping of the Nth checkout that pings, right after
  the ping's query went out (psycopg's send; SQLite's execute), where a Ctrl-C used to
  come out as a database error ("can't change 'autocommit' now");
- `call:N`: at the Nth Python function call of the command (any point);
- `count:0`: no signal; prints "signal-at: calls N", the command's function calls, at
  its end (so a test can place `call:` points as fractions of an uninterrupted run);
- `return:NAME:N`: when a function named NAME returns for the Nth time, in any thread
  (a transfer's `mark`, called as a stream's bytes go: mid-transfer).
$SIGNAL_AT_PGID names a process group to send the signal to instead (a server going
away under the command: SIGKILL), the command then running on.
$SIGNAL_AT_HELD names a receiver's upload sessions folder: at WHERE the thread waits
until a spool under it holds bytes, then sends. A chunk handed to the socket is not yet
held: the server appends a frame once all of it is read, and one still unread when the
connection closes is dropped (uvicorn discards a body's unread tail on a disconnect), so
an upload stopped right after its first chunk went may have nothing to resume.
Fault injection (the moment only); the rest is the real CLI on a real database. Prints
"signal-at: sent" to stderr when it fired."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from modelvc.cli import main

where, sig = sys.argv[1], signal.Signals[sys.argv[2]]
kind, _, n = where.partition(":")
func, _, n = n.rpartition(":")
count = {"seen": 0, "target": int(n)}
lock = threading.Lock()
PGID = int(os.environ.get("SIGNAL_AT_PGID", "0"))
HELD = os.environ.get("SIGNAL_AT_HELD")
HELD_WAIT = 300.0  # a generous bound: the wait ends as soon as the spool has bytes


def _held(folder: Path) -> bool:
    """A spool under FOLDER holds bytes (the receiver appended a chunk)."""
    for f in folder.rglob("*"):
        try:
            if f.is_file() and f.stat().st_size:
                return True
        except OSError:  # removed meanwhile
            continue
    return False


def _wait_held() -> None:
    """Hold this thread (the one sending the upload: no more of it goes meanwhile)
    until the receiver holds part of the upload."""
    assert HELD is not None
    deadline = time.monotonic() + HELD_WAIT
    while not _held(Path(HELD)):
        if time.monotonic() > deadline:
            os.write(2, f"signal-at: nothing held under {HELD}\n".encode())
            return
        time.sleep(0.01)  # polling the receiver's files: waits for the evidence


def _fire() -> None:
    sys.setprofile(None)
    threading.setprofile(None)  # type: ignore[arg-type]
    if HELD:
        _wait_held()
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
    if kind in ("call", "count"):
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
        if kind == "count":
            os.write(2, f"signal-at: calls {count['seen']}\n".encode())


main.Group.invoke = _profiled  # type: ignore[method-assign]

if __name__ == "__main__":
    main.main(sys.argv[3:])
