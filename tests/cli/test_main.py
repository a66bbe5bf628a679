"""`modelvc.cli.main.main(args)` in process: errors as JSON when the arguments ask for
--json, whatever sys.argv holds (it read sys.argv, so an in-process call ignored --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelvc.cli.main import main
from modelvc.registry import Registry


@pytest.mark.parametrize(("args", "code", "error"), [
    (["show", "m@v1", "--json"], 3, "ModelNotFound"),
    (["show", "--json", "--no-such-option"], 2, "UsageError"),
    (["no-such-command", "--json"], 2, "UsageError"),
])
def test_errors_as_json_from_the_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, args: list[str],
                                           code: int, error: str) -> None:
    Registry.init(tmp_path / "repo").close()
    monkeypatch.setattr("sys.argv", ["pytest"])  # nothing to find there
    with pytest.raises(SystemExit) as done:
        main(["--registry", str(tmp_path / "repo"), *args])
    assert done.value.code == code
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == error and out["message"]


def test_text_errors_without_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    Registry.init(tmp_path / "repo").close()
    monkeypatch.setattr("sys.argv", ["modelvc", "--json"])  # not these arguments
    with pytest.raises(SystemExit) as done:
        main(["--registry", str(tmp_path / "repo"), "show", "m@v1"])
    assert done.value.code == 3
    seen = capsys.readouterr()
    assert seen.out == "" and seen.err.startswith("error: ")
