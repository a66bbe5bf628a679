"""`modelvc demo`: versioning and continuous delivery end to end on a small real model.

Trains scikit-learn MLPs on the digits data shipped with scikit-learn (nothing is
downloaded), versions them (ONNX + safetensors + config), gates and promotes v1 to
production and serves it over the Open Inference Protocol; a better v2 goes to the
canary channel and the gateway's policy promotes it; a v3 with a broken export goes to
the canary, live traffic exposes it, and the gateway rolls it back by itself. The
registry stays behind for `modelvc log` and `modelvc channel history`.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .formats.safetensors_write import write_safetensors
from .registry import Registry

Say = Callable[[str], None]
GATE_ACCURACY = 0.85  # offline gate: held-out accuracy recorded with the version


def _need_packages() -> None:
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"the demo needs {exc.name}", hint="pip install 'modelvc[demo]'"
                         ) from exc


def _save(clf: Any, x: np.ndarray, folder: Path, *, exported: Any = None) -> None:
    """A checkpoint folder: safetensors weights, an ONNX export, a config."""
    from skl2onnx import to_onnx

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"layers.{i}.weight": w.astype(np.float32) for i, w in enumerate(clf.coefs_)}
    tensors |= {f"layers.{i}.bias": b.astype(np.float32) for i, b in enumerate(clf.intercepts_)}
    write_safetensors(folder / "model.safetensors", tensors)
    src = exported if exported is not None else clf
    onnx = to_onnx(src, x[:1], options={id(src): {"zipmap": False}})
    (folder / "model.onnx").write_bytes(onnx.SerializeToString())
    (folder / "config.json").write_text(json.dumps(
        {"hidden_layer_sizes": list(clf.hidden_layer_sizes)}, indent=2) + "\n")


POLICY = f"""\
version: 1
models:
  digits:
    channels:
      canary:
        gates:
          - metric: "accuracy >= {GATE_ACCURACY}"
          - format: {{allow_pickle: false}}
      production:
        gates:
          - metric: "accuracy >= {GATE_ACCURACY}"
          - format: {{allow_pickle: false}}
"""


def _apply_policy(reg: Registry) -> None:
    """Protect canary and production: a version reaches them only through passed gates."""
    reg.gates.apply_policy(POLICY, source="demo-policy.yaml", actor="demo")


def _gate(reg: Registry, ref: str, say: Say) -> bool:
    """Run the recorded gates of both channels (the gateway later promotes the canary to
    production by itself, which the policy allows only for a version that passed them)."""
    ok = True
    for channel in ("canary", "production"):
        report = reg.gates.run(ref, channel=channel, actor="demo")
        ok = ok and report.passed
    acc = float(reg.resolve(ref).metrics.get("accuracy", 0.0))
    say(f"   gates (accuracy >= {GATE_ACCURACY}, no pickles), recorded: {acc:.3f} "
        f"{'passed' if ok else 'FAILED'}")
    return ok


def _wait(check: Callable[[], bool], limit: float = 60.0) -> bool:
    end = time.monotonic() + limit
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def run(workdir: Path | None = None, say: Say = print) -> dict[str, Any]:
    _need_packages()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    t0 = time.monotonic()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="modelvc-demo-"))
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0)
    say(f"1. A registry in {root}/.modelvc (SQLite + local objects), with a policy:")
    say("   canary and production only through gates (accuracy, no pickles), recorded")
    reg = Registry.init(root)
    try:
        _apply_policy(reg)
        return _story(reg, root, (xtr, ytr, xte, yte), say, t0)
    finally:
        reg.close()


def _train(data: tuple[Any, ...], hidden: tuple[int, ...], epochs: int) -> tuple[Any, float]:
    import warnings

    from sklearn.neural_network import MLPClassifier

    xtr, ytr, xte, yte = data
    clf = MLPClassifier(hidden, random_state=0, max_iter=epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not converged": a short training is the point
        clf.fit(xtr, ytr)
    return clf, float(clf.score(xte, yte))


def _story(reg: Registry, root: Path, data: tuple[Any, ...], say: Say, t0: float
           ) -> dict[str, Any]:
    from .canary import Policy
    from .serving.config import CanaryConfig, ModelConfig, ServeConfig
    from .serving.loadgen import Traffic
    from .serving.runner import BackgroundServer

    xtr, _, xte, yte = data
    say("2. Train a small MLP on the digits data, export it to ONNX, commit it as v1")
    clf1, acc1 = _train(data, (32,), 30)
    _save(clf1, xtr, root / "checkpoints" / "v1")
    v1 = reg.commit(root / "checkpoints" / "v1", model="digits",
                    message="small MLP", params={"hidden": [32], "epochs": 30},
                    metrics={"accuracy": acc1})
    say(f"   digits@v1  held-out accuracy {acc1:.3f}, {v1.raw_size / 1e3:.0f} kB")
    if not _gate(reg, "digits@v1", say):
        raise UsageError("v1 did not pass its gate; nothing to serve")
    reg.promote("digits@v1", "production", reason=f"gate passed, accuracy {acc1:.3f}",
                create=True)
    reg.promote("digits@v1", "canary", reason="canary starts level with production",
                create=True)
    say("3. Serve it: Open Inference Protocol v2 gateway following digits@production,")
    say("   30% of callers (sticky per caller) go to digits@canary whenever it differs")
    policy = Policy(window=120.0, min_samples=80, min_feedback=80)
    cfg = ServeConfig(models=[ModelConfig("digits", "digits", "production",
                                          canary=CanaryConfig("canary", 30.0, policy))],
                      port=0, grpc_port=0, poll_interval=0.1)  # port: bound by the system
    srv = BackgroundServer(reg, cfg, workdir=root / ".serve").start()
    # Paced (5 ms between a caller's requests, ~600 a second in all): the canary
    # decides on 80 samples in seconds either way, and the training beside it keeps
    # its CPU.
    traffic = Traffic(srv.url, "digits", xte, yte, threads=3, pause=0.005).start()
    say(f"   {srv.url}/v2/models/digits  (traffic: 3 callers sending digits, each "
        "reporting the true label to /feedback)")
    try:
        time.sleep(2)
        out = _canaries(reg, srv, data, say)
    finally:
        tally = traffic.stop()
        status = srv.gateway.status()["digits"]
        metrics = srv.gateway.metrics.exposition().decode()
        srv.stop()
    return _summary(reg, root, say, t0, tally, status, metrics, out)


def _canaries(reg: Registry, srv: Any, data: tuple[Any, ...], say: Say) -> dict[str, Any]:
    xtr = data[0]
    say("4. Train a better v2 (wider, longer); gate it; promote it to the canary")
    clf2, acc2 = _train(data, (128, 64), 60)
    _save(clf2, xtr, Path(srv.gateway.workdir).parent / "checkpoints" / "v2")
    reg.commit(Path(srv.gateway.workdir).parent / "checkpoints" / "v2", model="digits",
               message="wider MLP", params={"hidden": [128, 64], "epochs": 60},
               metrics={"accuracy": acc2})
    say(f"   digits@v2  held-out accuracy {acc2:.3f}")
    promoted = _gate(reg, "digits@v2", say)
    if promoted:
        reg.promote("digits@v2", "canary", reason=f"gate passed, accuracy {acc2:.3f}")
        promoted = _wait(lambda: reg.resolve("digits@production").number == 2)
    last = reg.history("digits", "production")[-1]
    say(f"   the gateway promoted v2 to production by itself: {last.reason}"
        if promoted else "   the policy did not decide in time")
    say("5. On a branch, a v3 whose ONNX export is broken (a faulty converter scrambled")
    say("   its weights); its recorded accuracy is v2's, so the offline gate cannot tell")
    import copy

    bad = copy.deepcopy(clf2)
    rng = np.random.default_rng(0)
    for w in bad.coefs_:
        rng.shuffle(w.reshape(-1))
    ck = Path(srv.gateway.workdir).parent / "checkpoints" / "v3"
    _save(clf2, xtr, ck, exported=bad)
    reg.commit(ck, model="digits", branch="new-exporter", message="new exporter",
               metrics={"accuracy": acc2})
    rolled = _gate(reg, "digits@v3", say)
    if rolled:
        reg.promote("digits@v3", "canary", reason="gate passed")
        rolled = _wait(lambda: reg.resolve("digits@canary").number == 2)
    last = reg.history("digits", "canary")[-1]
    say(f"   regression caught live; canary rolled back to v2 by itself: {last.reason}"
        if rolled else "   the policy did not decide in time")
    return {"accuracy": {"v1": None, "v2": acc2}, "promoted_v2": promoted,
            "rolled_back_v3": rolled}


def _modelvc() -> str:
    """This modelvc as the user's shell can run it: by full path. (scripts/demo puts
    .venv/bin on its own PATH, not on the shell's that started it, so finding `modelvc`
    on PATH here says nothing about the user's shell.)"""
    here = Path(sys.executable).with_name("modelvc")
    if here.exists():
        return shlex.quote(str(here))
    return f"{shlex.quote(sys.executable)} -m modelvc.cli.main"


def _activate() -> str | None:
    """The activate script of the venv this runs in (None outside a venv)."""
    script = Path(sys.prefix) / "bin" / "activate"
    return str(script) if sys.prefix != sys.base_prefix and script.exists() else None


def _summary(reg: Registry, root: Path, say: Say, t0: float, tally: Any,
             status: dict[str, Any], metrics: str, out: dict[str, Any]) -> dict[str, Any]:
    say("6. Summary")
    per = {str(v["number"]): v for v in status["versions"].values() if v["number"]}
    rows = []
    say(f"   {'version':<8} {'offline acc':>11} {'requests':>9} {'errors':>7} "
        f"{'live acc':>9}  message")
    for v in reg.versions("digits"):
        s = per.get(str(v.number), {})
        w = s.get("window") or {}
        live = w.get("accuracy")
        rows.append({"version": v.number, "accuracy": v.metrics.get("accuracy"),
                     "requests": s.get("requests", 0), "errors": s.get("errors", 0),
                     "live_accuracy": live, "message": v.message})
        say(f"   v{v.number:<7} {v.metrics.get('accuracy', 0):>11.3f} "
            f"{s.get('requests', 0):>9} {s.get('errors', 0):>7} "
            f"{'-' if live is None else f'{live:.3f}':>9}  {v.message}")
    nums = {v.id: v.number for v in reg.versions("digits")}
    history = []
    for channel in ("production", "canary"):
        say(f"   channel {channel}:")
        for m in reg.history("digits", channel):
            old = f"v{nums[m.old]}" if m.old else "-"
            say(f"     {m.at:%H:%M:%S} {m.action:<8} {old:>3} -> v{nums[m.new or '']}  "
                f"{m.actor}: {m.reason}")
            history.append({"channel": channel, "action": m.action, "from": old,
                            "to": f"v{nums[m.new or '']}", "actor": m.actor,
                            "reason": m.reason})
    say(f"   callers: {tally.ok} answered, {tally.failed} failed; "
        f"{sum(1 for ln in metrics.splitlines() if ln.startswith('modelvc_'))} "
        "Prometheus samples at /metrics")
    explore = [f"{_modelvc()} --registry {shlex.quote(str(root))} {args}" for args in (
        "log digits --all --graph", "channel history digits production", "show digits",
        "diff digits@v1 digits@v2", "audit --model digits", "du digits")]
    main, prod = reg.resolve("digits").number, reg.resolve("digits@production").number
    say(f"done in {time.monotonic() - t0:.0f} s. Explore the registry it left behind "
        f"(`digits` alone is the main branch head, v{main}; production serves v{prod}):")
    for line in explore:
        say(f"   {line}")
    activate = _activate()
    if activate:
        say(f"   (or `. {shlex.quote(activate)}` first, then type plain `modelvc ...`)")
    return {"registry": str(root), "versions": rows, "history": history, "explore": explore,
            "production": f"digits@v{reg.resolve('digits@production').number}",
            "canary": f"digits@v{reg.resolve('digits@canary').number}",
            "requests_ok": tally.ok, "requests_failed": tally.failed,
            "promoted_v2": out["promoted_v2"], "rolled_back_v3": out["rolled_back_v3"]}
