"""`reg.run(...)`: a plain PyTorch loop commits state dicts (no file written, no pickle),
on an embedded registry and over a server alike; `submit` encodes on the run's thread."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from modelvc.api import RegistryAPI
from modelvc.errors import UsageError
from modelvc.integrations.run import run, tensor_bytes
from modelvc.registry import Registry
from tests.services.lazy import lazy
from tests.services.server import ServerProcess, grant_token
from tests.transfer.conftest import server  # noqa: F401  (the fixture)

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # imported by the tests, not at collection


def _loop(reg: RegistryAPI, tmp_path: Path, *, background: bool = False) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.randn(64, 8)
    y = x.sum(1, keepdim=True)
    losses = {}
    kept: dict[int, dict[str, torch.Tensor]] = {}
    with reg.run(model="mlp", branch="sgd", params={"lr": 0.05}, best="loss",
                 files={"config.json": b'{"layers": [8, 16, 1]}'}) as r:
        for step in range(1, 31):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
            if step % 10 == 0:
                losses[step] = float(loss)
                if background:  # training changes the tensors while the commit runs
                    r.submit(net.state_dict(), step=step, metrics={"loss": float(loss)})
                else:
                    r.commit(net.state_dict(), step=step, metrics={"loss": float(loss)})
            if step in (10, 20):
                kept[step] = {k: t.clone() for k, t in net.state_dict().items()}
    assert [v.metrics["step"] for v in reg.log("mlp@sgd")] == [30, 20, 10]
    v = reg.resolve("mlp@sgd")
    assert v.params == {"lr": 0.05} and v.lineage["run"] == {"id": r.id, "step": 30}
    assert reg.resolve("mlp@sgd-best").metrics["loss"] == min(losses.values())
    got = reg.load("mlp@sgd", file="model.safetensors")
    for name, t in net.state_dict().items():
        assert np.array_equal(np.asarray(got[name]), t.numpy()), name
    assert {f.path for f in reg.manifest("mlp@sgd").files} == {"model.safetensors",
                                                              "config.json"}
    for step, state in kept.items():  # each version holds its step's state, not a later one
        got = reg.load(f"mlp@v{step // 10}", file="model.safetensors")
        for name, t in state.items():
            assert np.array_equal(np.asarray(got[name]), t.numpy()), (step, name)
    # The bytes are those of a safetensors file of the state (as tensor_bytes makes it).
    out = tmp_path / "out"
    reg.checkout("mlp@sgd", out)
    assert (out / "model.safetensors").read_bytes() == tensor_bytes(net.state_dict())


def test_run_commits_state_dicts(reg: RegistryAPI, tmp_path: Path) -> None:
    _loop(reg, tmp_path)


def test_submit_encodes_in_the_background(reg: RegistryAPI, tmp_path: Path) -> None:
    _loop(reg, tmp_path, background=True)


def test_the_helper_is_the_verb(reg: RegistryAPI) -> None:
    with run(reg, model="h", branch="b") as r:
        r.commit({"w": np.zeros(3, np.float32)}, step=1)
    assert reg.resolve("h@b").lineage["run"]["id"] == r.id


def test_run_over_a_server(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    token = grant_token(server.registry, "tess", "writer", "mlp")
    with Registry.open(server.url, token=token) as remote:
        _loop(remote, tmp_path, background=True)
        # A saved folder submitted: staged beside it (no registry folder here), then sent.
        folder = tmp_path / "ck" / "checkpoint-40"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(tensor_bytes({"w": np.ones(3, np.float32)}))
        with remote.run(model="mlp", branch="sgd") as r:
            fut = r.submit(folder=folder, step=40)
            assert (tmp_path / "ck" / ".modelvc-staging").is_dir()
        assert fut.result().metrics["step"] == 40
        assert list((tmp_path / "ck" / ".modelvc-staging").iterdir()) == []


def test_bf16_and_bad_dtypes() -> None:
    t = torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16)
    raw = tensor_bytes({"w": t})
    from safetensors.torch import load

    assert torch.equal(load(raw)["w"], t)
    with pytest.raises(UsageError, match="complex64"):
        tensor_bytes({"c": torch.zeros(2, dtype=torch.complex64)})
