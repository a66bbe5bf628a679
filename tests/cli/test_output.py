"""Human output of the real CLI: JSON-style values (never Python reprs) in diff and
audit, and audit columns that stay aligned whatever the actors' names."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import EXE, run
from tests.conftest import write_model


def _as(author: str, args: list[str], cwd: Path) -> str:
    env = {**os.environ, "MODELVC_AUTHOR": author}
    env.pop("MODELVC_REGISTRY", None)
    p = subprocess.run([*EXE, *args], cwd=cwd, capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_diff_shows_values_as_json(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    d = tmp_path / "m"
    d.mkdir()
    write_model(d / "model.safetensors", 1)
    (d / "config.json").write_text(json.dumps({"act": "gelu", "drop": None, "n": 3}))
    run(["commit", "m", "--model", "t", "--param", "name=base", "--param", "lr=0.1"], tmp_path)
    (d / "config.json").write_text(json.dumps({"act": "relu", "n": 4, "extra": True}))
    run(["commit", "m", "--model", "t", "--param", "lr=0.2", "--metric", "acc=0.9"], tmp_path)
    out = run(["diff", "t@v1", "t@v2", "--no-numeric"], tmp_path).stdout
    assert "None" not in out and "'" not in out and "True" not in out, out
    lines = [ln.split() for ln in out.splitlines()]
    assert ["act", '"gelu"', "->", '"relu"'] in lines
    assert ["drop", "null", "->", "(absent)"] in lines
    assert ["extra", "(absent)", "->", "true"] in lines
    assert ["name", '"base"', "->", "(absent)"] in lines
    assert ["acc", "(absent)", "->", "0.9"] in lines


def test_audit_columns_and_values(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    write_model(tmp_path / "a.safetensors", 1)
    long_name = "release-automation-service-account@example.com"
    _as("al", ["commit", "a.safetensors", "--model", "t"], tmp_path)
    _as(long_name, ["promote", "t@v1", "--to", "production", "--create", "-r", "go"], tmp_path)
    _as("bo", ["tag", "t@v1", "first"], tmp_path)
    out = _as("al", ["audit"], tmp_path)
    assert "None" not in out, out
    lines = out.splitlines()
    rows = [r for r in lines if not r.startswith(" " * 6)]  # the reasons go under them
    assert len(rows) == 3 and "      go" in lines, out
    # The target column starts at the same place on every row, after the longest actor.
    starts = {r.index("  t@") for r in rows}
    assert len(starts) == 1, out
    # ... and fit 80 columns: a long actor is cut (--json has it whole).
    assert max(map(len, lines)) <= 80 and "release-automatio..." in out, out
    assert rows[0].split()[3:8] == ["al", "commit", "-", "->", "v1"], rows[0]
    # Filters that match nothing say so (an empty screen read as a broken filter).
    env = {**os.environ, "MODELVC_AUTHOR": "al"}
    env.pop("MODELVC_REGISTRY", None)
    p = subprocess.run([*EXE, "audit", "--action", "nosuch"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert (p.returncode, p.stdout) == (0, ""), p.stderr
    assert "no audit entries match --action nosuch" in p.stderr
    p = subprocess.run([*EXE, "audit", "--model", "tt"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert "no model 'tt' in this registry; did you mean 't'?" in p.stderr, p.stderr
    assert json.loads(run(["audit", "--action", "nosuch", "--json"], tmp_path).stdout) == []


def test_log_marks_a_deleted_ancestor(tmp_path: Path) -> None:
    """`log` still lists a deleted ancestor of REF (its children stand alone); the line
    says it was deleted (it looked like any live version, whose files check out)."""
    run(["init"], tmp_path)
    for seed in (1, 2):
        write_model(tmp_path / "model.safetensors", seed)
        run(["commit", "model.safetensors", "--model", "t"], tmp_path)
    run(["delete", "t@v1"], tmp_path)
    lines = run(["log", "t"], tmp_path).stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["v2", "v1"], lines
    assert "[deleted " in lines[1] and "deleted" not in lines[0], lines


def test_a_transfer_summary_says_what_a_resume_did_not_send_again(
        capsys: pytest.CaptureFixture[str]) -> None:
    from modelvc.cli.transfer_cmds import _summary
    from modelvc.transfer.engine import TransferResult

    r = TransferResult(objects_sent=2, bytes_sent=88_800_000, bytes_resumed=80_000_000)
    _summary("pushed", r)
    out = capsys.readouterr().out
    assert "88.8 MB sent (80.0 MB of it held from an interrupted transfer, not sent" in out
    _summary("pushed", TransferResult(objects_sent=1, bytes_sent=1000))
    assert "interrupted" not in capsys.readouterr().out


def test_token_list_says_which_tokens_are_capped(tmp_path: Path) -> None:
    """Every uncapped token read as admin:* (how it is stored), a reader's too."""
    run(["init"], tmp_path)
    run(["token", "create", "plain", "--subject", "bob"], tmp_path)
    run(["token", "create", "ci", "--subject", "ci", "--scope", "reader"], tmp_path)
    lines = run(["token", "list"], tmp_path).stdout.splitlines()
    [plain] = [ln for ln in lines if " plain " in ln]
    [ci] = [ln for ln in lines if " ci " in ln]
    assert plain.endswith("no cap (the subject's roles)") and "admin" not in plain, plain
    assert ci.endswith("capped to reader:*"), ci
