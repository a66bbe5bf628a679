"""Python source parsed once per test process: the layer and reach-through checks
(tests/test_layers.py, tests/test_private.py) walk the whole package several times, the
planted-violation tests on copies that differ from it in one file (~5 s of CPU a walk
when each parsed every file again). The trees are shared: callers only read them."""

from __future__ import annotations

import ast
import functools


@functools.cache
def parse(text: str) -> ast.Module:
    return ast.parse(text)
