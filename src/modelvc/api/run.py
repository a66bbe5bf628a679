"""`with reg.run(model=..., branch=...) as run: run.commit(state_dict, step=..., metrics=...)`:
a training run's checkpoints as versions on a branch, on any RegistryAPI (embedded or
over a server), through `commit_files`: no file is written, nothing is pickled (the
state dict is stored as a safetensors file).

Each version records the run's params, the step's metrics and, in its lineage, the run
(`{"run": {"id", "step"}}`) next to the captured code commit and data fingerprints
(`data=` paths). On a clean exit the version with the best value of `best` (a metric;
`mode` min or max) is tagged `best_tag` (default `<branch>-best`).

`run.submit(...)` is `commit` on the run's background thread: the loop waits only for
the tensors to be copied (training may change them right after), and the encode runs
while training goes on. One checkpoint is in flight at a time (a submit first waits for
the one before), so memory holds at most two snapshots and versions stay in step order.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..names import check_ref_name
from .types import Version

if TYPE_CHECKING:
    from .protocol import RegistryAPI

WEIGHTS = "model.safetensors"


class Run:
    """One training run's commits on MODEL@BRANCH (see the module docstring)."""

    def __init__(self, reg: RegistryAPI, *, model: str, branch: str,
                 params: Mapping[str, Any] | None = None, data: Sequence[str | Path] = (),
                 parent: str | None = None, best: str | None = None, mode: str = "min",
                 best_tag: str | None = None, run_id: str | None = None,
                 files: Mapping[str, bytes] | None = None) -> None:
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
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future[Version] | None = None

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
        if folder is not None:
            v = self.reg.commit(Path(folder), **kwargs)
        else:
            v = self.reg.commit_files({**self.files, WEIGHTS: state or {}}, **kwargs)
        return self._done(v, found)

    def submit(self, state: Mapping[str, Any] | None = None, *, step: int,
               metrics: Mapping[str, Any] | None = None, message: str = "",
               files: Mapping[str, bytes] | None = None) -> Future[Version]:
        """`commit` of STATE on the run's background thread (see the module docstring):
        returns once the tensors are copied; the future gives the version. FILES
        (path -> bytes, e.g. a checkpoint folder read into memory) go with it, or
        instead of it."""
        from ..formats.memory import snapshot

        if state is None and not files:
            raise UsageError("give a state dict or files to submit",
                             hint="run.submit(model.state_dict(), step=...)")
        self.wait()  # one in flight: bounded memory, versions in order
        body: dict[str, Any] = {**self.files, **(files or {})}
        if state is not None:
            body[WEIGHTS] = snapshot(state)
        found, kwargs = self._kwargs(step, metrics, message)
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"modelvc-run-{self.id}")
        self._pending = self._worker.submit(
            lambda: self._done(self.reg.commit_files(body, **kwargs), found))
        return self._pending

    def wait(self) -> None:
        """Wait for the submitted checkpoint, if one is in flight (its error raises)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _kwargs(self, step: int, metrics: Mapping[str, Any] | None, message: str
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        found = {k: v for k, v in (metrics or {}).items() if number(v) is not None}
        first = not self.versions and self._pending is None
        return found, {
            "model": self.model, "branch": self.branch, "params": self.params,
            "metrics": {**found, "step": step}, "data": self.data,
            "lineage": {"run": {"id": self.id, "step": step}},
            "message": message or f"{self.branch} step {step}",
            "parent": self.parent if first and self.parent else None}

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
            self._worker.shutdown(wait=True)
            self._worker = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.finish()
            elif self._pending is not None:  # keep what was submitted; the error wins
                self._pending.exception()
        finally:
            self.close()


def number(x: Any) -> float | None:
    """X as a finite float, None for anything else (bools, NaN, strings)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)
