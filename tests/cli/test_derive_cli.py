"""`modelvc derive` and `modelvc derive --check` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import js, run
from tests.conftest import write_model


def test_derive_show_and_check(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    write_model(tmp_path / "m" / "model.safetensors", 1)
    src = js(["commit", "m", "--model", "toy"], tmp_path)
    made = js(["derive", "toy@v1", "cast", "--to", "half", "--param", "dtype=fp16"], tmp_path)
    rec = made["derived_from"]
    assert (rec["version"], rec["recipe"], rec["params"]) == (src["id"], "cast",
                                                               {"dtype": "fp16"})
    shown = js(["show", "toy@half"], tmp_path)
    assert shown["derived_from"] == rec
    assert shown["version"]["parents"] == [src["id"]]
    human = run(["show", "toy@half"], tmp_path).stdout
    assert "derived  cast v1 of toy@v1 (dtype=fp16)" in human
    checked = js(["derive", "--check", "toy@half"], tmp_path)
    assert checked["ok"] is True and checked["tag"] == "derive-ok-v2"
    recipes = {r["name"]: r for r in js(["derive", "--list"], tmp_path)}
    assert recipes["cast"]["deterministic"] and "prune" in recipes


def test_check_of_a_forged_version_exits_1(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    base = write_model(tmp_path / "m" / "model.safetensors", 1)
    js(["commit", "m", "--model", "toy"], tmp_path)
    made = js(["derive", "toy@v1", "prune", "--to", "sparse", "-p", "sparsity=0.5"], tmp_path)
    # The same record over a model pruned some other way: by position, not magnitude.
    w = base["layer.0.weight"].copy()
    w[:32] = 0
    write_model(tmp_path / "f" / "model.safetensors", 1)
    from safetensors.numpy import load_file, save_file

    t = load_file(str(tmp_path / "f" / "model.safetensors"))
    t["layer.0.weight"] = w
    save_file(t, str(tmp_path / "f" / "model.safetensors"))
    from modelvc.registry import Registry

    with Registry.open(tmp_path / ".modelvc") as reg:
        v = reg.commit(tmp_path / "f", model="toy", branch="forged", parent="toy@v1",
                       lineage={"derived_from": made["derived_from"]})
    p = run(["derive", "--check", "toy@forged", "--json"], tmp_path, ok=False)
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["tag"] == f"derive-failed-v{v.number}"
    assert {f["path"]: f["status"] for f in out["files"]}["model.safetensors"] == "differs"
    human = run(["derive", "--check", "toy@forged", "--no-record"], tmp_path, ok=False)
    assert "FAILED" in human.stdout and "differs" in human.stdout


def test_derive_usage_errors(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    write_model(tmp_path / "m" / "model.safetensors", 1)
    run(["commit", "m", "--model", "toy"], tmp_path)
    p = run(["derive", "toy@v1", "cast"], tmp_path, ok=False)
    assert p.returncode == 2 and "--to BRANCH" in p.stderr and "hint:" in p.stderr
    p = run(["derive", "toy@v1", "cast", "--to", "b", "--param", "dtype"], tmp_path, ok=False)
    assert p.returncode == 2 and "KEY=VALUE" in p.stderr
    p = run(["derive", "toy@v1", "nope", "--to", "b"], tmp_path, ok=False)
    assert p.returncode == 3 and "prune" in p.stderr
    p = run(["derive", "--check", "toy@v1", "toy@v1"], tmp_path, ok=False)
    assert p.returncode == 2
    p = run(["derive", "--check", "toy@v1"], tmp_path, ok=False)
    assert p.returncode == 2 and "records no derived_from" in p.stderr
