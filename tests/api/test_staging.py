"""Staged checkpoint folders (`Run.submit(folder=...)`): hard links, not reads; a file
rewritten in place is refused; what a stopped process left staged is listed and
recovered (committed once, in order); a background error surfaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from modelvc.api import staging
from modelvc.errors import InvalidName, UsageError
from modelvc.formats.memory import tensor_bytes
from modelvc.registry import Registry


def _save(folder: Path, step: int) -> Path:
    """A checkpoint folder as a framework writes it (a new folder per step)."""
    folder.mkdir(parents=True)
    w = np.arange(4096, dtype=np.float32) * (1 + step / 100)
    (folder / "model.safetensors").write_bytes(tensor_bytes({"w": w}))
    (folder / "sub").mkdir()
    (folder / "sub" / "state.json").write_text(json.dumps({"global_step": step}))
    return folder


def _steps(reg: Registry, ref: str) -> list[int]:
    return [v.metrics["step"] for v in reg.log(ref)]


def test_staging_links_and_the_commit_holds_the_step(reg: Registry, tmp_path: Path) -> None:
    with reg.run(model="m", branch="b", best="loss") as r:
        for step in (1, 2, 3):
            folder = _save(tmp_path / "out" / f"checkpoint-{step}", step)
            r.submit(folder=folder, step=step, metrics={"loss": 1 / step})
            root = staging.root_for(reg, folder)
            assert root == Path(reg.location) / "staging"
            # The Trainer's rotation: the folder goes right away; the links keep it.
            for p in (folder / "model.safetensors", folder / "sub" / "state.json"):
                p.unlink()
            (folder / "sub").rmdir()
            folder.rmdir()
    assert _steps(reg, "m@b") == [3, 2, 1]
    assert reg.resolve("m@b-best").metrics["step"] == 3
    for step in (1, 2, 3):
        out = tmp_path / f"co-{step}"
        reg.checkout(f"m@v{step}", out)
        assert json.loads((out / "sub" / "state.json").read_text())["global_step"] == step
    assert staging.pending(root) == [] and list(root.iterdir()) == []


def test_stage_is_a_hard_link(tmp_path: Path) -> None:
    folder = _save(tmp_path / "ck", 1)
    s = staging.stage(folder, tmp_path / "st", "r-000000", {"model": "m"})
    assert os.path.samefile(s.files / "model.safetensors", folder / "model.safetensors")
    assert [p.path.name for p in staging.pending(tmp_path / "st")] == ["r-000000"]


def test_a_file_rewritten_in_place_is_refused_and_stays_staged(
        reg: Registry, tmp_path: Path) -> None:
    folder = _save(tmp_path / "ck", 1)
    s = staging.stage(folder, tmp_path / "st", "r-000000",
                      {"model": "m", "branch": "b", "metrics": {"step": 1}})
    # save_pretrained into the same folder again: same inode, new bytes
    with open(folder / "model.safetensors", "r+b") as f:
        f.write(tensor_bytes({"w": np.ones(4096, np.float32)}))
    os.utime(folder / "model.safetensors", ns=(1, 1))
    with pytest.raises(staging.StagedChanged, match="rewritten in place"):
        staging.commit_staged(reg, s)
    assert reg.models() == [] or reg.versions("m") == []
    assert [p.path for p in staging.pending(tmp_path / "st")] == [s.path]


def test_a_background_error_surfaces_and_later_steps_stay_staged(
        reg: Registry, tmp_path: Path) -> None:
    """A real error in the background commit (a model name the registry refuses) is
    raised by the next call, not swallowed; nothing after it is committed out of order."""
    r = reg.run(model="bad/name", branch="b")
    f1 = r.submit(folder=_save(tmp_path / "c1", 1), step=1)
    assert isinstance(f1.exception(), InvalidName)
    with pytest.raises(InvalidName) as err:
        r.submit(folder=_save(tmp_path / "c2", 2), step=2)
    assert any("stays staged" in n for n in getattr(err.value, "__notes__", []))
    with pytest.raises(InvalidName):
        r.finish()
    with pytest.raises(InvalidName), r:
        pass
    root = staging.root_for(reg, tmp_path / "c1")
    assert [s.step for s in staging.pending(root)] == [1]


def test_a_crash_loses_nothing_acknowledged_and_recover_commits_the_rest(
        reg: Registry, tmp_path: Path) -> None:
    """A process submits 4 checkpoints and dies (os._exit) right after the last submit:
    the versions its futures gave are recorded; what was not committed is staged, and
    recover commits it once, in step order."""
    child = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from tests.api.test_staging import _save
        from pathlib import Path
        from modelvc.registry import Registry
        reg = Registry.open({reg.location!r})
        r = reg.run(model="m", branch="b", max_pending=4)
        futs = [r.submit(folder=_save(Path({str(tmp_path)!r}) / f"c{{s}}", s), step=s)
                for s in (1, 2, 3, 4)]
        done = [f.result().metrics["step"] for f in futs if f.done() and not f.exception()]
        print(json.dumps(done), flush=True)
        os._exit(3)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 3, out.stderr
    acknowledged = json.loads(out.stdout.strip().splitlines()[-1])
    committed = sorted(_steps(reg, "m@b")) if reg.models() else []
    assert set(acknowledged) <= set(committed)
    root = Path(reg.location) / "staging"
    left = [s.step for s in staging.pending(root)]
    assert sorted(committed + left) == [1, 2, 3, 4]  # each step once: committed or staged
    if left:  # the same run id again: its names stay clear of what the crash left
        run_id = staging.pending(root)[0].commit["lineage"]["run"]["id"]
        with pytest.warns(UserWarning, match="never committed"), \
                reg.run(model="m", branch="other", run_id=run_id) as r2:
            r2.submit(folder=_save(tmp_path / "c9", 9), step=9)
    other = Registry.init(tmp_path / "other")
    if left:
        with pytest.raises(UsageError, match="staged for the registry"):
            staging.recover(other, root)
    other.close()
    recovered = staging.recover(reg, root)
    assert [v.metrics["step"] for v in recovered] == left
    assert _steps(reg, "m@b") == [4, 3, 2, 1]
    assert staging.pending(root) == []


def test_recover_does_not_commit_twice_what_was_recorded_before_the_stop(
        reg: Registry, tmp_path: Path) -> None:
    """A process stopped between recording a staged checkpoint's version and removing
    the entry: recover removes the entry and gives that version, committing nothing."""
    root = tmp_path / "st"
    kwargs = {"model": "m", "branch": "b", "metrics": {"step": 1},
              "lineage": {"run": {"id": "r", "step": 1}}}
    s = staging.stage(_save(tmp_path / "c1", 1), root, "r-000001-1", kwargs, reg.location)
    v = reg.commit(s.files, **kwargs)  # recorded; the entry stays (the stop)
    assert [x.id for x in staging.recover(reg, root)] == [v.id]
    assert _steps(reg, "m@b") == [1] and staging.pending(root) == []
