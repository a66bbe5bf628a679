"""A child process that commits a training run's staged checkpoints at the lowest CPU
priority (`Run.submit(folder=...)` on an embedded registry; modelvc.api.run).

Why a process, not the run's thread: a commit reads, hashes and encodes the whole
checkpoint (about 0.35 s of CPU for MiniLM's 91 MB) on several threads, which in the
training process share the GIL and the cores with training. The child runs SCHED_IDLE
and nice 19: training keeps its cores, commits use the time they leave idle, and no
lock is shared. While the loop waits for a commit (`max_pending` reached, `wait`,
`finish`) the child runs at normal priority, so a busy machine cannot starve it while
the loop is blocked. Linux lets a process leave SCHED_IDLE only as root or with an
RLIMIT_NICE allowing nice 0; for other users the child runs at nice 10 for good.

The child is modelvc.registry.commit_child. Protocol: one JSON line per staged entry
on the child's stdin ({"path": ...}), one JSON line back ({"id": version id} or
{"error": class name, "message", "hint"}). The child exits when told ({"quit": true}),
and dies with its parent (PR_SET_PDEATHSIG): what it had not committed stays staged,
for `modelvc staging recover`.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, Any

from .. import errors
from ..api import staging

if TYPE_CHECKING:
    from ..api.protocol import RegistryAPI
    from ..records import Version

def restorable() -> bool:
    """Whether a process of this user may raise its priority back once lowered: root,
    or an RLIMIT_NICE that allows nice 0 (Linux refuses leaving SCHED_IDLE otherwise)."""
    if os.geteuid() == 0:
        return True
    soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
    return bool(soft == resource.RLIM_INFINITY or soft >= 20)


# Where the priority cannot be raised back, the child runs at this nice value for good:
# low enough to leave training its cores, not so low that a busy machine starves the
# commits the loop may be waiting for (a nice-10 thread weighs ~1/10 of a nice-0 one).
NICE_FOR_GOOD = 10


# The child keeps the memory it frees (glibc: no mmap per large buffer, no trim back to
# the system): each commit reads its segments into pages already mapped instead of
# faulting in ~70 MB of fresh zeroed ones (a MiniLM checkpoint: half the page faults,
# ~0.015 s of system CPU and a pass of page zeroing less, beside training). Its RSS
# stays at its peak (~60 MB higher) until the run ends.
KEEP_FREED = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"


def set_priority(pid: int, *, low: bool) -> None:
    """Every thread of process PID at the lowest CPU priority (SCHED_IDLE and nice 19),
    or back at the normal one; where that cannot be undone (`restorable`), lowering
    sets NICE_FOR_GOOD and raising does nothing. Best effort: a refusal leaves it."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    undo = restorable()
    if not undo and not low:
        return
    for tid in tids:
        if undo:
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setscheduler(tid, os.SCHED_IDLE if low else os.SCHED_OTHER,
                                      os.sched_param(0))
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid,
                           (19 if undo else NICE_FOR_GOOD) if low else 0)


class ProcessCommitter:
    """The parent's side: `commit(staged)` sends one entry and waits for its version."""

    def __init__(self, reg: RegistryAPI) -> None:
        self.reg = reg
        self._lock = threading.Lock()  # one request at a time on the pipe
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "GLIBC_TUNABLES": ":".join(t for t in (os.environ.get("GLIBC_TUNABLES"),
                                                      KEEP_FREED) if t)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelvc.registry.commit_child", reg.location,
             str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._low = True

    def hurry(self, on: bool) -> None:
        """Normal priority while ON (the loop waits for a commit), else the lowest."""
        if self._low == on and self.proc.poll() is None:
            self._low = not on
            set_priority(self.proc.pid, low=not on)

    def commit(self, staged: staging.Staged) -> Version:
        with self._lock:
            stdin, stdout = self._pipes()
            try:
                stdin.write(json.dumps({"path": os.fspath(staged.path)}) + "\n")
                stdin.flush()
                line = stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
        if not line:
            raise errors.ModelvcError(
                f"the commit process {self.proc.pid} stopped (exit {self.proc.poll()}) "
                f"before committing {staged.path}",
                hint="its stderr says why; the checkpoint stays staged: `modelvc staging "
                     "recover` commits it")
        reply = json.loads(line)
        if "error" in reply:
            raise rebuild(reply)
        return self.reg.resolve(f"{staged.commit['model']}@{reply['id']}")

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def close(self) -> None:
        stdin, stdout = self._pipes()
        # Told, not only EOF: a process forked from the parent (a DataLoader worker)
        # holds a copy of the pipe's write end, and the EOF would wait for it.
        with contextlib.suppress(OSError):
            stdin.write(json.dumps({"quit": True}) + "\n")
            stdin.flush()
        with contextlib.suppress(OSError):
            stdin.close()
        self.proc.wait()
        stdout.close()


def rebuild(reply: dict[str, Any]) -> Exception:
    """The child's error as the same modelvc error class (ModelvcError if unknown)."""
    name = reply.get("error", "")
    cls = getattr(errors, name, None) or getattr(staging, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ModelvcError)):
        cls = errors.ModelvcError
        reply = {**reply, "message": f"{name}: {reply.get('message', '')}"}
    return cls(reply.get("message"), hint=reply.get("hint"))
