"""A CI checkout for the tests that run the CI examples for real (test_ci_flow*.py: one
module per model, so xdist's loadscope runs them on different workers): the examples in
a git tree, a registry with the policy applied, and the workflow's steps as Actions
runs them."""

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


def make_repo(tmp_path: Path) -> Repo:
    """A CI checkout: the examples in a clean git tree, a registry, the policy applied."""
    shutil.copytree(ROOT / "examples" / "ci", tmp_path / "examples" / "ci")
    r = Repo(tmp_path)
    r.sh("git init -q && git add . && git -c user.name=ci -c user.email=ci@example.com "
         "commit -qm 'training code'")
    r.sh("modelvc init")
    r.sh("modelvc policy apply examples/ci/policy.yaml", author="release-manager")
    return r


def released(repo: Repo, model: str) -> None:
    """Every step of the workflow for MODEL; its version is then in production."""
    steps = workflow_steps(model)
    assert [n for n, _ in steps][:3] == ["Check the policy file", "Train", "Commit"]
    for _, cmd in steps:
        repo.sh(cmd)
    vid = repo.version(model)
    assert repo.channel(model, "production") == vid
    runs = repo.json(f"modelvc gate show {model}@{vid} --channel production")
    assert isinstance(runs, list) and runs[-1]["passed"]
    moves = repo.json("modelvc audit --action promote")
    assert isinstance(moves, list) and {m["actor"] for m in moves} == {"ci-bot"}
