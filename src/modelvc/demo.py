"""`modelvc demo`: the version store end to end on a small real model.

Trains a scikit-learn MLP on the digits data shipped with scikit-learn, commits
checkpoints (ONNX + safetensors + config) to a registry, diffs them, promotes through
channels, catches a broken version, rolls production back, and checks out what
production serves, bit-exact. Nothing is downloaded.
"""

from __future__ import annotations

import json
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


def _need_sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UsageError("the demo trains a scikit-learn model",
                         hint="pip install 'modelvc[demo]'") from exc
    return load_digits


def _save(clf: Any, x: np.ndarray, folder: Path, epoch: int) -> None:
    """A checkpoint folder: safetensors weights, ONNX export (if skl2onnx), config."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"layers.{i}.weight": w.astype(np.float32) for i, w in enumerate(clf.coefs_)}
    tensors |= {f"layers.{i}.bias": b.astype(np.float32) for i, b in enumerate(clf.intercepts_)}
    write_safetensors(folder / "model.safetensors", tensors, metadata={"epoch": str(epoch)})
    try:
        from skl2onnx import to_onnx

        (folder / "model.onnx").write_bytes(to_onnx(clf, x[:1]).SerializeToString())
    except ImportError:
        pass
    config = {"hidden_layer_sizes": list(clf.hidden_layer_sizes), "epoch": epoch,
              "activation": clf.activation}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def run(workdir: Path | None = None, say: Say = print) -> dict[str, Any]:
    load_digits = _need_sklearn()
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    t0 = time.monotonic()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="modelvc-demo-"))
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0)
    say(f"1. A registry in {root}/.modelvc (SQLite + local objects)")
    reg = Registry.init(root)
    try:
        return _story(reg, root, xtr, ytr, xte, yte, MLPClassifier, say, t0)
    finally:
        reg.close()


def _story(reg: Registry, root: Path, xtr: Any, ytr: Any, xte: Any, yte: Any,
           mlp: Any, say: Say, t0: float) -> dict[str, Any]:
    clf = mlp(hidden_layer_sizes=(128, 64), random_state=0, learning_rate_init=1e-3)
    classes = np.arange(10)
    say("2. Train an MLP on the digits data; commit a checkpoint every few epochs")
    accs: list[float] = []
    for v in range(1, 4):
        for _ in range(4):
            clf.partial_fit(xtr, ytr, classes=classes)
        acc = float(clf.score(xte, yte))
        accs.append(acc)
        ck = root / "checkpoints" / f"epoch{4 * v}"
        _save(clf, xtr, ck, 4 * v)
        ver = reg.commit(ck, model="digits", branch="dev", message=f"epoch {4 * v}",
                         params={"lr": 1e-3, "epochs": 4 * v}, metrics={"accuracy": acc})
        say(f"   digits@v{ver.number}  accuracy {acc:.3f}   {ver.raw_size / 1e3:7.1f} kB raw, "
            f"{ver.stored_size / 1e3:6.1f} kB stored ({ver.stored_size / ver.raw_size:.2f}x)")
    say("3. What changed between v1 and v3 (per tensor)")
    d = reg.diff("digits@v1", "digits@v3")
    for t in sorted(d.tensors, key=lambda t: -(t.rel_l2 or 0))[:4]:
        say(f"   {t.file}:{t.name:<16} changed {t.changed_fraction or 0:6.1%}  "
            f"rel_l2 {t.rel_l2 or 0:.3f}  max|d| {t.max_abs or 0:.3f}")
    for c in d.metrics:
        say(f"   metric {c.key}: {c.old:.3f} -> {c.new:.3f}")
    say("4. Promote: v2 to staging, v3 to production (each move recorded)")
    reg.promote("digits@v2", "staging", reason="nightly candidate")
    reg.promote("digits@v3", "production", reason=f"accuracy {accs[2]:.3f}")
    say("5. A broken v4 (weights scrambled) reaches production...")
    rng = np.random.default_rng(0)
    for w in clf.coefs_:
        rng.shuffle(w.reshape(-1))
    bad = float(clf.score(xte, yte))
    ck = root / "checkpoints" / "broken"
    _save(clf, xtr, ck, 12)
    reg.commit(ck, model="digits", branch="dev", message="broken export",
               metrics={"accuracy": bad})
    reg.promote("digits@v4", "production", reason="hotfix (untested)")
    live = reg.resolve("digits@production")
    say(f"   production serves v{live.number}, accuracy {bad:.3f}: regression")
    back = reg.rollback("digits", "production", reason=f"accuracy fell to {bad:.3f}")
    now = reg.meta.get_version(back.version_id or "")
    say(f"   rolled back in one step: production -> v{now.number}")
    say("6. Channel history (who, when, from, to, why)")
    nums = {v.id: v.number for v in reg.versions("digits")}
    for m in reg.history("digits", "production"):
        old = f"v{nums[m.old]}" if m.old else "-"
        say(f"   {m.at:%H:%M:%S} {m.action:<8} {old:>3} -> v{nums[m.new or '']}  {m.reason}")
    say("7. Check out production, bit-exact and verified, and run it")
    dest = root / "production"
    reg.checkout("digits@production", dest)
    same = all((dest / n).read_bytes() == (root / "checkpoints" / "epoch12" / n).read_bytes()
               for n in ("model.safetensors", "config.json"))
    served = _evaluate(dest, xte, yte)
    if served is not None:
        say(f"   ONNX Runtime on the checked-out model: accuracy {served:.3f}")
    stats = reg.stats("digits")["models"]["digits"]
    ok = reg.verify().ok
    say(f"8. {len(stats['versions'])} versions: {stats['raw'] / 1e3:.0f} kB raw, "
        f"{stats['stored'] / 1e3:.0f} kB stored ({stats['ratio']:.2f}x); verify: "
        f"{'ok' if ok else 'CORRUPT'}; bit-exact checkout: {same}")
    say(f"done in {time.monotonic() - t0:.1f} s. Explore: cd {root} && modelvc log digits@dev")
    return {"registry": str(root), "accuracy": accs, "broken_accuracy": bad,
            "production": f"digits@v{reg.resolve('digits@production').number}",
            "served_accuracy": served, "ratio": stats["ratio"], "verify_ok": ok,
            "bit_exact": same}


def _evaluate(folder: Path, x: Any, y: Any) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if not (folder / "model.onnx").exists():
        return None
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    labels = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float((labels == y).mean())
