"""Derive a version from a stored one by a recipe, and check a derived version by
making it again. Built on the public Registry API only: it works the same on an
embedded registry and over a server."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..api import RegistryAPI, Version
from ..errors import AlreadyExists, RefMoved, UsageError
from . import tensors
from .recipe import Recipe, load, versions_of


@dataclass(frozen=True)
class Derived:
    version: Version
    derived_from: dict[str, Any]


@dataclass
class FileCheck:
    path: str
    status: str  # same | within-tolerance | differs | missing | extra
    max_abs: float | None = None


@dataclass
class CheckResult:
    version: str  # model@vN
    source: str  # model@vN of derived_from.version
    recipe: str
    deterministic: bool
    recorded_recipe_version: str
    installed_recipe_version: str
    ok: bool
    files: list[FileCheck] = field(default_factory=list)
    tag: str | None = None  # the tag that records the result (None: not recorded)


def _label(v: Version) -> str:
    return f"{v.model}@v{v.number}"


def _apply(reg: RegistryAPI, source: Version, recipe: Recipe, params: Mapping[str, Any],
           work: Path) -> tuple[Path, Any]:
    src, out = work / "src", work / "out"
    reg.checkout(f"{source.model}@{source.id}", src)
    out.mkdir()
    return out, recipe.apply(src, params, out)


def derive(reg: RegistryAPI, source: str, recipe_name: str, *, to: str,
           params: Mapping[str, str] | None = None, message: str = "") -> Derived:
    """Run RECIPE on the version SOURCE names and commit the result on branch TO of the
    same model, with the source as its parent and `derived_from` in its lineage."""
    recipe = load(recipe_name)
    parsed = recipe.params(dict(params or {}))
    v = reg.resolve(source)
    _check_branch(reg, v, recipe.name, parsed, to)  # before the work, not after it
    with tempfile.TemporaryDirectory(prefix="modelvc-derive-") as tmp:
        out, applied = _apply(reg, v, recipe, parsed, Path(tmp))
        record = {"version": v.id, "recipe": recipe.name, "version_of_recipe": recipe.version,
                  "params": parsed, "tools": versions_of(recipe.tools),
                  "deterministic": recipe.deterministic,
                  "bound": {"rtol": applied.rtol, "atol": applied.atol},
                  "stats": applied.stats}
        made = [p for p in out.rglob("*") if p.is_file()]
        # A one-file source gives a one-file version (not a folder holding that file).
        single = reg.manifest(f"{v.model}@{v.id}").kind == "file" and len(made) == 1
        try:
            new = reg.commit(made[0] if single else out, model=v.model, branch=to,
                             parent=f"{v.model}@{v.id}",
                             message=message or f"{recipe.name} of {_label(v)}",
                             lineage={"derived_from": record})
        except RefMoved as exc:  # the branch moved since _check_branch looked
            _check_branch(reg, v, recipe.name, parsed, to)
            raise RefMoved(exc.message, hint=_onto(to, v)) from exc
    return Derived(new, record)


def _onto(to: str, v: Version) -> str:
    return (f"a derived version's parent is its source: derive onto a new branch "
            f"(--to {to}-2, say) or onto a branch at {_label(v)}")


def _same_params(a: Any, b: Mapping[str, Any]) -> bool:
    """Recorded parameters (read back from JSON) equal to parsed ones."""
    import json

    def canon(x: Any) -> str:
        return json.dumps(x, sort_keys=True, default=str)

    return isinstance(a, dict) and canon(a) == canon(dict(b))


def _check_branch(reg: RegistryAPI, v: Version, recipe: str, params: Mapping[str, Any],
                  to: str) -> None:
    """RefMoved if branch TO exists and is not at V (the derived version's parent must
    be its source), naming versions as MODEL@vN and saying when the branch already
    holds the same recipe with the same parameters on V."""
    head = next((r.version_id for r in reg.refs(v.model)
                 if r.kind == "branch" and r.name == to), None)
    if head is None or head == v.id:
        return
    versions = reg.versions(v.model)
    by_id = {x.id: x for x in versions}

    def same(x: Version) -> bool:
        rec = x.lineage.get("derived_from") if isinstance(x.lineage, dict) else None
        return (isinstance(rec, dict) and rec.get("version") == v.id
                and rec.get("recipe") == recipe and _same_params(rec.get("params"), params))

    at = by_id.get(head)
    at_label = _label(at) if at is not None else head[:12]
    shown = " ".join(f"{k}={val}" for k, val in params.items() if val not in ("", None))
    what = f"{recipe} of {_label(v)}" + (f" ({shown})" if shown else "")
    if at is not None and same(at):
        raise RefMoved(f"branch {v.model}@{to} already holds {what}: {at_label}",
                       hint=f"nothing to do: use {at_label}; to check that it can be made "
                            f"again: modelvc derive --check {at_label}")
    made = [_label(x) for x in versions if same(x)]
    also = f"; {what} is already {', '.join(made)}" if made else ""
    raise RefMoved(f"branch {v.model}@{to} is at {at_label}, not at {_label(v)} (the "
                   f"source){also}", hint=_onto(to, v))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _max_diff(a: Path, b: Path) -> float | None:
    """Largest |difference| between two safetensors files with the same tensors (None:
    they do not hold the same names, shapes and dtypes)."""
    ta, _ = tensors.read(a)
    tb, _ = tensors.read(b)
    if ta.keys() != tb.keys():
        return None
    worst = 0.0
    for name, x in ta.items():
        y = tb[name]
        if x.code != y.code or x.array.shape != y.array.shape:
            return None
        if x.code in ("F64", "F32", "F16", "BF16"):
            d = np.abs(tensors.as_float64(x) - tensors.as_float64(y))
        else:
            d = np.abs(x.array.astype(np.float64) - y.array.astype(np.float64))
        if d.size:
            worst = max(worst, float(np.nan_to_num(d, nan=np.inf).max()))
    return worst


def check(reg: RegistryAPI, ref: str, *, record: bool = True) -> CheckResult:
    """Make the derived version REF again from its source and compare: the same bytes
    for a deterministic recipe, else tensors within the recipe's tolerance. The result
    is recorded as a tag on REF (`derive-ok-vN` or `derive-failed-vN`; creating it is
    audited) unless `record` is False or such a tag exists already."""
    v = reg.resolve(ref)
    d = v.lineage.get("derived_from")
    if not isinstance(d, dict) or "recipe" not in d or "version" not in d:
        raise UsageError(f"{_label(v)} records no derived_from",
                         hint="only versions made by `modelvc derive` can be checked")
    recipe = load(str(d["recipe"]))
    source = reg.resolve(f"{v.model}@{d['version']}")
    stored = {f.path: f for f in reg.manifest(f"{v.model}@{v.id}").files}
    files: list[FileCheck] = []
    with tempfile.TemporaryDirectory(prefix="modelvc-derive-check-") as tmp:
        out, _ = _apply(reg, source, recipe, recipe.params(
            {k: str(val) for k, val in d.get("params", {}).items()}), Path(tmp))
        made = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
                if p.is_file()}
        theirs: Path | None = None
        for rel in sorted(stored.keys() | made.keys()):
            if rel not in made:
                files.append(FileCheck(rel, "missing"))
            elif rel not in stored:
                files.append(FileCheck(rel, "extra"))
            elif _sha256(made[rel]) == stored[rel].sha256:
                files.append(FileCheck(rel, "same"))
            elif recipe.deterministic or not rel.endswith(".safetensors"):
                files.append(FileCheck(rel, "differs"))
            else:
                if theirs is None:
                    theirs = Path(tmp) / "stored"
                    reg.checkout(f"{v.model}@{v.id}", theirs)
                diff = _max_diff(made[rel], theirs / rel)
                ok = diff is not None and diff <= recipe.tolerance
                files.append(FileCheck(rel, "within-tolerance" if ok else "differs", diff))
    result = CheckResult(
        version=_label(v), source=_label(source), recipe=recipe.name,
        deterministic=recipe.deterministic,
        recorded_recipe_version=str(d.get("version_of_recipe", "")),
        installed_recipe_version=recipe.version,
        ok=all(f.status in ("same", "within-tolerance") for f in files), files=files)
    if record:
        name = f"derive-{'ok' if result.ok else 'failed'}-v{v.number}"
        with contextlib.suppress(AlreadyExists):  # checked before, same outcome: recorded
            reg.tag(f"{v.model}@{v.id}", name)
        result.tag = name
    return result
