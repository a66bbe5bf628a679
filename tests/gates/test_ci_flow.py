"""The CI examples, run for real: every `run:` step of examples/ci/github-actions.yml (the
Jenkinsfile calls the same release.sh) through the real `modelvc` CLI, on the digits ONNX
model and on the tiny BERT, in a git repository as a CI checkout would be."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
                    "MODELVC_REGISTRY": str(path), "MODELVC_AUTHOR": "ci-bot",
                    "CI_REVISION": "abc123", "TRAIN_ARGS": ""}
        self.env.pop("MODELVC_SKIP_POSTGRES", None)

    def sh(self, cmd: str, *, author: str | None = None, ok: bool = True,
           **env: str) -> subprocess.CompletedProcess[str]:
        e = {**self.env, **env, **({"MODELVC_AUTHOR": author} if author else {})}
        p = subprocess.run(["bash", "-c", cmd], cwd=self.path, env=e, capture_output=True,
                           text=True, timeout=1800, check=False)  # a hang guard only
        if ok and p.returncode != 0:
            pytest.fail(f"{cmd!r} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def json(self, cmd: str) -> object:
        return json.loads(self.sh(cmd + " --json").stdout)

    def version(self, model: str) -> str:
        return (self.path / "build" / model / "version").read_text().strip()

    def channel(self, model: str, channel: str) -> str | None:
        refs = self.json(f"modelvc refs {model} --kind channel")
        assert isinstance(refs, list)
        return next((r["version_id"] for r in refs if r["name"] == channel), None)


def workflow_steps(model: str) -> list[tuple[str, str]]:
    """(name, command) of the workflow's steps for one matrix entry, as Actions runs them."""
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["release"]
    assert model in job["strategy"]["matrix"]["model"]
    out = []
    for step in job["steps"]:
        if "run" not in step or step["name"] == "Install":  # installed: this venv
            continue
        cond = step.get("if", "")
        if cond.startswith("matrix.model == "):
            if cond.split("==")[1].strip().strip("'") != model:
                continue
        elif cond not in ("", "always()"):
            raise AssertionError(f"the test does not understand `if: {cond}`")
        out.append((step["name"], step["run"].replace("${{ matrix.model }}", model)))
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A CI checkout: the examples in a clean git tree, a registry, the policy applied."""
    shutil.copytree(ROOT / "examples" / "ci", tmp_path / "examples" / "ci")
    r = Repo(tmp_path)
    r.sh("git init -q && git add . && git -c user.name=ci -c user.email=ci@example.com "
         "commit -qm 'training code'")
    r.sh("modelvc init")
    r.sh("modelvc policy apply examples/ci/policy.yaml", author="release-manager")
    return r


def test_workflow_releases_digits_and_tiny_bert(repo: Repo) -> None:
    for model in ("digits", "tiny-bert"):
        steps = workflow_steps(model)
        assert [n for n, _ in steps][:3] == ["Check the policy file", "Train", "Commit"]
        for _, cmd in steps:
            repo.sh(cmd)
        vid = repo.version(model)
        assert repo.channel(model, "production") == vid
        runs = repo.json(f"modelvc gate show {model}@{vid} --channel production")
        assert isinstance(runs, list) and runs[-1]["passed"]
    assert repo.channel("digits", "staging") == repo.version("digits")
    report = repo.json(f"modelvc gate show digits@{repo.version('digits')} --report")
    assert isinstance(report, dict)
    measured = {r["name"]: r["measured"] for r in report["results"]}
    assert measured["latency_p95_ms"] > 0 and measured["params"] > 1000
    assert any(r["gate"] == "eval" and r["measured"]["accuracy"] >= 0.9
               for r in report["results"])
    moves = repo.json("modelvc audit --action promote")
    assert isinstance(moves, list) and {m["actor"] for m in moves} == {"ci-bot"}


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
