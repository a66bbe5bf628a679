"""The ONNX runtime: a version's optimized graph kept for its next load answers exactly
as the original does, a damaged one is ignored, large models keep none, and close()
frees the native session at once (in the thread that frees the version)."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest

from modelvc.serving.runtimes import RuntimeClosed, onnx
from modelvc.serving.runtimes.onnx import OnnxRuntime

from ..conftest import Digits


def _model(tmp_path: Path, data: bytes) -> Path:
    folder = tmp_path / "version"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(data)
    return folder / "model.onnx"


def _same(a: OnnxRuntime, b: OnnxRuntime, x: np.ndarray) -> None:
    want, got = a.predict({"X": x}, []), b.predict({"X": x}, [])
    assert sorted(want) == sorted(got) == ["label", "probabilities"]
    for name in want:
        assert np.array_equal(want[name], got[name]), name


@pytest.mark.parametrize("which", ["good", "better"])
def test_reload_uses_the_kept_optimized_graph_and_answers_the_same(
        digits: Digits, tmp_path: Path, which: str) -> None:
    path = _model(tmp_path, getattr(digits, which))
    kept = tmp_path / "optimized" / "v1.onnx"
    plain = OnnxRuntime(path)
    first = OnnxRuntime(path, optimized=kept)
    assert not first.reused_optimized and kept.exists()
    assert [p.name for p in kept.parent.iterdir()] == ["v1.onnx"]  # no partial left
    again = OnnxRuntime(path, optimized=kept)
    assert again.reused_optimized
    assert again.inputs == plain.inputs and again.outputs == plain.outputs
    for rt in (first, again):
        _same(plain, rt, digits.x[:1])
        _same(plain, rt, digits.x[:64])


def test_damaged_optimized_graph_is_ignored_and_replaced(
        digits: Digits, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _model(tmp_path, digits.better)
    kept = tmp_path / "optimized" / "v1.onnx"
    kept.parent.mkdir()
    kept.write_bytes(b"not an onnx graph")
    rt = OnnxRuntime(path, optimized=kept)
    assert not rt.reused_optimized
    assert "ignoring the cached optimized graph" in caplog.text
    _same(OnnxRuntime(path), rt, digits.x[:16])
    assert OnnxRuntime(path, optimized=kept).reused_optimized  # written anew


def test_large_model_keeps_no_optimized_graph(
        digits: Digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _model(tmp_path, digits.better)
    monkeypatch.setattr(onnx, "OPTIMIZED_MAX_BYTES", len(digits.better) - 1)
    kept = tmp_path / "optimized" / "v1.onnx"
    rt = OnnxRuntime(path, optimized=kept)
    assert not kept.exists() and not rt.reused_optimized
    _same(OnnxRuntime(path), rt, digits.x[:4])


def test_close_frees_the_native_session_at_once(digits: Digits, tmp_path: Path) -> None:
    rt = OnnxRuntime(_model(tmp_path, digits.good))
    native = weakref.ref(rt._sess._sess)
    rt.predict({"X": digits.x[:1]}, [])
    rt.close()
    assert native() is None  # not when the last reference to `rt` drops, wherever


def test_predict_after_close_is_an_internal_error_not_an_attribute_error(
        digits: Digits, tmp_path: Path) -> None:
    # The pool never routes to a freed version; should that break, say so plainly.
    rt = OnnxRuntime(_model(tmp_path, digits.good))
    rt.close()
    with pytest.raises(RuntimeClosed, match="internal error: this version was already "
                                             "unloaded") as got:
        rt.predict({"X": digits.x[:1]}, [])
    assert "_sess" not in str(got.value) and got.value.__cause__ is None
