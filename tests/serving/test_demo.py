"""`modelvc demo`: the whole story on the embedded default, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MODELVC = [sys.executable, "-m", "modelvc.cli.main"]


def test_demo_promotes_the_good_canary_and_rolls_back_the_broken_one(tmp_path: Path) -> None:
    out = subprocess.run([*MODELVC, "demo", "--json", "--dir", str(tmp_path / "d")],
                         capture_output=True, text=True, check=False, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["promoted_v2"] and doc["rolled_back_v3"]
    assert (doc["production"], doc["canary"]) == ("digits@v2", "digits@v2")
    assert doc["requests_failed"] == 0 and doc["requests_ok"] > 100
    auto = [h for h in doc["history"] if h["actor"] == "modelvc-serve"]
    assert [(h["channel"], h["action"], h["to"]) for h in auto] == [
        ("production", "promote", "v2"), ("canary", "rollback", "v2")]
    served = {r["version"]: r for r in doc["versions"]}
    assert served[3]["requests"] > 0 and served[3]["errors"] == 0
    # The registry stays behind for the usual commands.
    hist = subprocess.run([*MODELVC, "--registry", doc["registry"], "channel", "history",
                           "digits", "canary", "--json"],
                          capture_output=True, text=True, check=False)
    assert hist.returncode == 0, hist.stderr
    assert "canary policy" in hist.stdout
    # A bare NAME is the main branch head: the demo leaves it at v2 (what production
    # serves); the broken v3 sits on its own branch.
    head = subprocess.run([*MODELVC, "--registry", doc["registry"], "show", "digits", "--json"],
                          capture_output=True, text=True, check=False)
    assert head.returncode == 0, head.stderr
    assert json.loads(head.stdout)["version"]["number"] == 2
    # The commands it prints work as printed in a newcomer's shell: no venv on PATH, no
    # MODELVC_REGISTRY, another folder.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELVC_")}
    env["PATH"] = "/usr/bin:/bin"
    assert len(doc["explore"]) >= 4
    for line in doc["explore"]:
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env,
                              cwd=tmp_path, check=False, timeout=120)
        assert done.returncode == 0, (line, done.stderr)
        assert done.stdout.strip(), line
    graph = subprocess.run(["bash", "-c", doc["explore"][0]], capture_output=True, text=True,
                           env=env, cwd=tmp_path, check=False).stdout
    assert "new exporter (new-exporter)" in graph and "main" in graph, graph
