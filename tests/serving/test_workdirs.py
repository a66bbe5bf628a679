"""Gateway work folders (serving/workdirs.py): a folder is removed only once its
gateway is gone, whichever way it went; a live one's, and folders without a lock, stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelvc.serving.workdirs import PREFIX, Workdir, sweep

HOLD = ("import sys, time\nfrom modelvc.serving.workdirs import Workdir\n"
        "w = Workdir(sys.argv[1])\n(w.path / 'model.onnx').write_bytes(b'x')\n"
        "print(w.path, flush=True)\ntime.sleep(600)\n")


def _holder(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(parent)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_only_the_folders_of_gone_gateways_are_swept(tmp_path: Path) -> None:
    dead, dead_dir = _holder(tmp_path)
    live, live_dir = _holder(tmp_path)
    try:
        dead.kill()
        dead.wait()
        older = tmp_path / f"{PREFIX}older"  # no lock: an older modelvc's, or starting
        older.mkdir()
        other = tmp_path / "modelvc-something-else"
        other.mkdir()
        assert (dead_dir / "model.onnx").exists()
        assert sweep(str(tmp_path)) == [dead_dir]
        assert not dead_dir.exists()
        assert live_dir.exists() and older.exists() and other.exists()
        assert sweep(str(tmp_path)) == []
    finally:
        live.kill()
        live.wait()
    assert sweep(str(tmp_path)) == [live_dir]


def test_a_folder_removed_by_its_own_gateway(tmp_path: Path) -> None:
    w = Workdir(str(tmp_path))
    assert (w.path / ".lock").exists() and not (w.path / ".lock.partial").exists()
    assert sweep(str(tmp_path)) == []  # held by this process
    w.remove()
    assert not w.path.exists()
    w.remove()  # twice: nothing more to do
