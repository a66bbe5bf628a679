"""child.py's processes forked from one process that has already imported modelvc.

A `python child.py` start costs ~0.35 s of CPU in the interpreter and imports before it
does anything, and the kill -9 campaign and the races start ~80 of them. The zygote
(`python -m tests.faults.zygote FD`, one per pytest process, started on first use)
imports child.py's modules once and forks a child per request: each child is still a
process of its own (its own pid, files, locks and database connections, killed with a
real SIGKILL), only without the start-up. The zygote is single-threaded and opens no
registry, so a fork inherits nothing a child could share.

`spawn(argv, env)` returns a `Forked`, which answers what the fault tests ask of a
`subprocess.Popen`: pid, stdout/stderr pipes (text), send_signal, poll, wait,
communicate, returncode (negative for a signal, as Popen's). `spawn(..., code=...)` runs
a `python -c` script instead (tests/objects/test_repack_kill9.py); a `Zygote(preload)`
with `spawn(..., entry="module:function")` calls that function as a `python -m` of a
module whose `__main__` calls it would (tests/services/server.py's server processes,
from a zygote of their own that imported the server).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


class Forked:
    def __init__(self, zygote: Zygote, pid: int, stdout: IO[str] | None,
                 stderr: IO[str] | None, args: list[str]) -> None:
        self.zygote, self.pid, self.args = zygote, pid, args
        self.stdout: IO[str] | None = stdout
        self.stderr: IO[str] | None = stderr
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still this child's
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(9)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Both pipes to their end (the child's exit closes them), then its status."""
        err: list[str] = []
        reader = None
        if self.stderr is not None:
            stderr = self.stderr
            reader = threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)
            reader.start()
        out = self.stdout.read() if self.stdout is not None else ""
        if reader is not None:
            reader.join(timeout)
        self.wait(timeout)
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        return out, "".join(err)


class Zygote:
    """PRELOAD: the modules to import before any fork (child.py's by default)."""

    def __init__(self, preload: Sequence[str] = (), env: Mapping[str, str] | None = None
                 ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.zygote", str(theirs.fileno()), *preload],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", ""))
                if p)})
        theirs.close()
        self.sock = ours
        self.lock = threading.Lock()
        atexit.register(self.close)

    def _ask(self, req: dict[str, object], fds: Sequence[int] = ()) -> dict[str, object]:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(req).encode()], list(fds))
            reply = self.sock.recv(1 << 16)
        if not reply:
            raise RuntimeError(f"the zygote is gone (rc {self.proc.poll()})")
        out: dict[str, object] = json.loads(reply)
        if "error" in out:
            raise RuntimeError(f"zygote: {out['error']}")
        return out

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], code: str | None = None,
              *, entry: str | None = None, output: int | None = None,
              new_session: bool = False) -> Forked:
        """ARGV for child.py, for CODE (`python -c CODE ARGV`) or for ENTRY ("module:func",
        called with ARGV as sys.argv[1:]); stdout and stderr to pipes, or both to the
        file descriptor OUTPUT;
        NEW_SESSION: in a session (and process group) of its own, as Popen's
        start_new_session."""
        req = {"op": "spawn", "argv": list(argv), "env": dict(env), "cwd": os.getcwd(),
               "code": code, "entry": entry, "new_session": new_session}
        if output is not None:
            pid = self._ask(req, [output, output])["pid"]
            assert isinstance(pid, int)
            return Forked(self, pid, None, None, list(argv))
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            reply = self._ask(req, [out_w, err_w])
        finally:
            os.close(out_w)
            os.close(err_w)
        pid = reply["pid"]
        assert isinstance(pid, int)
        return Forked(self, pid, open(out_r), open(err_r), list(argv))

    def status(self, pid: int) -> int | None:
        code = self._ask({"op": "status", "pid": pid})["code"]
        assert code is None or isinstance(code, int)
        return code

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_zygote: Zygote | None = None


def stop() -> None:
    """Stop the zygote (if started): it reaps its children as they end, then exits."""
    global _zygote
    if _zygote is not None:
        _zygote.close()
        _zygote = None


def spawn(argv: Sequence[str], env: Mapping[str, str], code: str | None = None) -> Forked:
    """child.py ARGV in a forked process with environment ENV and this cwd; with CODE,
    that Python source instead of child.py, as `python -c CODE ARGV...` would run it."""
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
    return _zygote.spawn(argv, env, code)


# --- the zygote process ---

def _child(req: dict[str, object], fds: list[int]) -> None:
    rc: object = 1
    try:
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        env, argv, cwd = req["env"], req["argv"], req["cwd"]
        assert isinstance(env, dict) and isinstance(argv, list) and isinstance(cwd, str)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        if req.get("new_session"):
            os.setsid()
        code, entry = req.get("code"), req.get("entry")
        if isinstance(entry, str):
            module, func = entry.split(":")
            sys.argv = [module, *argv]
            rc = getattr(importlib.import_module(module), func)()
        elif isinstance(code, str):
            sys.argv = ["-c", *argv]
            exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
            rc = 0
        else:
            from tests.faults import child

            sys.argv = [child.__file__, *argv]
            rc = child.main(argv)
    except SystemExit as exc:  # as the interpreter reports it: a message is rc 1
        rc = exc.code
        if isinstance(rc, str):
            print(rc, file=sys.stderr)
            rc = 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        for f in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                f.flush()
        os._exit(rc if isinstance(rc, int) else 0 if rc is None else 1)


def serve(sock: socket.socket) -> None:
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        if not msg:  # the test process closed its end (or is gone): reap what is left,
            while True:  # so the children's CPU counts in this process's rusage
                try:
                    os.wait()
                except ChildProcessError:
                    return
        req = json.loads(msg)
        reply: dict[str, object]
        try:
            if req["op"] == "spawn":
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    _child(req, fds)
                for fd in fds:
                    os.close(fd)
                reply = {"pid": pid}
            elif req["op"] == "status":
                done, status = os.waitpid(req["pid"], os.WNOHANG)
                reply = {"code": os.waitstatus_to_exitcode(status) if done else None}
            else:
                reply = {"error": f"unknown op {req['op']!r}"}
        except OSError as exc:
            reply = {"error": repr(exc)}
        sock.send(json.dumps(reply).encode())


if __name__ == "__main__":
    # What the children import (by default child.py and what its verbs import on the
    # way), and the PostgreSQL driver for registries whose metadata lives there, before
    # any fork.
    for name in sys.argv[2:] or ["modelvc.transfer", "tests.faults.child"]:
        importlib.import_module(name)
    try:
        import psycopg  # noqa: F401
        import sqlalchemy.dialects.postgresql  # noqa: F401
    except ImportError:
        pass
    serve(socket.socket(fileno=int(sys.argv[1])))
