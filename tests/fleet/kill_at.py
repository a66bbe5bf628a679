"""`python tests/fleet/kill_at.py FUNCTION N CLI-ARGS...`: the modelvc CLI, killing
itself with SIGKILL (kill -9: no handler, no cleanup; or the signal named by
$KILL_AT_SIGNAL) when a Python function named FUNCTION returns for the Nth time while its
command runs (e.g. `commit_flip` 1: right after the commit point's transaction). Fault
injection (the moment only); the rest is the real CLI on a real database and real
gateways. Writes "kill-at: FUNCTION" to stderr first."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from modelvc.cli import main

name, nth = sys.argv[1], int(sys.argv[2])
SIG = signal.Signals[os.environ.get("KILL_AT_SIGNAL", "SIGKILL")]
seen = [0]


def _hook(frame: FrameType, event: str, _arg: Any) -> None:
    if event == "return" and frame.f_code.co_name == name:
        seen[0] += 1
        if seen[0] == nth:
            sys.setprofile(None)
            os.write(2, f"kill-at: {name}\n".encode())
            os.kill(os.getpid(), SIG)  # a handled one: at the caller's next bytecode


_invoke = main.Group.invoke


def _profiled(self: main.Group, ctx: Any) -> Any:
    sys.setprofile(_hook)
    try:
        return _invoke(self, ctx)
    finally:
        sys.setprofile(None)


main.Group.invoke = _profiled  # type: ignore[method-assign]

if __name__ == "__main__":
    main.main(sys.argv[3:])
