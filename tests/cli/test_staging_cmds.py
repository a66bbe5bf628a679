"""`modelvc staging list / recover / drop`: a training process killed with SIGKILL after
staging its checkpoints leaves them staged; list shows them (its process stopped),
recover commits them in step order (audited commits), drop deletes one with a reason
(audited staging-drop); refusals say what to do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from modelvc.registry import Registry
from tests.api.test_staging import _steps
from tests.services import clirun


def mvc(args: list[str], cwd: Path, *, code: int = 0) -> subprocess.CompletedProcess[str]:
    p = clirun.run(args, env={"MODELVC_AUTHOR": "cli-tester"}, cwd=cwd)
    assert p.returncode == code, p.stderr
    return p


def js(args: list[str], cwd: Path) -> Any:
    return json.loads(mvc([*args, "--json"], cwd).stdout)


def _killed_after_staging(reg: Registry, tmp_path: Path, steps: list[int]) -> None:
    """A training process stages STEPS (as run.submit(folder=...) does before its
    commit) and is killed with SIGKILL before any commit."""
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from pathlib import Path
        from tests.api.test_staging import _save
        from modelvc.api import staging
        root, tmp = Path({reg.location!r}) / "staging", Path({str(tmp_path)!r})
        for s in {steps!r}:
            staging.stage(_save(tmp / f"c{{s}}", s), root, f"run1-{{s:06d}}-1",
                          {{"model": "m", "branch": "b", "metrics": {{"step": s}},
                           "lineage": {{"run": {{"id": "run1", "step": s}}}}}},
                          {reg.location!r})
        print("staged", flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "staged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_list_recover_and_drop_what_a_killed_run_left(reg: Registry, tmp_path: Path) -> None:
    cwd = Path(reg.location).parent
    assert js(["staging", "list"], cwd) == []
    _killed_after_staging(reg, tmp_path, [1, 2, 3])
    rows = js(["staging", "list"], cwd)
    assert [(r["model"], r["branch"], r["step"], r["running"]) for r in rows] == [
        ("m", "b", 1, False), ("m", "b", 2, False), ("m", "b", 3, False)]
    assert rows[0]["files"] == ["model.safetensors", "sub/state.json"] and rows[0]["bytes"] > 0
    assert "m@b step 2" in mvc(["staging", "list"], cwd).stdout

    # drop: named entries or --all, a reason, nothing unknown
    assert "name the entries" in mvc(["staging", "drop", "--reason", "x"], cwd, code=2).stderr
    assert "not staged: nope" in mvc(["staging", "drop", "nope", "--reason", "x"], cwd,
                                     code=2).stderr
    dropped = js(["staging", "drop", rows[2]["entry"], "--reason", "diverged"], cwd)
    assert [r["step"] for r in dropped] == [3]
    audit = reg.audit(action="staging-drop")
    assert [(a.actor, a.target, a.reason) for a in audit] == [("cli-tester", "m@b", "diverged")]

    recovered = js(["staging", "recover"], cwd)
    assert [(r["model"], r["number"], r["step"]) for r in recovered] == [("m", 1, 1), ("m", 2, 2)]
    assert _steps(reg, "m@b") == [2, 1]
    assert [(a.actor, a.target) for a in reg.audit(action="commit")] == [("cli-tester", "m@b")] * 2
    assert js(["staging", "list"], cwd) == []
    assert "nothing to recover" in mvc(["staging", "recover"], cwd).stdout


def test_a_server_registry_needs_the_folder(tmp_path: Path) -> None:
    p = clirun.run(["--registry", "http://127.0.0.1:9", "staging", "list"], cwd=tmp_path)
    assert p.returncode == 2 and "pass that folder" in p.stderr
