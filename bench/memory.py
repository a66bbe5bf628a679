"""Peak memory of commit and checkout on a multi-GB model (a benchmark, not a test).

Builds a synthetic safetensors model of --gb gigabytes (fp32 tensors of a few hundred
MB, like a 1-3B parameter checkpoint's largest ones) and a fine-tune of it, then runs
each step in a fresh child process and reports its peak RSS (VmHWM), side by side
with the baseline of loading the model in process (safetensors.numpy.load_file). The
remote commit runs against a `modelvc server` on loopback: the client's peak, and the
server process's peak over its whole life (it encodes what the client uploads).

    python bench/memory.py --gb 2 [--only-remote] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, time
step, root, arg = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
if step == "load":
    from safetensors.numpy import load_file
    tensors = load_file(arg)
    n = sum(v.nbytes for v in tensors.values())
elif step.startswith("cli:"):  # the command a user runs, in this process
    import contextlib, io
    from modelvc.cli.main import main
    sys.argv = ["modelvc", "--registry", root, *step[4:].split(), arg]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            if exc.code:
                raise
else:
    from modelvc import Registry
    reg = Registry.open(root)
    if step == "commit":
        reg.commit(arg, model="big")
    else:
        reg.checkout(step.split(":", 1)[1], arg, force=True)
dt = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries the forking parent's peak into ru_maxrss across exec.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(int(hwm) * 1024, dt)
"""


def make_model(path: Path, gb: float, seed: int, base: Path | None = None) -> int:
    """Write tensors of 256 MiB (fp32) until the file holds `gb` gigabytes."""
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(seed)
    n_tensors = max(1, round(gb * 1e9 / (256 << 20)))
    if base is None:
        tensors = {f"layer{i}.weight": rng.standard_normal(64 << 20, dtype=np.float32) * 0.02
                   for i in range(n_tensors)}
    else:
        tensors = load_file(str(base))
        for k in tensors:
            t = tensors[k]
            t += rng.standard_normal(t.shape, dtype=np.float32) * np.float32(2e-5)
    save_file(tensors, str(path))
    return path.stat().st_size


def child(step: str, root: Path | str, arg: str) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, step, str(root), arg],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1])


def remote_commit(work: Path, model: str) -> list[tuple[str, int, float]]:
    """A commit over HTTP (Registry.open(URL)) into a fresh server's registry."""
    import os

    from served import start_server, writer_token

    from modelvc import Registry

    Registry.init(work / "served").close()
    token = writer_token(work / "served")
    server, url = start_server(work / "served")
    try:
        os.environ["MODELVC_TOKEN"] = token
        client = child("commit", url, model)
        status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
        hwm = int(next(x for x in status if x.startswith("VmHWM:")).split()[1]) * 1024
    finally:
        os.environ.pop("MODELVC_TOKEN", None)
        server.terminate()
        server.wait(timeout=30)
    return [("remote commit v1 (client)", *client),
            ("remote commit v1 (server)", hwm, client[1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only-remote", action="store_true",
                    help="only the baseline and the remote commit")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelvc-mem-"))
    try:
        from modelvc import Registry

        a, b = work / "a.safetensors", work / "b.safetensors"
        size = make_model(a, args.gb, 0)
        make_model(b, args.gb, 1, base=a)
        rows = [("load in process (baseline)", *child("load", work, str(a)))]
        same = True
        if not args.only_remote:
            Registry.init(work / "repo").close()
            repo, out = work / "repo", str(work / "out.safetensors")
            # The CLI, as a user runs it; then the API, as a training loop calls it (keeps up
            # to MODELVC_CACHE_MB, 256 by default, of blocks for the next commit's deltas).
            commit = "cli:commit --model big"
            rows.append(("modelvc commit v1 (full)", *child(commit, repo, str(a))))
            rows.append(("modelvc commit v2 (delta)", *child(commit, repo, str(b))))
            rows.append(("modelvc checkout v2", *child("cli:checkout big@v2 --force", repo, out)))
            same = (work / "out.safetensors").read_bytes() == b.read_bytes()
            Registry.init(work / "api").close()
            rows.append(("Registry.commit v1 (API)", *child("commit", work / "api", str(a))))
            rows.append(("Registry.commit v2 (API)", *child("commit", work / "api", str(b))))
            rows.append(("Registry.checkout v2 (API)",
                         *child("checkout:big@v2", work / "api", out)))
            same = same and (work / "out.safetensors").read_bytes() == b.read_bytes()
        rows += remote_commit(work, str(a))
        result = {"model_bytes": size, "bit_exact": same,
                  "steps": [{"step": s, "peak_rss": r, "seconds": t,
                             "mb_per_s": size / t / 1e6} for s, r, t in rows]}
        if args.json:
            print(json.dumps(result, indent=2))
            return
        print(f"model: {size / 1e9:.2f} GB ({time.strftime('%Y-%m-%d')}, 2 cores)")
        print(f"{'step':<28} {'peak RSS':>10} {'x model':>8} {'time':>7} {'MB/s':>7}")
        for s, r, t in rows:
            print(f"{s:<28} {r / 1e6:>8.0f}MB {r / size:>8.2f} {t:>6.1f}s {size / t / 1e6:>7.0f}")
        print(f"checkout bit-exact: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
