"""Only the registry touches its internals: outside `registry/` and `ingest/`, no module
reads a private member (`x._name`, x not self or cls) that the module does not define
itself. So `reg._meta`, `reg._store`, `reg._io`, `reg._governance`... appear nowhere
else, whatever the variable is called (`end.reg._meta`, `registry()._store`), and a
front end that needs something of the registry asks for a public verb instead.

A module may use its own private members on other instances (RemoteTensorDict calls
RemoteRegistry._tensor_bytes in remote.py), unless the name is also one of the
registry's; THIRD_PARTY lists the private names of libraries modelvc calls (reasons
beside each).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.services.source import parse

SRC = Path(__file__).parents[1] / "src" / "modelvc"
INSIDE = ("registry/", "ingest/")  # the registry and what it hands its stores to
ROW_API = {"_mapping", "_replace", "_asdict", "_fields", "_make"}  # namedtuple, sa.Row
THIRD_PARTY = {
    "_make_per_tensor_quantized_tensor",  # torch: builds an int8 tensor from its parts
    "_client",  # boto3: a resource's low-level client (S3 copy and multipart calls)
    # MLflow: the process-wide URIs as set (None: unset), which mlflow/importer.py puts
    # back after an import; the public getters return resolved values, and restoring
    # those pinned them (models:/ downloads resolve through these globals only).
    "_tracking_uri", "_registry_uri",
}


def _defined(tree: ast.AST) -> set[str]:
    """Private names the module defines: functions, classes, assigned names and
    attributes, annotated class members."""
    out: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(n.name)
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
            out.add(n.attr)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
    return {x for x in out if x.startswith("_")}


def registry_names(root: Path) -> set[str]:
    """The private names of the Registry: those its class and the classes it is built
    from (its mixins, RegistryParts) define. A helper class elsewhere in registry/ (a
    committer's own `_lock`) is not the registry."""
    classes = {n.name: n for p in (root / "registry").glob("*.py")
               for n in ast.walk(parse(p.read_text(encoding="utf-8")))
               if isinstance(n, ast.ClassDef)}
    names: set[str] = set()
    todo, seen = ["Registry"], set()
    while todo:
        cls = classes.get(todo.pop())
        if cls is None or cls.name in seen:
            continue
        seen.add(cls.name)
        names |= _defined(cls)
        todo += [b.id for b in cls.bases if isinstance(b, ast.Name)]
    return names


def violations(root: Path) -> list[str]:
    # The registry's own private names count even where a module defines the same name
    # (a class of its own with a `_meta`): `reg._meta` is never fine outside.
    registry = registry_names(root)
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(INSIDE):
            continue
        tree = parse(path.read_text(encoding="utf-8"))
        mine = _defined(tree)
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Attribute) and n.attr.startswith("_")) or \
                    n.attr.startswith("__") or n.attr in ROW_API | THIRD_PARTY or \
                    (n.attr in mine and n.attr not in registry):
                continue
            if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"):
                continue
            found.append(f"{rel}:{n.lineno}: {ast.unparse(n)}")
    return found


def test_no_private_member_is_read_outside_the_registry() -> None:
    assert violations(SRC) == []


def test_a_planted_reach_through_fails(tmp_path: Path) -> None:
    copy = tmp_path / "modelvc"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    with (copy / "server" / "transfer.py").open("a") as f:
        f.write("\n\ndef planted(end):\n    return end.reg._meta.get_version('x')\n")
    with (copy / "cli" / "main.py").open("a") as f:
        f.write("\n\ndef planted(obj):\n    return obj.registry()._store\n")
    with (copy / "transfer" / "remotes.py").open("a") as f:  # the folder is private too
        f.write("\n\ndef planted(reg):\n    return reg._layout.root\n")
    with (copy / "fleet" / "controller.py").open("a") as f:  # a `_meta` of its own
        f.write("\n\nclass Planted:\n    def __init__(self, reg):\n"
                "        self._meta = reg._meta\n")
    got = violations(copy)
    assert {"_meta", "_store", "_layout", "_io", "_governance"} <= registry_names(copy)
    assert any(v.startswith("server/transfer.py:") and "end.reg._meta" in v for v in got), got
    assert any(v.startswith("cli/main.py:") and "._store" in v for v in got), got
    assert any(v.startswith("transfer/remotes.py:") and "reg._layout" in v for v in got), got
    assert any(v.startswith("fleet/controller.py:") and "reg._meta" in v for v in got), got
