"""What a recipe is, and where recipes come from (the `modelvc.recipes` entry points).

A recipe is a small class: a name, a version (bump it when its output changes), whether
it is deterministic (a re-run gives the same bytes), the tolerance a re-run may differ
by when it is not, the packages whose versions it records, and `apply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import NotFound, UsageError

GROUP = "modelvc.recipes"
# The recipes modelvc ships, also declared under GROUP in pyproject.toml; listed here too
# so they work from a source tree whose entry points are not installed.
BUILTIN = {"cast": "modelvc.derive.cast:Cast", "prune": "modelvc.derive.prune:Prune",
           "quantize-dynamic": "modelvc.derive.quantize:QuantizeDynamic",
           "onnx-export": "modelvc.derive.export:OnnxExport"}


@dataclass
class Applied:
    """What `apply` reports: statistics worth recording (per tensor and overall) and the
    bound the output keeps against the source, elementwise |out - src| <= atol + rtol*|src|
    on every tensor it changed (the tests and `derive --check` hold it to that)."""

    stats: dict[str, Any] = field(default_factory=dict)
    rtol: float = 0.0
    atol: float = 0.0


@runtime_checkable
class Recipe(Protocol):
    name: str
    version: str
    deterministic: bool
    tolerance: float  # --check: max |difference| a re-run may show (0 when deterministic)
    tools: tuple[str, ...]  # distributions whose versions are recorded

    def params(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """Parse and check KEY=VALUE strings; the result, defaults filled in, is recorded
        (UsageError on an unknown key or a bad value)."""
        ...

    def apply(self, files_dir: Path, params: Mapping[str, Any], out_dir: Path) -> Applied:
        """Write the derived model's files into out_dir (empty, existing) from the
        source's files in files_dir (read only)."""
        ...


def _entry_points() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in metadata.entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def names() -> list[str]:
    """Every recipe available in this process, sorted."""
    return sorted(_entry_points())


def load(name: str) -> Recipe:
    """An instance of the recipe registered as NAME."""
    target = _entry_points().get(name)
    if target is None:
        raise NotFound(f"no recipe named {name!r}",
                       hint=f"available: {', '.join(names())}; a package adds one under the "
                            f"{GROUP!r} entry point group (docs/derive.md)")
    obj = metadata.EntryPoint(name=name, value=target, group=GROUP).load()
    recipe = obj() if isinstance(obj, type) else obj
    if not isinstance(recipe, Recipe) or recipe.name != name:
        raise UsageError(f"entry point {name!r} ({target}) is not a recipe named {name!r}",
                         hint="a recipe has name, version, deterministic, tolerance, tools, "
                              "params() and apply() (docs/derive.md)")
    return recipe


def versions_of(tools: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the recipe's tools (and modelvc), for the record."""
    out = {}
    for dist in ("modelvc", *tools):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def parse_kv(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--param k=v` strings as a dict (UsageError on a malformed or repeated one)."""
    out: dict[str, str] = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise UsageError(f"--param {p!r} is not KEY=VALUE", hint="e.g. --param dtype=bf16")
        if key in out:
            raise UsageError(f"--param {key} given twice")
        out[key] = value
    return out


def unknown(raw: Mapping[str, str], known: tuple[str, ...], recipe: str) -> None:
    extra = sorted(set(raw) - set(known))
    if extra:
        raise UsageError(f"recipe {recipe!r} has no parameter {', '.join(extra)}",
                         hint=f"its parameters: {', '.join(known)}")
