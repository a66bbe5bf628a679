"""Shared pieces of the gate tests: a policy writer and small committed versions."""

from __future__ import annotations

import textwrap
from pathlib import Path

from modelvc.gates.policy import Policy, parse_policy
from modelvc.meta.api import VersionRow
from modelvc.registry import Registry
from tests.conftest import write_model

POLICY = """\
version: 1
roles:
  admin: [alice]
  promoter: [bob, ci-bot]
models:
  m:
    channels:
      production:
        promoters: [ci-bot]
        gates:
          - metric: "accuracy >= 0.9"
      staging:
        gates:
          - metric: "accuracy >= 0.5"
          - regression: "accuracy >= staging - 0.05"
"""


def apply(reg: Registry, text: str = POLICY, actor: str = "alice") -> Policy:
    pol = parse_policy(textwrap.dedent(text), "policy.yaml")
    reg.governance.apply_policy(pol, actor)
    return pol


def commit(reg: Registry, tmp: Path, seed: int, accuracy: float) -> VersionRow:
    path = tmp / f"m{seed}.safetensors"
    write_model(path, seed)
    return reg.commit(path, model="m", metrics={"accuracy": accuracy})
