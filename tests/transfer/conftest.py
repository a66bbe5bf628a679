"""Fixtures: registries with a few versions of a small model, and real servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from modelvc.registry import Registry
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token


@pytest.fixture(autouse=True)
def _author(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVC_AUTHOR", "tester")
    monkeypatch.delenv("MODELVC_TOKEN", raising=False)


@pytest.fixture
def make_reg(tmp_path: Path) -> Iterator[Callable[[str], Registry]]:
    opened: list[Registry] = []

    def make(name: str) -> Registry:
        r = Registry.init(tmp_path / name)
        opened.append(r)
        return r

    yield make
    for r in opened:
        r.close()


class Trainer:
    """Commits a base model then fine-tunes of it, like a training run."""

    def __init__(self, reg: Registry, tmp: Path, model: str = "bert") -> None:
        self.reg, self.tmp, self.model = reg, tmp, model
        self.base: dict[str, np.ndarray] | None = None
        self.n = 0

    def commit(self, branch: str = "main", **kw: object) -> str:
        self.n += 1
        path = self.tmp / f"ckpt-{self.model}-{self.n}" / "model.safetensors"
        tensors = write_model(path, self.n, base=self.base, **kw)  # type: ignore[arg-type]
        self.base = self.base or tensors
        return self.reg.commit(path.parent, model=self.model, branch=branch,
                               message=f"step {self.n}").id


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    """A server over a fresh registry (SQLite + local objects); MODELVC_TOKEN is an
    admin's token for it."""
    Registry.init(tmp_path / "served").close()
    monkeypatch.setenv("MODELVC_TOKEN", grant_token(tmp_path / "served"))
    proc = ServerProcess(tmp_path / "served", tmp_path / "server.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest
           ) -> Iterator[tuple[ServerProcess, str]]:
    """A `modelvc server` over a fresh registry and a writer token for `big` (subject
    "wes"). Stopped with SIGTERM after the test, or killed (-9) in a module that sets
    `SERVED_KILL = True` (test_interrupted.py, whose tests cut pushes and pulls and
    kill the server themselves: nothing of its shutdown is checked there)."""
    Registry.init(tmp_path / "served").close()
    token = grant_token(tmp_path / "served", "wes", "writer", "big")
    server = ServerProcess(tmp_path / "served", tmp_path / "server.log").start()
    yield server, token
    if getattr(request.module, "SERVED_KILL", False):
        server.kill()
    else:
        server.stop()
