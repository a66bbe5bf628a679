"""A version's first checkout in a helper process, off the gateway's GIL.

A checkout is hundreds of Python steps (SQLite reads, manifest, decode pool, file
writes). In a loading thread of the gateway each step that blocks hands the GIL back
and forth with the event loop, and the loop, woken from the loading CPU each time,
waits for it: a first load of a version cost the loop 12-32 such waits, a re-load of a
kept checkout 2-9 (docs/benchmarks.md, serving, sessions 9-10). Here a loading thread
only writes one request line to the helper and blocks reading the answer: one hand-off
each way, whatever the checkout does. For an ONNX-only version the helper also writes
its optimized graph where the gateway keeps graphs, so the gateway then builds the
session from it as for a re-load. The helper (`python -m modelvc.serving.checkouts
REGISTRY [CPUS] [TRASH] [idle]`) opens the same local registry through the Registry API and
works one request at a time, on the loading CPUs when given and at idle priority
(SCHED_IDLE: it takes no CPU that anything else wants, such as the requests' clients on
the loading CPU; at normal priority it did not shorten the swap tail, session 10; at
idle priority the p99 during swaps to new versions fell from ~2.4x to ~1.4x that of
the same load between swaps over REST, session 17); before each it empties TRASH (kept
checkouts the gateway pruned); it exits when its stdin closes (the gateway stopped,
however it stopped). A helper starved of CPU (busy loading CPUs) is killed after about
STARVED_S and the version loaded in process. On by default with `load_cpus`
(ServeConfig.checkout_helper), off otherwise: it costs a second process.

Any failure of the helper (it cannot start, dies, or reports an error) is not a load
failure: the caller checks the version out itself, as before, so what a user sees
(errors, trust refusals) is the same either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("modelvc.serving")
NAME = "modelvc-chkout"  # the helper's process name (ps, top, bench/serving.py)
STOP_WAIT_S = 10.0
# The helper runs at idle CPU priority (SCHED_IDLE; tests may turn it off).
IDLE_PRIORITY = True
# Starved: over a STARVED_S look, its threads waited for a CPU at least half of it and
# ran under a tenth of it (at idle priority beside busy normal work it gets ~0.3 % of a
# CPU). It is then killed and the version loaded in process, as after any failure.
STARVED_S = 1.0
STARVED_BACKOFF_S = 30.0  # ... and for this long after, loads check out in process


class HelperFailed(Exception):
    """The helper did not check the version out; check it out in process."""


class HelperGone(HelperFailed):
    """The helper died or was killed (starved) during the request: what it was writing
    may be left half done (a refusal, by contrast, cleans up after itself)."""


def _cpu_ns(pid: int) -> tuple[int, int] | None:
    """Nanoseconds the process's threads have run and waited runnable for a CPU (Linux
    schedstat), or None where the kernel does not tell."""
    ran = waited = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/schedstat") as f:
                fields = f.read().split()
            ran, waited = ran + int(fields[0]), waited + int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return ran, waited


class CheckoutHelper:
    """One helper process for a gateway's first checkouts, started at the first use,
    restarted after it dies (MAX_STARTS in all, then checkouts stay in process)."""

    MAX_STARTS = 3

    def __init__(self, location: str, cpus: frozenset[int] | None = None,
                 trash: Path | None = None) -> None:
        """`trash`: a folder whose entries the helper removes before each request."""
        self.location, self.cpus, self.trash = location, cpus, trash
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one checkout at a time through the pipe
        self.starts = 0
        self.closed = False
        self._starved_until = 0.0  # time.monotonic() until which the helper is not asked

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        if self.closed or self.starts >= self.MAX_STARTS:
            raise HelperFailed("no checkout helper (stopped, or restarted too often)")
        self.starts += 1
        cpus = ",".join(str(c) for c in sorted(self.cpus)) if self.cpus else ""
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "modelvc.serving.checkouts", self.location, cpus,
                 str(self.trash or ""), "idle" if IDLE_PRIORITY else ""],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        except OSError as exc:
            raise HelperFailed(f"the checkout helper did not start: {exc}") from exc
        return self._proc

    def warm(self) -> None:
        """Start the helper now (it imports the registry meanwhile), if not started."""
        with self._lock:
            if self._proc is None:
                with contextlib.suppress(HelperFailed):
                    self._start()

    def checkout(self, ref: str, dest: Path) -> list[str]:
        """Check `ref` out into `dest` (which must not exist) in the helper; the files
        written (paths relative to dest). HelperFailed: do it yourself."""
        return list(self._ask({"op": "checkout", "ref": ref, "dest": str(dest)})["files"])

    def prepare(self, ref: str, kept: Path, graph: Path, threads: int) -> dict[str, Any]:
        """Make an ONNX version's first load as cheap as a re-load: in the helper, check
        `ref` out into `kept` (the pool's kept checkout of it) and write its optimized
        graph to `graph` (the pool's kept graph); `model`: the ONNX file, relative to
        `kept`. HelperFailed: nothing kept (not an ONNX-only version, too large, or the
        helper failed); load it the usual way."""
        return self._ask({"op": "prepare", "ref": ref, "dest": str(kept),
                          "graph": str(graph), "threads": threads})

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(req).encode() + b"\n"
        with self._lock:
            if time.monotonic() < self._starved_until:
                raise HelperFailed("the checkout helper was starved of CPU moments ago")
            proc = self._proc if self._proc is not None and self._proc.poll() is None \
                else self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                answer = self._answer(proc)
            except (OSError, ValueError) as exc:
                answer = b""
                log.warning("checkout helper: %s", exc)
            if answer is None:  # starved: the loading CPUs are kept busy
                proc.kill()
                self._reap(proc)
                self._starved_until = time.monotonic() + STARVED_BACKOFF_S
                raise HelperGone("the checkout helper got no CPU time (the loading CPUs "
                                 "are busy with other work)")
            if not answer:  # it died: the next request starts another
                self._reap(proc)
                raise HelperGone("the checkout helper exited")
        doc: dict[str, Any] = json.loads(answer)
        if not doc.get("ok"):
            raise HelperFailed(str(doc.get("error")))
        return doc

    @staticmethod
    def _answer(proc: subprocess.Popen[bytes]) -> bytes | None:
        """The helper's answer line (b"" if it died), or None if it is starved."""
        assert proc.stdout is not None
        before = _cpu_ns(proc.pid)
        while not select.select([proc.stdout], [], [], STARVED_S)[0]:
            now = _cpu_ns(proc.pid)
            if before is not None and now is not None and \
                    now[1] - before[1] >= STARVED_S * 0.5e9 and \
                    now[0] - before[0] < STARVED_S * 0.1e9:
                return None
            before = now
        return proc.stdout.readline()  # (one line per request: nothing is buffered ahead)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._proc is proc:
            self._proc = None

    def close(self) -> None:
        """Stop the helper (its stdin closes: it ends after the request under way). A
        request still under way after STOP_WAIT_S is not waited for: the helper is
        killed, and the loading thread waiting on it loads the old way (or stops, as
        the pool is closing)."""
        self.closed = True
        if not self._lock.acquire(timeout=STOP_WAIT_S):
            proc = self._proc
            if proc is not None:
                with contextlib.suppress(OSError):
                    proc.kill()
            return
        try:
            if self._proc is not None:
                self._reap(self._proc)
        finally:
            self._lock.release()


def _serve(location: str, cpus: str, trash: str, idle: bool, stdin: IO[bytes],
           stdout: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(NAME)
    if cpus:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    # At idle priority (Linux): its work runs on CPU time nothing else wants, so a first
    # load never takes a CPU from the requests' clients or a busy neighbour; it holds
    # none of the gateway's GIL, so being preempted costs the gateway nothing but a
    # later switch (docs/benchmarks.md, serving, session 17).
    if idle:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    from ..registry import Registry

    reg = Registry.open_local(location)
    try:
        for line in stdin:
            doc: dict[str, Any]
            if trash:  # what the gateway pruned since the last request
                with contextlib.suppress(OSError):
                    for entry in os.scandir(trash):
                        shutil.rmtree(entry.path, ignore_errors=True)
            try:
                req = json.loads(line)
                if req.get("op") == "prepare":
                    doc = _prepare(reg, req)
                else:
                    dest = Path(req["dest"])
                    reg.checkout(req["ref"], dest)
                    doc = {"ok": True, "files": _files(dest)}
            except Exception as exc:  # told to the gateway, which checks out itself
                doc = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            stdout.write(json.dumps(doc).encode() + b"\n")
            stdout.flush()
    finally:
        reg.close()



def _files(dest: Path) -> list[str]:
    return [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()]


def _prepare(reg: Any, req: dict[str, Any]) -> dict[str, Any]:
    """The helper's side of CheckoutHelper.prepare."""
    import uuid

    from .runtimes.onnx import OnnxRuntime

    dest, graph = Path(req["dest"]), Path(req["graph"])
    tmp = dest.with_name(f"{dest.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        reg.checkout(req["ref"], tmp)
        model = model_file(tmp, _files(tmp))
        if model is None:
            return {"ok": False, "error": "not an ONNX-only version"}
        rt = OnnxRuntime(model, threads=req["threads"], optimized=graph)
        rt.close()
        if not graph.exists():
            return {"ok": False, "error": "its optimized graph is not kept (too large)"}
        rel = str(model.relative_to(tmp))
        tmp.rename(dest)
        return {"ok": True, "model": rel}
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def model_file(folder: Path, files: list[str]) -> Path | None:
    """The ONNX file load_runtime would pick in a checkout holding `files`, or None if
    it would look further (a predictor.py first, or no .onnx file)."""
    if "predictor.py" in files:
        return None
    onnx = sorted(folder / f for f in files if f.endswith(".onnx"))
    preferred = [p for p in onnx if p.name == "model.onnx"]
    found = preferred or onnx
    return found[0] if found else None


if __name__ == "__main__":
    args = [*sys.argv[1:5], "", "", ""]
    _serve(args[0], args[1], args[2], args[3] == "idle", sys.stdin.buffer, sys.stdout.buffer)
