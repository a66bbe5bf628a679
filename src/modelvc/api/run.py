"""`with reg.run(model=..., branch=...) as run: run.commit(state_dict, step=..., metrics=...)`:
a training run's checkpoints as versions on a branch, on any RegistryAPI (embedded or
over a server), through `commit_files`: no file is written, nothing is pickled (the
state dict is stored as a safetensors file).

Each version records the run's params, the step's metrics and, in its lineage, the run
(`{"run": {"id", "step"}}`) next to the captured code commit and data fingerprints
(`data=` paths). On a clean exit the version with the best value of `best` (a metric;
`mode` min or max) is tagged `best_tag` (default `<branch>-best`). The first checkpoint's
parent is `parent` (the base being fine-tuned), else the branch's head (a run resumed
on its branch), else none: a run on a new branch trains from scratch unless told.

`run.submit(...)` is `commit` on the run's background thread, in submission order (so
versions stay in step order). For a state dict the loop waits only for the tensors to be
copied (training may change them right after) and the encode runs while training goes
on; one state dict is in flight at a time (memory holds at most two snapshots). For a
FOLDER a framework saved, the loop waits only for the folder to be staged (hard links,
modelvc.api.staging): nothing is read on the loop, up to `max_pending` folders wait
for their commit, and a crash leaves them staged, to be committed by
`staging.recover`. On an embedded registry the staged folders are committed by a
child process at the lowest CPU priority (modelvc.registry.committer; `isolate=False`:
on the run's thread): training keeps its cores and the GIL. A future gives a version
only once it is recorded (durable). The first error of a background commit is raised
by the next submit, commit, `wait` or `finish` (and on leaving the `with` block); the
checkpoints staged after it are not committed (the branch keeps step order) and stay
staged.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import NotFound, UsageError
from ..names import check_ref_name
from ..records import Version

if TYPE_CHECKING:
    from .protocol import RegistryAPI
    from .staging import Staged

WEIGHTS = "model.safetensors"


class StagedCommitter(Protocol):
    """Commits staged checkpoints elsewhere (registry/committer.py: a child process)."""

    def commit(self, staged: Staged) -> Version: ...

    def hurry(self, on: bool) -> None:
        """Full priority while ON: the loop waits for a commit."""

    def close(self) -> None: ...


class Run:
    """One training run's commits on MODEL@BRANCH (see the module docstring)."""

    def __init__(self, reg: RegistryAPI, *, model: str, branch: str,
                 params: Mapping[str, Any] | None = None, data: Sequence[str | Path] = (),
                 parent: str | None = None, best: str | None = None, mode: str = "min",
                 best_tag: str | None = None, run_id: str | None = None,
                 files: Mapping[str, bytes] | None = None, staging: str | Path | None = None,
                 max_pending: int = 2,
                 committer: Callable[[], StagedCommitter] | None = None) -> None:
        if mode not in ("min", "max"):
            raise UsageError(f"mode {mode!r} is not min or max", hint="use min or max")
        self.reg, self.model, self.branch = reg, model, check_ref_name(branch, "branch name")
        self.params = dict(params or {})
        self.data = list(data)
        self.parent = parent  # the first commit's parent (a base model), if any
        self.best, self.mode = best, mode
        self.best_tag = best_tag or f"{branch}-best"
        self.id = run_id or uuid.uuid4().hex[:12]
        self.files = dict(files or {})  # config.json and the like, committed each time
        self.versions: list[Version] = []
        self.best_version: Version | None = None
        self._best_value: float | None = None
        self._lock = threading.Lock()
        self.staging = Path(staging) if staging is not None else None  # else per folder
        self.max_pending = max(1, max_pending)
        self._worker: ThreadPoolExecutor | None = None
        self._inflight: deque[Future[Version]] = deque()
        self._failed: BaseException | None = None  # the first background commit's error
        self._count = 0  # commits started (the first one takes `parent`)
        self._warned: set[Path] = set()
        self._make_committer = committer  # None: staged folders commit on the run's thread
        self._committer: StagedCommitter | None = None
        self._hurrying = False  # the loop waits for a commit

    def commit(self, state: Mapping[str, Any] | None = None, *, step: int,
               metrics: Mapping[str, Any] | None = None, message: str = "",
               folder: str | Path | None = None) -> Version:
        """Commit STATE (a state dict) or a FOLDER the framework saved (a checkpoint
        folder) as the next version of the branch."""
        if (state is None) == (folder is None):
            raise UsageError("give a state dict or a folder to commit, not both",
                             hint="run.commit(model.state_dict(), step=...)")
        self.wait()
        found, kwargs = self._kwargs(step, metrics, message)
        self._count += 1
        if folder is not None:
            v = self.reg.commit(Path(folder), **kwargs)
        else:
            v = self.reg.commit_files({**self.files, WEIGHTS: state or {}}, **kwargs)
        return self._done(v, found)

    def submit(self, state: Mapping[str, Any] | None = None, *, step: int,
               metrics: Mapping[str, Any] | None = None, message: str = "",
               files: Mapping[str, bytes] | None = None,
               folder: str | Path | None = None) -> Future[Version]:
        """`commit` on the run's background thread (see the module docstring): returns
        once STATE's tensors are copied, or FOLDER is staged; the future gives the
        version. FILES (path -> bytes) go with STATE, or instead of it."""
        from ..formats.memory import snapshot

        if folder is not None:
            if state is not None or files:
                raise UsageError("give a folder, or a state dict and files, to submit",
                                 hint="run.submit(folder=PATH, step=...)")
            return self._submit_folder(Path(folder), step, metrics, message)
        if state is None and not files:
            raise UsageError("give a state dict or files to submit",
                             hint="run.submit(model.state_dict(), step=...)")
        self.wait()  # one state dict in flight: bounded memory
        body: dict[str, Any] = {**self.files, **(files or {})}
        if state is not None:
            body[WEIGHTS] = snapshot(state)
        found, kwargs = self._kwargs(step, metrics, message)
        return self._enqueue(lambda: self._done(self.reg.commit_files(body, **kwargs), found))

    def _submit_folder(self, folder: Path, step: int, metrics: Mapping[str, Any] | None,
                       message: str) -> Future[Version]:
        from . import staging

        self._raise_failed()
        while len(self._inflight) >= self.max_pending:  # bounded disk: old links held
            self._await(self._inflight[0])
            self._reap()
        self._raise_failed()
        root = self.staging or staging.root_for(self.reg, folder)
        if root not in self._warned:  # once per folder: what earlier runs left behind
            self._warned.add(root)
            note = staging.left_behind(root)
            if note:
                warnings.warn(note, stacklevel=3)
        found, kwargs = self._kwargs(step, metrics, message)
        kwargs["cwd"] = os.getcwd()  # lineage's git commit, also when recovered elsewhere
        kwargs["data"] = [os.fspath(d) for d in kwargs["data"]]
        # The pid keeps a run_id reused after a crash clear of what that crash left.
        staged = staging.stage(folder, root, f"{self.id}-{self._count:06d}-{os.getpid()}",
                               kwargs, self.reg.location)

        def job() -> Version:
            if self._failed is not None:  # keep step order: stays staged for recover
                raise UsageError(f"step {step} was not committed: an earlier checkpoint's "
                                 f"commit failed ({self._failed}); it stays staged in "
                                 f"{staged.path}",
                                 hint=f"modelvc.api.staging.recover(reg, {os.fspath(root)!r})")
            try:
                v = self._commit_staged(staged)
            except Exception as exc:
                exc.add_note(f"step {step} stays staged in {staged.path}: commit it with "
                             f"modelvc.api.staging.recover(reg, {os.fspath(root)!r})")
                raise
            return self._done(v, found)

        return self._enqueue(job)

    def _commit_staged(self, staged: Staged) -> Version:
        """On the run's thread: the child process is started by the first one (so it
        dies with this thread, which outlives it: `close`)."""
        from . import staging

        if self._make_committer is None:
            return staging.commit_staged(self.reg, staged)
        if self._committer is None:
            self._committer = self._make_committer()
            if self._hurrying:
                self._committer.hurry(True)
        return self._committer.commit(staged)

    def _await(self, fut: Future[Version]) -> None:
        """Wait for FUT with the committer at full priority meanwhile."""
        if self._make_committer is None or fut.done():
            fut.exception()
            return
        self._hurrying = True
        if self._committer is not None:
            self._committer.hurry(True)
        try:
            fut.exception()
        finally:
            self._hurrying = False
            if self._committer is not None:
                self._committer.hurry(False)

    def _enqueue(self, job: Callable[[], Version]) -> Future[Version]:
        self._count += 1
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"modelvc-run-{self.id}")
        fut = self._worker.submit(self._guard, job)
        self._inflight.append(fut)
        return fut

    def _guard(self, job: Callable[[], Version]) -> Version:
        try:
            return job()
        except BaseException as exc:
            with self._lock:
                if self._failed is None:
                    self._failed = exc
            raise

    def _reap(self) -> None:
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()

    def _raise_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def wait(self) -> None:
        """Wait for every submitted checkpoint; the first background error raises."""
        while self._inflight:
            self._await(self._inflight.popleft())
        self._raise_failed()

    def _kwargs(self, step: int, metrics: Mapping[str, Any] | None, message: str
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        found = {k: v for k, v in (metrics or {}).items() if number(v) is not None}
        first = self._count == 0
        return found, {
            "model": self.model, "branch": self.branch, "params": self.params,
            "metrics": {**found, "step": step}, "data": self.data,
            "lineage": {"run": {"id": self.id, "step": step}},
            "message": message or f"{self.branch} step {step}",
            "parent": self.parent if first and self.parent else None,
            **({"root": True} if first and not self.parent and self._new_branch() else {})}

    def _new_branch(self) -> bool:
        """Whether the run's branch does not exist yet. Its first checkpoint is then a
        root (trained from scratch) unless `parent` names a base: a bare commit to a new
        branch starts at the main head instead, but a run's weights are related to
        main's only when the run says so."""
        try:
            return self.branch not in {r.name for r in self.reg.refs(self.model,
                                                                     kind="branch")}
        except NotFound:  # the model's first version
            return True

    def _done(self, v: Version, found: Mapping[str, Any]) -> Version:
        with self._lock:
            self.versions.append(v)
            value = number(found.get(self.best)) if self.best else None
            if value is not None and (self._best_value is None or (
                    value < self._best_value if self.mode == "min"
                    else value > self._best_value)):
                self._best_value, self.best_version = value, v
        return v

    def finish(self) -> Version | None:
        """Wait for a submitted checkpoint, then tag the best version (None if no
        commit had the metric)."""
        self.wait()
        if self.best_version is None:
            return None
        self.reg.tag(f"{self.model}@{self.best_version.id}", self.best_tag)
        return self.best_version

    def close(self) -> None:
        if self._worker is not None:
            if self._make_committer is not None:  # ended on the thread that started it
                self._worker.submit(self._close_committer)
            self._worker.shutdown(wait=True)
            self._worker = None

    def _close_committer(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.finish()
            else:  # keep what was submitted; the loop's error wins, theirs is told
                while self._inflight:
                    self._await(self._inflight.popleft())
                if self._failed is not None:
                    warnings.warn(f"a background commit of run {self.id} failed too: "
                                  f"{self._failed}", stacklevel=2)
        finally:
            self.close()


def number(x: Any) -> float | None:
    """X as a finite float, None for anything else (bools, NaN, strings)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)
