"""The CI workflow stops a bad build; an admin can force it and a promoter roll it back
(examples/ci, run for real; a module of its own so xdist runs it beside the others)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .ci_repo import Repo, make_repo, workflow_steps


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


def test_a_bad_build_is_stopped_and_an_admin_can_force_or_roll_back(repo: Repo) -> None:
    steps = dict(workflow_steps("digits"))
    for name in ("Train", "Commit", "Gate for production", "Promote to production"):
        repo.sh(steps[name])
    good = repo.version("digits")
    # One epoch: the model is bad; the production gate fails and promotion is refused.
    repo.sh(steps["Train"], TRAIN_ARGS="--epochs 1")
    repo.sh(steps["Commit"])
    bad = repo.version("digits")
    gate = repo.sh(steps["Gate for production"], ok=False)
    assert gate.returncode == 5, gate.stdout + gate.stderr
    assert "FAIL  metric     accuracy >= 0.9" in gate.stdout
    assert "FAIL  regression accuracy >= production - 0.005" in gate.stdout
    promote = repo.sh(steps["Promote to production"], ok=False)
    assert promote.returncode == 5 and "failed the production gates" in promote.stderr
    assert repo.channel("digits", "production") == good
    # --force: refused for ci-bot (exit 8), recorded for the admin with a reason.
    force = f"modelvc promote digits@{bad} --to production --force -r 'demo the override'"
    assert repo.sh(force, ok=False).returncode == 8
    assert repo.channel("digits", "production") == good
    repo.sh(force, author="release-manager")
    assert repo.channel("digits", "production") == bad
    history = repo.json("modelvc channel history digits production")
    assert isinstance(history, list)
    assert (history[-1]["action"], history[-1]["actor"]) == ("force", "release-manager")
    # The promoter rolls it back in one step.
    repo.sh("modelvc rollback digits production -r 'forced build misbehaves'")
    assert repo.channel("digits", "production") == good
    # The policy CLI: errors name the line; show prints the file as written.
    (repo.path / "bad.yaml").write_text("version: 1\nroles:\n  admins: [x]\n")
    check = repo.sh("modelvc policy check bad.yaml", ok=False)
    assert check.returncode == 2 and "bad.yaml:3: unknown key 'admins'" in check.stderr
    assert repo.sh("modelvc policy apply bad.yaml", ok=False).returncode == 2
    assert "# Promotion policy for the CI examples" in repo.sh("modelvc policy show").stdout
    gates = repo.json("modelvc audit --action gate")
    assert isinstance(gates, list) and [g["after"]["passed"] for g in gates] == [True, False]
