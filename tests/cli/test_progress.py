"""Progress bars of the real CLI (forced on with MODELVC_PROGRESS=1, as on a terminal):
they move while a big tensor is hashed and encoded, each redraw erases the previous one,
and gc and diff have one too."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from modelvc.registry import Registry
from tests.faults import faultkit as fk

ERASE = "\x1b[K"


def _cli(reg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**fk.env(), "MODELVC_PROGRESS": "1"}
    done = subprocess.run([*fk.modelvc_exe(), "--registry", str(reg), *args],
                          capture_output=True, env=env, timeout=600, check=False)
    # Bytes, decoded here: text mode would turn the bar's CRs into newlines.
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def _draws(stderr: str) -> list[str]:
    """The bar's redraws: each starts with CR and must end with ESC [K."""
    parts = [p for p in stderr.split("\r") if p]
    assert parts and parts[-1] == ERASE, repr(stderr[-200:])  # close() erased the bar
    for p in parts:
        assert p.endswith(ERASE), repr(p)
    return [p[: -len(ERASE)] for p in parts[:-1]]


def _percents(draws: list[str]) -> list[int]:
    return [int(m.group(1)) for d in draws if (m := re.search(r"\]\s+(\d+)%", d))]


def test_commit_bar_moves_inside_one_big_tensor(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    Registry.init(reg).close()
    path = tmp_path / "big.safetensors"
    # One 256 MB tensor: it streams (hashed, then encoded, block by block); the bar used
    # to sit at 0% until the whole tensor was stored.
    w = np.random.default_rng(1).standard_normal((8192, 8192)).astype(np.float32)
    save_file({"w": w}, str(path))
    del w
    done = _cli(reg, "commit", str(path), "--model", "big")
    assert done.returncode == 0, done.stderr
    draws = _draws(done.stderr)
    pct = _percents(draws)
    assert pct == sorted(pct), pct  # never goes back
    inside = {p for p in pct if 5 <= p <= 95}
    assert len(inside) >= 2, draws
    assert not any("/s/s" in d for d in draws)
    assert re.match(r"big@v1 [0-9a-f]{12} ", done.stdout), done.stdout


def test_gc_and_diff_have_bars(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    Registry.init(reg).close()
    a = fk.tensors(1)
    for i, arrays in enumerate((a, fk.tensors(2, a))):
        fk.write_model(tmp_path / f"m{i}.safetensors", arrays)
        assert fk.cli_here(reg, "commit", str(tmp_path / f"m{i}.safetensors"), "--model",
                      "m").returncode == 0
    diff = _cli(reg, "diff", "m@v1", "m@v2")
    assert diff.returncode == 0, diff.stderr
    draws = _draws(diff.stderr)
    assert draws and draws[-1].startswith("diff m@v1 m@v2 [") and " 100% " in draws[-1]
    assert diff.stdout.startswith("--- m@v1\n")
    gc = _cli(reg, "gc")
    assert gc.returncode == 0, gc.stderr
    draws = _draws(gc.stderr)
    assert draws and re.search(r" 100% (\d+)/\1 objects$", draws[-1]), draws
    # --json never draws.
    assert _cli(reg, "gc", "--json").stderr == ""


def test_verify_has_a_bar_in_decoded_bytes_and_json_stays_clean(tmp_path: Path) -> None:
    """Issue 11.4: verify shows progress (decoded bytes, so a big tensor moves it;
    per-block calls are tests/test_storage.py's), and never with --json."""
    reg = tmp_path / "reg"
    Registry.init(reg).close()
    fk.write_model(tmp_path / "m.safetensors", fk.tensors(1, scale=16))
    done = fk.cli_here(reg, "commit", str(tmp_path / "m.safetensors"), "--model", "m")
    assert done.returncode == 0, done.stderr
    done = _cli(reg, "verify")
    assert done.returncode == 0, done.stderr
    draws = _draws(done.stderr)
    assert draws and draws[-1].startswith("verify [") and " 100% " in draws[-1], draws
    pct = _percents(draws)
    assert pct == sorted(pct), pct
    assert re.match(r"checked \d+ objects \(.* decoded\) of 1 version: ok", done.stdout)
    quiet = _cli(reg, "verify", "--json")
    assert quiet.stderr == "" and json.loads(quiet.stdout)["versions"] == 1
