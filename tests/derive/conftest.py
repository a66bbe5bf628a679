"""MiniLM (the real all-MiniLM-L6-v2 safetensors, F32) committed once per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from modelvc.api import Version
from modelvc.registry import Registry
from tests.conftest import MINILM


@pytest.fixture
def minilm(reg: Registry) -> Version:
    return reg.commit(MINILM, model="minilm", message="as shipped")


@pytest.fixture(scope="session")
def source_tensors() -> dict[str, np.ndarray]:
    return load_file(str(MINILM / "model.safetensors"))


def checkout(reg: Registry, ref: str, dest: Path) -> Path:
    reg.checkout(ref, dest)
    return dest


from tests.gates.conftest import digits  # noqa: E402, F401  (the digits MLP, ONNX)
