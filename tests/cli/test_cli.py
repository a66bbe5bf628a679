"""The real `modelvc` command: verbs, --json, exit codes. In this process
(tests/services/clirun.py) but for the tests marked as run as a subprocess, which check
the command as a shell sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_model
from tests.services import clirun

EXE = [sys.executable, "-m", "modelvc.cli.main"]


def run(args: list[str], cwd: Path, *, ok: bool = True, process: bool = False
        ) -> subprocess.CompletedProcess[str]:
    if process:
        env = {**os.environ, "MODELVC_AUTHOR": "cli-tester"}
        env.pop("MODELVC_REGISTRY", None)
        p = subprocess.run([*EXE, *args], cwd=cwd, capture_output=True, text=True, env=env,
                           timeout=120, check=False)
    else:
        p = clirun.run(args, env={"MODELVC_AUTHOR": "cli-tester"}, cwd=cwd)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def js(args: list[str], cwd: Path) -> Any:
    return json.loads(run([*args, "--json"], cwd).stdout)


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    run(["init"], tmp_path)
    base = write_model(tmp_path / "m1.safetensors", 1)
    write_model(tmp_path / "m2.safetensors", 2, base=base)
    return tmp_path


def test_workflow(proj: Path) -> None:
    v1 = js(["commit", "m1.safetensors", "--model", "toy", "-m", "base", "--param", "lr=0.01",
             "--metric", "acc=0.9", "--tag", "first"], proj)
    assert v1["number"] == 1 and v1["params"] == {"lr": 0.01} and v1["metrics"] == {"acc": 0.9}
    assert v1["author"] == "cli-tester"
    v2 = js(["commit", "m2.safetensors", "--model", "toy", "-b", "dev", "--parent", "toy@v1"],
            proj)
    assert v2["parents"] == [v1["id"]]
    # Found from a subfolder, like git.
    sub = proj / "a" / "b"
    sub.mkdir(parents=True)
    assert [v["number"] for v in js(["log", "toy@dev"], sub)] == [2, 1]
    assert "v2" in run(["log", "toy@dev", "--graph"], proj).stdout
    shown = js(["show", "toy@first"], proj)
    assert shown["version"]["id"] == v1["id"] and shown["files"][0]["tensors"] == 5
    assert "metrics  acc=0.9" in run(["show", "toy@v1"], proj).stdout
    d = js(["diff", "toy@v1", "toy@dev"], proj)
    assert len(d["tensors"]) == 4 and d["tensors_unchanged"] == 1
    assert "changed" in run(["diff", "toy@v1", "toy@v2"], proj).stdout
    js(["promote", "toy@v1", "--to", "production", "--create", "-r", "launch"], proj)
    js(["promote", "toy@v2", "--to", "production"], proj)
    back = js(["rollback", "toy", "production", "-r", "regressed"], proj)
    assert back["version_id"] == v1["id"]
    hist = js(["channel", "history", "toy", "production"], proj)
    assert [h["action"] for h in hist] == ["promote", "promote", "rollback"]
    assert hist[2]["reason"] == "regressed" and hist[2]["actor"] == "cli-tester"
    assert [(h["old_number"], h["new_number"]) for h in hist] == [(None, 1), (1, 2), (2, 1)]
    text = run(["channel", "history", "toy", "production"], proj).stdout
    assert "rollback" in text and "v2 -> v1" in text
    at = js(["channel", "history", "toy", "production", "--at", hist[0]["at"]], proj)
    assert at["version"]["id"] == v1["id"]
    refs = {(r["kind"], r["name"]) for r in js(["refs", "toy"], proj)}
    assert refs == {("branch", "main"), ("branch", "dev"), ("tag", "first"),
                    ("channel", "production")}
    co = js(["checkout", "toy@production", "out.safetensors"], proj)
    assert co["files"] == 1
    assert (proj / "out.safetensors").read_bytes() == (proj / "m1.safetensors").read_bytes()
    # Refuses to overwrite without --force.
    again = run(["checkout", "toy@v2", "out.safetensors"], proj, ok=False)
    assert again.returncode == 5 and "--force" in again.stderr
    run(["checkout", "toy@v2", "out.safetensors", "--force"], proj)
    du = js(["du", "toy"], proj)
    assert du["models"]["toy"]["stored"] < du["models"]["toy"]["raw"]
    assert js(["verify"], proj)["ok"] is True
    assert js(["models"], proj) == ["toy"]


def test_commit_says_what_it_skipped(proj: Path) -> None:
    folder = proj / "folder"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref")
    write_model(folder / "model.safetensors", 3)
    out = run(["commit", str(folder), "--model", "s"], proj).stdout
    assert "skipped: .git/ (never stored)" in out
    assert js(["commit", str(folder), "--model", "s"], proj)["skipped"] == [".git/"]
    assert js(["commit", str(proj / "m1.safetensors"), "--model", "t"], proj)["skipped"] == []


def test_gc_and_delete(proj: Path) -> None:
    js(["commit", "m1.safetensors", "--model", "toy"], proj)
    js(["commit", "m2.safetensors", "--model", "toy"], proj)
    js(["branch", "create", "toy", "keep", "--at", "toy@v2"], proj)
    # v1 is still main's parent chain base but main is at v2: delete v1 re-bases v2's deltas.
    res = js(["delete", "toy@v1", "-r", "obsolete"], proj)
    assert res["rebased"] >= 1
    dry = js(["gc", "--grace", "0"], proj)
    assert dry["dry_run"] is True and dry["would_remove"] > 0
    done = js(["gc", "--apply", "--grace", "0"], proj)
    assert done["removed"] == dry["would_remove"]
    assert js(["verify"], proj)["ok"] is True
    run(["checkout", "toy@v2", "o.safetensors"], proj)
    assert (proj / "o.safetensors").read_bytes() == (proj / "m2.safetensors").read_bytes()
    gone = run(["show", "toy@v1"], proj, ok=False)
    assert gone.returncode == 3 and "was deleted" in gone.stderr
    assert [v["number"] for v in js(["log", "toy@keep"], proj)] == [2, 1]  # history stays


@pytest.mark.parametrize(("args", "code", "words"), [
    (["commit", "missing.safetensors", "--model", "toy"], 3, "does not exist"),
    (["commit", "m1.safetensors", "--model", "a/b"], 2, "invalid model name"),
    (["commit", "m1.safetensors", "--model", "toy", "-b", "x y"], 2, "invalid branch"),
    (["show", "toy@nope"], 3, "no version, branch, channel or tag"),
    (["show", "toy@a@b"], 2, "more than one '@'"),
    (["show", "nomodel@v1"], 3, "no model"),
    (["commit", "m1.safetensors", "--model", "toy", "--param", "novalue"], 2, "KEY=VALUE"),
])
def test_errors_exit_codes(proj: Path, args: list[str], code: int, words: str) -> None:
    js(["commit", "m1.safetensors", "--model", "toy"], proj)
    p = run(args, proj, ok=False)
    assert p.returncode == code, p.stderr
    assert words in p.stderr
    pj = run([*args, "--json"], proj, ok=False)
    assert pj.returncode == code
    body = json.loads(pj.stdout)
    assert body["error"] and words in body["message"]


def test_no_registry(tmp_path: Path) -> None:
    """As a subprocess: the exit code and stderr a shell sees."""
    p = run(["log", "toy"], tmp_path, ok=False, process=True)
    assert p.returncode == 3 and "modelvc init" in p.stderr


def test_malformed_safetensors(proj: Path) -> None:
    """As a subprocess: the exit code and stderr a shell sees; nothing recorded."""
    bad = proj / "bad.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"{}")
    p = run(["commit", "bad.safetensors", "--model", "toy"], proj, ok=False, process=True)
    assert p.returncode == 2 and "bad.safetensors" in p.stderr
    assert "Traceback" not in p.stderr
    assert json.loads(run(["models", "--json"], proj, process=True).stdout) == []


def test_commit_says_when_its_files_are_the_parents(proj: Path) -> None:
    run(["commit", "m1.safetensors", "--model", "toy"], proj)
    again = run(["commit", "m1.safetensors", "--model", "toy", "-m", "re-evaluated",
                 "--metric", "acc=0.8"], proj).stdout
    assert again.startswith("toy@v2 ") and again.rstrip().endswith("same files as v1")
    assert js(["commit", "m1.safetensors", "--model", "toy"], proj)["same_files_as"] == "v2"
    changed = js(["commit", "m2.safetensors", "--model", "toy"], proj)
    assert changed["number"] == 4 and changed["same_files_as"] is None
    forked = js(["commit", "m2.safetensors", "--model", "toy2", "--parent", "toy@v4",
                 "--fork"], proj)
    assert forked["same_files_as"] == "toy@v4"


def test_promote_to_the_version_a_channel_holds_says_it_is_a_re_promotion(proj: Path) -> None:
    run(["commit", "m1.safetensors", "--model", "toy"], proj)
    first = run(["promote", "toy@v1", "--to", "production", "--create"], proj).stdout
    assert "already held" not in first
    again = run(["promote", "toy@v1", "--to", "production"], proj).stdout
    assert "production already held v1: recorded as a re-promotion" in again
    moves = js(["channel", "history", "toy", "production"], proj)
    assert [m["action"] for m in moves] == ["promote", "promote"]
