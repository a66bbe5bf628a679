"""`ModelvcCallback`: the Hugging Face Trainer's checkpoints as versions.

Every checkpoint the Trainer saves (`save_steps`) is committed as the next version of
MODEL@BRANCH: params = the training arguments, metrics = the loss and eval metrics
logged at that step (and `step`, `epoch`), lineage = the run, the code commit and the
data fingerprints (`data=` paths). When training ends the best checkpoint (the
Trainer's `metric_for_best_model`, default `eval_loss`) is tagged `<branch>-best`.
`checkout_checkpoint(reg, ref, root)` gives a folder for `resume_from_checkpoint`.
By default (`background=True`) each checkpoint folder is staged when the Trainer has
saved it (hard links: nothing is read on the training loop) and committed while
training goes on (`Run.submit(folder=...)`: on an embedded registry by a child process
at the lowest CPU priority, else with `isolate=False` on the run's thread): the
Trainer may rotate the folder away meanwhile (`save_total_limit`); `by_step` is filled
as the commits finish (all of them when training ends, which waits for them and raises
the first error; a failed or interrupted one stays staged: `modelvc staging recover`).
With `background=False` each checkpoint is committed before training goes on.

The checkpoint folder is committed as the Trainer wrote it: weights in safetensors;
optimizer, scheduler and RNG states in the Trainer's own torch files, which modelvc
stores as opaque files and never unpickles (the Trainer loads them when resuming; the
format gate refuses them for promotion, where only weights belong).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..api import RegistryAPI, RunAPI, Version
from .run import number as _number

SKIP_PARAMS = ("output_dir", "logging_dir", "hub_token", "push_to_hub_token")


class ModelvcCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, reg: RegistryAPI, *, model: str, branch: str,
                 data: Sequence[str | Path] = (), parent: str | None = None,
                 best_tag: str | None = None, background: bool = True,
                 staging: str | Path | None = None, max_pending: int = 2,
                 isolate: bool = True) -> None:
        self.reg, self.model, self.branch = reg, model, branch
        self.data, self.parent, self.best_tag = list(data), parent, best_tag
        self.background, self.staging, self.max_pending = background, staging, max_pending
        self.isolate = isolate  # commits in a child process at the lowest priority
        self.run: RunAPI | None = None
        self.by_step: dict[int, Version] = {}
        self._futures: dict[int, Future[Version]] = {}  # background commits in flight

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        best = args.metric_for_best_model or "eval_loss"
        if not best.startswith("eval_"):
            best = f"eval_{best}"
        mode = "max" if args.greater_is_better else "min"
        self.run = self.reg.run(model=self.model, branch=self.branch, params=_params(args),
                                data=self.data, parent=self.parent, best=best, mode=mode,
                                best_tag=self.best_tag, staging=self.staging,
                                max_pending=self.max_pending, isolate=self.isolate)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is None or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metrics: dict[str, Any] = {}
        for entry in state.log_history:  # the latest value of each, up to this step
            if entry.get("step", 0) <= state.global_step:
                metrics.update({k: v for k, v in entry.items() if _number(v) is not None
                                and k != "step"})
        message = f"{self.branch} checkpoint {state.global_step}"
        if not self.background:
            self.by_step[state.global_step] = self.run.commit(
                folder=folder, step=state.global_step, metrics=metrics, message=message)
            return
        self._futures[state.global_step] = self.run.submit(
            folder=folder, step=state.global_step, metrics=metrics, message=message)
        self._collect()

    def _collect(self) -> None:
        """by_step for the submitted checkpoints committed so far (a failed one raises
        from the run)."""
        for step, fut in list(self._futures.items()):
            if fut.done() and fut.exception() is None:
                self.by_step[step] = fut.result()
                del self._futures[step]

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None and state.is_world_process_zero:
            try:
                self.run.finish()  # waits for the checkpoints still being committed
            finally:
                self.run.close()
                self._collect()


def _params(args: Any) -> dict[str, Any]:
    """The training arguments that are plain values (paths and tokens left out)."""
    out: dict[str, Any] = {}
    for k, v in args.to_dict().items():
        if k in SKIP_PARAMS or k.endswith("_token"):
            continue
        if v is None or isinstance(v, bool | int | float | str):
            if isinstance(v, float) and not _number(v):
                continue
            out[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, int | float | str) for x in v):
            out[k] = list(v)
    return out


def checkout_checkpoint(reg: RegistryAPI, ref: str, root: str | Path) -> str:
    """Check the checkpoint version REF out into ROOT/checkpoint-STEP and return that
    path, for `trainer.train(resume_from_checkpoint=...)`."""
    v = reg.resolve(ref)
    step = v.metrics.get("step")
    dest = Path(root) / f"checkpoint-{step if isinstance(step, int) else v.number}"
    reg.checkout(f"{v.model}@{v.id}", dest)
    return os.fspath(dest)
