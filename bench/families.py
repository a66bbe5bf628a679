"""Model families beyond the MiniLM fine-tune, for bench/storage.py's per-family table.

- cnn: a small CNN (two 3x3 convolutions, two dense layers; 1.1 M parameters) trained
  from scratch with Adam on scikit-learn's digits (8x8 images, 1,797 samples), one
  checkpoint per epoch: every weight moves, and early epochs move them far.
- embedding: a recommender-style model: a 200,000 x 32 fp32 embedding table plus a
  small dense tower, trained with sparse updates (each step touches the rows of one
  batch of item ids, Zipf-distributed as item popularity is), one checkpoint every
  200 steps: most rows are byte-identical between versions, the tower changes whole.

Each family is a chain of folders (one model.safetensors each) in
bench/.cache/families/<family>-<key>/,
generated once (seconds of CPU) and reused. `VersionSpec` as in finetune.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from finetune import CACHE, VersionSpec

GEN_VERSION = 1


def _cached(family: str, spec: dict[str, object],
            make: Callable[[Path], list[VersionSpec]]) -> list[VersionSpec]:
    key = hashlib.sha256(json.dumps({"gen": GEN_VERSION, **spec}, sort_keys=True).encode()
                         ).hexdigest()[:12]
    root = CACHE / "families" / f"{family}-{key}"
    index = root / "versions.json"
    if index.exists():
        return [VersionSpec(**v) for v in json.loads(index.read_text())]
    root.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    out = make(root)
    index.write_text(json.dumps([asdict(v) for v in out], indent=1) + "\n")
    return out


def cnn(epochs: int = 6) -> list[VersionSpec]:
    def make(root: Path) -> list[VersionSpec]:
        import torch
        from safetensors.torch import save_file
        from sklearn.datasets import load_digits

        torch.manual_seed(0)
        torch.set_num_threads(2)
        x, y = load_digits(return_X_y=True)
        xt = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        yt = torch.tensor(y)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        out: list[VersionSpec] = []
        parent = None
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
            name = f"cnn/ep{epoch}"
            path = root / f"ep{epoch}"
            path.mkdir(exist_ok=True)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                      str(path / "model.safetensors"))
            out.append(VersionSpec(name, "cnn", "cnn", parent, str(path),
                                   f"digits CNN epoch {epoch}, loss {loss.item():.3f}"))
            parent = name
        return out

    return _cached("cnn", {"epochs": epochs}, make)


def embedding(checkpoints: int = 6, rows: int = 200_000, dim: int = 32,
              steps: int = 200, batch: int = 256) -> list[VersionSpec]:
    def make(root: Path) -> list[VersionSpec]:
        from safetensors.numpy import save_file

        rng = np.random.default_rng(0)
        table = (rng.standard_normal((rows, dim)) * 0.01).astype(np.float32)
        accum = np.zeros(rows, np.float32)  # Adagrad-style per-row state (not saved)
        w1 = (rng.standard_normal((dim, 64)) * 0.1).astype(np.float32)
        w2 = (rng.standard_normal((64, 1)) * 0.1).astype(np.float32)
        out: list[VersionSpec] = []
        parent = None
        for c in range(1, checkpoints + 1):
            for _ in range(steps):
                ids = np.unique(np.minimum(rng.zipf(1.2, batch), rows) - 1)
                e = table[ids]
                h = np.maximum(e @ w1, 0)
                target = rng.standard_normal((len(ids), 1)).astype(np.float32)
                err = h @ w2 - target
                g2 = h.T @ err / len(ids)
                gh = (err @ w2.T) * (h > 0)
                g1 = e.T @ gh / len(ids)
                ge = gh @ w1.T
                accum[ids] += (ge * ge).mean(axis=1)
                table[ids] -= (0.05 * ge / np.sqrt(accum[ids] + 1e-8)[:, None]).astype(np.float32)
                w1 -= 0.01 * g1
                w2 -= 0.01 * g2
            name = f"emb/ck{c}"
            path = root / f"ck{c}"
            path.mkdir(exist_ok=True)
            save_file({"item_embedding": table, "tower.w1": w1, "tower.w2": w2},
                      str(path / "model.safetensors"))
            out.append(VersionSpec(name, "embedding", "emb", parent, str(path),
                                   f"sparse embedding updates, step {c * steps}"))
            parent = name
        return out

    return _cached("embedding", {"checkpoints": checkpoints, "rows": rows, "dim": dim,
                                 "steps": steps, "batch": batch}, make)


# Each makes its versions with its defaults (storage.py calls FAMILIES[name]()).
FAMILIES: dict[str, Callable[[], list[VersionSpec]]] = {"cnn": cnn, "embedding": embedding}
