"""The layering contract: modelvc's modules in layers, imports point down only.

LAYERS is the contract, top layer first; a module belongs to the longest entry that
names it (`registry/host.py` before `registry/`). A module may import its own layer and
the layers below, never one above; imports under `if TYPE_CHECKING:` and inside
functions count too (a type is a dependency). No modules import each other in a loop,
of any length, type-only imports included (api.protocol -> api.run -> api.protocol
was one: a callee that needs its caller's type takes a smaller one, declared below
both, or the pieces it uses); a module's import of its own package does not count.

The picture in docs/architecture.md ("Layers") is `render()` of this contract:
`python -m tests.test_layers` prints it, and test_docs_picture fails when they differ.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

from tests.services.source import parse

SRC = Path(__file__).parents[1] / "src" / "modelvc"
DOC = Path(__file__).parents[1] / "docs" / "architecture.md"

# (entry, what it holds), top layer first.
LAYERS: list[list[tuple[str, str]]] = [
    [("cli/", "click commands (heavy imports inside commands)"),
     ("demo.py", "`modelvc demo`")],
    [("server/", "FastAPI: /api/v1 (the Registry API), /api/v1/objects, HF Hub, MLflow, /ui"),
     ("ui/", "web UI (Starlette + Jinja2) on the Registry API: `modelvc ui`, /ui"),
     ("serving/", "OIP v2 gateway: runtimes, hot swap, canary/shadow, metrics, fleet agent")],
    [("fleet/", "deployments: rollout controller (stage/flip/abort by epoch), watch, judge"),
     ("canary.py", "canary statistics and verdicts, for a gateway and for a fleet")],
    [("transfer/", "push, pull, clone"),
     ("derive/", "derived versions: recipes (cast, prune, quantize, export), derive, check"),
     ("integrations/", "training: runs committing state dicts, the HF Trainer callback"),
     ("mlflow/", "MLflow compatibility: sidecar of MLflow-only metadata, filters, import"),
     ("remote.py", "RemoteRegistry: the Registry API over HTTP"),
     ("remote_areas.py", "its keys, signatures, gates, tokens, roles, deployments"),
     ("remote_commit.py", "its commit (upload what the server lacks) and amend")],
    [("registry/", "Registry: the embedded registry; Registry.open(path or URL)"),
     ("registry/areas.py", "its keys, signatures, gates, tokens, roles, deployments"),
     ("registry/host.py", "what a hosting process (server, gateway) asks of it"),
     ("registry/writes.py", "its write verbs besides commit: amend, commit over HTTP"),
     ("registry/gate_runs.py", "run a channel's gates on a version and record the run"),
     ("scaleout.py", "`modelvc init --meta --objects`: a registry on PostgreSQL + S3")],
    [("gates/", "policy, checks, authority"), ("signing/", "keys, bundles, trust"),
     ("events.py", "webhook delivery"), ("webhooks.py", "webhook wire format")],
    [("api/", "RegistryAPI: the Protocol every front end uses (docs/api.md)")],
    [("ingest/", "record a version, move refs, amend a manifest"),
     ("commit.py", "files -> stored segments"), ("checkout.py", "segments -> files"),
     ("diff.py", "what changed"), ("maintenance.py", "verify, gc, delete"),
     ("repair.py", "verify --repair: re-encode what an old writer left undecodable")],
    [("storage.py", "ObjectIO: tensors/blobs on a store; dedup, delta chains, verified reads"),
     ("blockread.py", "ObjectIO's read side: a block decoded down its delta chain"),
     ("blockcache.py", "decoded tensor blocks, least recently used out first"),
     ("filecache.py", "tensors' bytes in files on disk (committed from, checked out to)"),
     ("filehash.py", "the files a commit reads; their sha256 hashed while it starts"),
     ("pipeline.py", "bounded windows of work"),
     ("manifest.py", "a version: files -> ordered segments -> object ids"),
     ("references.py", "the delta reference policy: a parent's tensors by file and name"),
     ("formats/", "plan_file(): safetensors, ONNX, pickles (opaque), other files"),
     ("lineage.py", "git, data fingerprints, environment")],
    [("codec/", "byte planes + zstd; order-preserving deltas; extrapolation; casts"),
     ("objects/", "backends (local, S3, memory) under one packing layer (PackedStore)"),
     ("meta/", "MetaStore (SQLAlchemy Core), migrations"),
     ("client/", "HTTP transport, error decoder, resumable uploads (remote.py, transfer/)")],
    [("errors.py", "one typed error tree: message, hint, exit code, HTTP status"),
     ("layout.py", "the .modelvc folder, config, format version, the gc lock"),
     ("records/", "the API's result dataclasses (re-exported by api/)"),
     ("names.py", "names and refs"), ("canonical.py", "canonical JSON"),
     ("atomic.py", "atomic file writes"),
     ("interrupts.py", "Ctrl-C and SIGTERM: delivered between transactions, exit 130/143"),
     ("auditseal.py", "keyed checkpoints of the audit head (key outside the database)"),
     ("httpguard.py", "ASGI guard: auth before bodies, body caps and timeouts"),
     ("httpproto.py", "uvicorn's HTTP/1.1 protocols with a deadline for request heads"),
     ("wire/", "what client and server speak: JSON <-> dataclasses, upload frames")],
]


def _key(entry: str) -> tuple[str, ...]:
    return tuple(entry.removesuffix("/").removesuffix(".py").split("/"))


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer index, entry) of a dotted module name (modelvc.x.y), longest entry wins."""
    parts = tuple(module.split(".")[1:])
    best: tuple[int, int, str] | None = None
    for i, layer in enumerate(LAYERS):
        for entry, _ in layer:
            k = _key(entry)
            if parts[:len(k)] == k and (best is None or len(k) > best[1]):
                best = (i, len(k), entry)
    return (best[0], best[2]) if best else None


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and \
                node.test.id == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports(root: Path) -> list[tuple[str, int, str, bool]]:
    """(module, line, imported module, type only) for every modelvc import under ROOT."""
    out = []
    for mod, path in _modules(root).items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = parse(path.read_text(encoding="utf-8"))
        typing_only = _type_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("modelvc."):
                    out.append((mod, node.lineno, name, id(node) in typing_only))
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The loops of EDGES (module -> modules it imports): each set of modules that reach
    one another, sorted (Tarjan's strongly connected components, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, todo = work[-1]
            nxt = next(todo, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                loop = stack[stack.index(node):]
                del stack[stack.index(node):]
                if len(loop) > 1:
                    found.append(sorted(loop))
    return sorted(found)


def violations(root: Path) -> list[str]:
    mods = _modules(root)
    found = []
    for mod in mods:
        if mod != "modelvc" and layer_of(mod) is None:
            found.append(f"{mod}: in no layer of the contract")
    edges: dict[str, set[str]] = {}
    for mod, line, target, _ in imports(root):
        if mod == "modelvc":  # the package root wires the layers together (lazily)
            continue
        while target not in mods and "." in target:  # `from .x import Name` -> .x
            target = target.rpartition(".")[0]
        if target != mod and not mod.startswith(target + "."):  # not its own package
            edges.setdefault(mod, set()).add(target)
        src, dst = layer_of(mod), layer_of(target)
        if src is None or dst is None:
            continue
        if dst[0] < src[0]:
            found.append(f"{mod}:{line} ({src[1]}) imports {target} ({dst[1]}), a higher "
                         f"layer")
    for loop in cycles(edges):
        found.append(f"{', '.join(loop)} import each other in a loop")
    return sorted(set(found))


def render() -> str:
    """The picture: one block per layer, top first, blank lines between layers."""
    width = max(len(e) for layer in LAYERS for e, _ in layer)
    blocks = ["\n".join(f"{e:<{width}}  {what}" for e, what in layer) for layer in LAYERS]
    return "\n\n".join(blocks)


def _doc_picture() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1]
    return section.split("```", 2)[1].strip("\n")


def test_the_layers_hold() -> None:
    assert violations(SRC) == []


def test_a_planted_upward_import_fails(tmp_path: Path) -> None:
    copy = tmp_path / "src" / "modelvc"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    assert violations(copy) == []
    with (copy / "errors.py").open("a") as f:
        f.write("\nfrom .cli import main  # planted\n")
    with (copy / "fleet" / "watch.py").open("a") as f:
        f.write("\nfrom ..serving import gateway  # planted\n")
    got = violations(copy)
    assert any(v.startswith("modelvc.errors:") and "modelvc.cli.main" in v for v in got), got
    assert any(v.startswith("modelvc.fleet.watch:") and "serving" in v for v in got), got
    (copy / "stray.py").write_text("x = 1\n")
    assert "modelvc.stray: in no layer of the contract" in violations(copy)


def test_a_planted_loop_fails(tmp_path: Path) -> None:
    """A loop of three modules in one layer, closed by a type-only import, fails."""
    copy = tmp_path / "src" / "modelvc"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    assert violations(copy) == []
    for mod, imported in (("names", "from .canonical import canonical_json"),
                          ("canonical", "from .atomic import write_atomic"),
                          ("atomic", "if TYPE_CHECKING:\n    from .names import Name")):
        with (copy / f"{mod}.py").open("a") as f:
            f.write(f"\nfrom typing import TYPE_CHECKING\n{imported}  # planted\n")
    assert violations(copy) == [
        "modelvc.atomic, modelvc.canonical, modelvc.names import each other in a loop"]


def test_cycles_finds_each_loop_once() -> None:
    edges = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"e"}, "e": {"f"}, "f": {"e"},
             "g": {"a"}}
    assert cycles(edges) == [["a", "b", "c"], ["e", "f"]]


def test_docs_picture_is_the_contract() -> None:
    assert _doc_picture() == render(), (
        "docs/architecture.md's Layers picture differs from tests/test_layers.py "
        "LAYERS; paste `python -m tests.test_layers`:\n" + render())


if __name__ == "__main__":
    sys.stdout.write(render() + "\n")
