"""A seeded registry for the UI tests: two models, a branch, an export, a derived
version (bert@v5: `cast` of bert@v2 to bf16, by `modelvc.derive`), a policy whose
production gate refuses one version, channels with history, tokens per role."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelvc.derive import derive
from modelvc.gates.policy import parse_policy
from modelvc.registry import Registry
from modelvc.signing.ops import create_key, sign_version
from tests.conftest import write_model
from tests.services.server import grant_token

POLICY = """\
version: 1
roles:
  admin: [admin]
  promoter: [maint]
models:
  bert:
    channels:
      production:
        gates:
          - metric: "acc >= 0.84"
"""


@dataclass(frozen=True)
class Seeded:
    path: Path
    tokens: dict[str, str]  # subject -> API token (admin, maint, reader)


def seed(root: Path, *, meta_url: str | None = None, objects_url: str | None = None
         ) -> Seeded:
    old = os.environ.get("MODELVC_AUTHOR")
    os.environ["MODELVC_AUTHOR"] = "admin"  # restored below: other tests share the process
    try:
        return _seed(root, meta_url, objects_url)
    finally:
        if old is None:
            os.environ.pop("MODELVC_AUTHOR", None)
        else:
            os.environ["MODELVC_AUTHOR"] = old


def _seed(root: Path, meta_url: str | None, objects_url: str | None) -> Seeded:
    repo = root / "repo"
    files = root / "files"
    with Registry.init(repo, meta_url=meta_url, objects_url=objects_url) as reg:
        base = write_model(files / "bert.safetensors", 0)
        reg.commit(files / "bert.safetensors", model="bert", message="baseline",
                   params={"lr": 1e-3, "epochs": 1, "hidden": [64], "optimizer": "sgd"},
                   metrics={"acc": 0.80, "loss": 0.61})
        write_model(files / "bert.safetensors", 1, base=base)
        reg.commit(files / "bert.safetensors", model="bert", message="epoch 2",
                   params={"lr": 1e-3, "epochs": 2, "hidden": [128, 64], "optimizer": "SGD"},
                   metrics={"acc": 0.86, "loss": 0.42})
        reg.create_branch("bert", "dev", at="bert@v1")
        write_model(files / "bert.safetensors", 2, base=base, scale=1e-2)
        reg.commit(files / "bert.safetensors", model="bert", branch="dev",
                   message="try a higher lr", params={"lr": 1e-2, "epochs": 2},
                   metrics={"acc": 0.83, "loss": 0.47})
        write_model(files / "bert.safetensors", 3, base=base, scale=1e-4)
        reg.commit(files / "bert.safetensors", model="bert", branch="export",
                   parent="bert@v2", message="export for serving",
                   params={"lr": 1e-3, "epochs": 2}, metrics={"acc": 0.86})
        reg.tag("bert@v2", "paper")
        _, key = create_key(reg, "release", root / "keys", actor="admin")
        sign_version(reg, "bert@v2", key, actor="admin")
        r0 = write_model(files / "resnet.safetensors", 7)
        reg.commit(files / "resnet.safetensors", model="resnet", message="first",
                   metrics={"top1": 0.71})
        write_model(files / "resnet.safetensors", 8, base=r0)
        reg.commit(files / "resnet.safetensors", model="resnet", message="second",
                   metrics={"top1": 0.74})
        reg.promote("resnet@v2", "staging", reason="nightly", create=True)
        reg._governance.apply_policy(parse_policy(POLICY), "admin")
        reg.promote("bert@v1", "production", reason="first release", force=True,
                    actor="admin", create=True)
        reg.gates.run("bert@v2", channel="production", actor="maint")
        reg.promote("bert@v2", "production", reason="better acc", actor="maint")
        reg.gates.run("bert@v3", channel="production", actor="maint")  # fails: acc 0.83
        reg.promote("bert@v3", "staging", reason="try it", actor="maint",
                    create=True)
        out = derive(reg, "bert@v2", "cast", to="bf16", params={"dtype": "bf16"})
        assert out.version.number == 5
    tokens = {"admin": grant_token(repo, "admin", "admin"),
              "maint": grant_token(repo, "maint", "promoter"),
              "reader": grant_token(repo, "reader", "reader")}
    return Seeded(repo, tokens)
