"""The CI examples, run for real: every `run:` step of examples/ci/github-actions.yml (the
Jenkinsfile calls the same release.sh) through the real `modelvc` CLI on the digits ONNX
model, in a git repository as a CI checkout would be (the tiny BERT: test_ci_flow_bert)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .ci_repo import Repo, make_repo, released


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


def test_workflow_releases_digits(repo: Repo) -> None:
    released(repo, "digits")
    assert repo.channel("digits", "staging") == repo.version("digits")
    report = repo.json(f"modelvc gate show digits@{repo.version('digits')} --report")
    assert isinstance(report, dict)
    measured = {r["name"]: r["measured"] for r in report["results"]}
    assert measured["latency_p95_ms"] > 0 and measured["params"] > 1000
    assert any(r["gate"] == "eval" and r["measured"]["accuracy"] >= 0.9
               for r in report["results"])
