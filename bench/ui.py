"""Web UI benchmark: with MODELS models and one model of VERSIONS versions (branches
every 100), `modelvc ui` (its own process) renders the models page and the big model's
page (p50/p95 over REQUESTS sequential requests each, after a warm-up), and Chromium
paints the lineage graph of GRAPH versions (first contentful paint, DOMContentLoaded).

    python bench/ui.py                       # 1,000 models, 10,000 versions, 1,000 graph
    python bench/ui.py --models 50 --versions 300 --graph 300 --requests 20   # short run
    python bench/ui.py --json out.json --keep /tmp/ui-bench   # reuse the seeded registry

Targets: each page p95 <= 150 ms; the graph's first paint <= 1 s. Needs Debian's
chromium (scripts/test installs it).
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from modelvc import Registry

PAGE_P95_MS = 150.0
PAINT_MS = 1000.0


def _seed_small(repo: Path, models: int) -> None:
    f = repo.parent / "small.bin"
    with Registry.open(repo) as reg:
        for i in range(models - 1):
            f.write_bytes(b"model %d" % i)
            reg.commit(f, model=f"m{i:04d}", message="first", metrics={"acc": 0.5})
            if i % 10 == 0:
                reg.promote(f"m{i:04d}", "production", reason="bench", create=True)


def _seed_big(repo: Path, versions: int) -> None:
    f = repo.parent / "big.bin"
    branch = "main"
    with Registry.open(repo) as reg:
        for n in range(1, versions + 1):
            if n % 100 == 0:  # a side branch from here, two versions long
                branch = f"exp{n}"
            elif n % 100 == 3:
                branch = "main"
            f.write_bytes(b"big %d" % n)
            reg.commit(f, model="big", branch=branch, message=f"step {n}",
                       params={"lr": 1e-3}, metrics={"acc": 0.5 + 0.4 * n / versions,
                                                    "loss": 1.0 - 0.5 * n / versions})
            if n % 500 == 0:
                reg.promote(f"big@v{n}", "staging", reason="bench", create=True)
        reg.promote("big@main", "production", reason="bench", create=True)


def seed(root: Path, models: int, versions: int) -> Path:
    """Tiny one-file versions (the UI's cost is metadata, not bytes), committed through
    the public API by two processes at once: the small models and the big model's
    lineage (which must be sequential: every commit moves its branch), in /dev/shm
    when there is one (tmpfs: no fsync waits; a busy machine's disk made seeding 3x
    slower). Reuse a seeded registry with --keep."""
    repo = root / "repo"
    if (repo / ".modelvc").exists():
        return repo
    os.environ.setdefault("MODELVC_AUTHOR", "bench")
    t0 = time.perf_counter()
    Registry.init(repo).close()
    with ProcessPoolExecutor(2) as pool:
        for fut in [pool.submit(_seed_small, repo, models),
                    pool.submit(_seed_big, repo, versions)]:
            fut.result()
    print(f"seeded {models} models, {versions} versions in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return repo


def start_ui(repo: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelvc.cli.main", "--registry", str(repo), "ui",
         "--no-browser", "--json", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline())["url"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url.split("/ui/")[0] + "/ui/login", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return proc, url


def timed(client: httpx.Client, path: str, n: int) -> dict[str, float]:
    for _ in range(3):  # warm-up: caches, first-use imports
        client.get(path).raise_for_status()
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        ms.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    ms.sort()
    return {"p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "max_ms": round(ms[-1], 1), "bytes": len(r.content)}


def paint(login_url: str, page_url: str, runs: int = 5) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("needs Debian's chromium: apt-get install -y chromium")
    fcp, dcl = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(login_url)
        for _ in range(runs):
            page.goto(page_url)
            page.wait_for_selector("svg.lineage a.node")
            t = page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const p = performance.getEntriesByName('first-contentful-paint')[0];
                return [p ? p.startTime : -1, nav.domContentLoadedEventEnd];
            }""")
            fcp.append(t[0])
            dcl.append(t[1])
        nodes = page.locator("svg.lineage a.node").count()
        browser.close()
    return {"first_paint_ms": round(statistics.median(fcp), 1),
            "dom_content_loaded_ms": round(statistics.median(dcl), 1), "nodes": nodes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=10000)
    ap.add_argument("--graph", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--keep", type=Path, help="seed here (or reuse a registry seeded here)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    root = args.keep or Path(tempfile.mkdtemp(prefix="modelvc-ui-bench-", dir=shm))
    root.mkdir(parents=True, exist_ok=True)
    repo = seed(root, args.models, args.versions)
    proc, login_url = start_ui(repo)
    try:
        base = login_url.split("/ui/")[0] + "/ui"
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            client.get(login_url).raise_for_status()  # the session cookie
            results: dict[str, Any] = {
                "models": args.models, "versions": args.versions,
                "models_page": timed(client, base + "/", args.requests),
                "models_page_by_activity": timed(client, base + "/?sort=activity&desc=1",
                                                 args.requests),
                "model_page": timed(client, base + "/m/big", args.requests),
            }
        results["graph"] = {"versions": args.graph,
                            **paint(login_url, f"{base}/m/big?n={args.graph}")}
    finally:
        proc.terminate()
        proc.wait(30)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    for key in ("models_page", "models_page_by_activity", "model_page"):
        r = results[key]
        verdict = "PASS" if r["p95_ms"] <= PAGE_P95_MS else "MISS"
        print(f"{key:<26} p50 {r['p50_ms']:>7.1f} ms  p95 {r['p95_ms']:>7.1f} ms  "
              f"(target p95 <= {PAGE_P95_MS:.0f})  {verdict}")
    g = results["graph"]
    verdict = "PASS" if 0 <= g["first_paint_ms"] <= PAINT_MS else "MISS"
    print(f"lineage graph of {g['nodes']} versions: first paint {g['first_paint_ms']:.0f} ms, "
          f"DOMContentLoaded {g['dom_content_loaded_ms']:.0f} ms "
          f"(target first paint <= {PAINT_MS:.0f})  {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
