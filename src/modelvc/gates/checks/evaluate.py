"""Eval gates: a command or a Python entry point scores the checked-out version.

The command gets {model} (the checkout folder), {model_file} (its file, for a one-file
version) and {data}; it prints metrics as a JSON object on the last line of stdout.
An entry point `package.module:function(model_dir, data) -> dict` runs in-process.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from ...records import GateResult
from ..context import RunContext
from ..policy import Gate
from .metric import check_expr

TAIL = 600  # characters of a failing command's stderr kept in the report


def evaluate(ctx: RunContext, gate: Gate) -> list[GateResult]:
    data = ctx.data or gate.options.get("data")
    name = gate.options.get("command") or gate.options["entry_point"]
    try:
        metrics = run_eval(ctx, gate, data, ctx.checkout(), ctx.version.id)
    except EvalFailed as exc:
        fail = GateResult("eval", name, False, None, "metrics as JSON", str(exc), gate.line)
        # Thresholds on an eval that did not run fail too, so none reads as passed.
        return [fail] + [GateResult("eval", e.text, False, None, e.text,
                                    "the eval gate did not produce metrics", gate.line)
                         for e in gate.exprs]
    ctx.measured(metrics, "eval")
    out = [GateResult("eval", name, True, metrics, "metrics as JSON",
                      f"data {data}" if data else "", gate.line)]
    # Its thresholds are labelled as its own: a metric gate with the same expression
    # is another check (on the same value: the eval's, which replaced the recorded one).
    return out + [check_expr(ctx, gate, e, "eval") for e in gate.exprs]


class EvalFailed(Exception):
    pass


def run_eval(ctx: RunContext, gate: Gate, data: str | None, model_dir: Path,
             version_id: str) -> dict[str, Any]:
    """The gate's command or entry point on the checkout MODEL_DIR of VERSION_ID (the
    candidate, or for a derived gate also its source): the metrics it returned."""
    if data is not None and not Path(data).exists():
        raise EvalFailed(f"data path {data!r} does not exist (pass --data PATH)")
    if "entry_point" in gate.options:
        return _entry_point(gate.options["entry_point"], model_dir, data)
    files = [p for p in model_dir.rglob("*") if p.is_file()]
    subs = {"{model}": str(model_dir), "{data}": data or "",
            "{model_file}": str(files[0]) if len(files) == 1 else ""}
    argv = []
    for token in shlex.split(gate.options["command"]):
        for key, val in subs.items():
            if key in token and not val:
                what = "--data or eval.data" if key == "{data}" else "a one-file version"
                raise EvalFailed(f"the command uses {key} but there is none (needs {what})")
            token = token.replace(key, val)
        argv.append(token)
    env = dict(os.environ, MODELVC_MODEL_DIR=str(model_dir), MODELVC_DATA=data or "",
               MODELVC_VERSION=version_id, MODELVC_CHANNEL=ctx.channel)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=gate.options["timeout"], check=False)
    except FileNotFoundError as exc:
        raise EvalFailed(f"cannot run {argv[0]!r}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise EvalFailed(f"timed out after {gate.options['timeout']:g} s") from exc
    if proc.returncode != 0:
        raise EvalFailed(f"exited with status {proc.returncode}: "
                          f"{proc.stderr.strip()[-TAIL:] or proc.stdout.strip()[-TAIL:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise EvalFailed("printed nothing; print the metrics as a JSON object on the last "
                          "line of stdout")
    try:
        metrics = json.loads(lines[-1])
    except ValueError as exc:
        raise EvalFailed(f"the last line of stdout is not JSON: {lines[-1][:200]!r}") from exc
    return _checked(metrics)


def _entry_point(spec: str, model_dir: Path, data: str | None) -> dict[str, Any]:
    mod_name, _, fn_name = spec.partition(":")
    # The policy lives with the training code: let it import the project's modules.
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
        return _checked(fn(str(model_dir), data))
    except EvalFailed:
        raise
    except Exception as exc:  # the user's code: any failure fails the gate, with its text
        raise EvalFailed(f"{spec} raised {type(exc).__name__}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(cwd)


def _checked(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
        raise EvalFailed(f"metrics must be a JSON object of name -> number, got "
                          f"{str(metrics)[:200]}")
    return metrics
