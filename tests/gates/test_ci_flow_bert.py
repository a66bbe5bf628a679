"""The CI workflow (examples/ci/github-actions.yml) for the tiny BERT, in a module of its
own so that xdist runs it beside the digits one (test_ci_flow.py)."""

from __future__ import annotations

from pathlib import Path

from .ci_repo import make_repo, released


def test_workflow_releases_tiny_bert(tmp_path: Path) -> None:
    released(make_repo(tmp_path), "tiny-bert")
