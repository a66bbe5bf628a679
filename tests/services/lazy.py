"""A heavy module (torch, transformers, mlflow) imported on first use, not at collection.

Every xdist worker imports every test module when it collects, so a module-level
`import torch` costs each worker ~1.7 s of CPU (mlflow ~1.5 s, transformers and
accelerate ~0.8 s more) whether or not it runs a test that needs it. `torch =
lazy("torch")` imports it the first time a test reads an attribute, and skips that test
(as `pytest.importorskip` at module level skipped the module) if it is not installed.
Names starting with "_" are not passed on: pytest probes every module global for some
(`_mock_name`, `__test__`), and that must not import the module.
"""

from __future__ import annotations

import types
from typing import Any

import pytest


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: types.ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # what collection probes (_mock_name, __test__...): no import
            raise AttributeError(attr)
        if self._module is None:
            self._module = pytest.importorskip(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (imported)'}>"


def lazy(name: str) -> Any:
    return LazyModule(name)
