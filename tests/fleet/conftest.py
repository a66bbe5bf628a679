"""Fleet fixtures: a registry on a real PostgreSQL holding digits v1..v3 (real ONNX
models), and gateway processes started with `modelvc serve --fleet`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelvc.registry import Registry
from tests.services.ports import free_port
from tests.serving.conftest import Digits, commit_onnx, digits  # noqa: F401

from .fleet_helpers import GatewayProcess, wait_for

Start = Callable[..., GatewayProcess]


def make_registry(path: Path, meta_url: str, digits: Digits) -> Registry:  # noqa: F811
    """digits v1 (logistic regression) in production, v2 (MLP), v3 (shuffled labels)."""
    reg = Registry.init(path, meta_url=meta_url)
    for tag, data in (("v1", digits.good), ("v2", digits.better), ("v3", digits.broken)):
        commit_onnx(reg, path.parent, data, tag)
    reg.promote("digits@v1", "production", reason="first", create=True)
    return reg


@pytest.fixture
def fleet_reg(tmp_path: Path, pg_url: str, digits: Digits,  # noqa: F811
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    reg = make_registry(tmp_path / "repo", pg_url, digits)
    yield reg
    reg.close()


@pytest.fixture
def start_gateways(tmp_path: Path) -> Iterator[Callable[..., list[GatewayProcess]]]:
    """start_gateways(reg, n, **kw) -> n ready gateway processes r1..rn; stopped after."""
    running: list[GatewayProcess] = []

    def start(reg: Registry, n: int, **kw: Any) -> list[GatewayProcess]:
        new = []
        for _ in range(n):
            rid = f"r{len(running) + 1}"
            g = GatewayProcess(reg._layout.root.parent, rid, free_port(),
                               log=tmp_path / f"{rid}.log", **kw)
            running.append(g)
            new.append(g)
        for g in new:
            wait_for(g.ready, f"gateway {g.replica} to be ready")
        return new

    yield start
    for g in running:
        g.stop()
