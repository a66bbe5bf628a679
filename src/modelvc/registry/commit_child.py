"""The child process of modelvc.registry.committer: commits the staged checkpoints
named on its stdin, one JSON line back for each, at the lowest CPU priority."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any

from ..api import staging
from .committer import set_priority
from .core import Registry

PR_SET_PDEATHSIG = 1


def serve(location: str, lines: IO[str], out: IO[str]) -> None:
    """The child's loop: commit each staged entry named on LINES, answer on OUT."""
    reg = Registry.open_local(location)
    try:
        for line in lines:
            msg = json.loads(line)
            if msg.get("quit"):
                break
            try:
                v = staging.commit_staged(reg, staging.load(Path(msg["path"])))
                reply: dict[str, Any] = {"id": v.id}
            except Exception as exc:  # told to the parent, which raises it
                reply = {"error": type(exc).__name__,
                         "message": getattr(exc, "message", str(exc)),
                         "hint": getattr(exc, "hint", None)}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        reg.close()


def main() -> None:
    location, parent = sys.argv[1], int(sys.argv[2])
    # Die with the parent: recover must not race a commit still under way.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        sys.exit(1)
    set_priority(os.getpid(), low=True)  # before any pool thread: they inherit it
    out = os.fdopen(os.dup(1), "w")  # the replies; anything printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(location, sys.stdin, out)


if __name__ == "__main__":
    main()
