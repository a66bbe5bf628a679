"""A README upload to a 1 GB model through the Hugging Face Hub API (a benchmark, not a
test): the time huggingface_hub's upload_file takes against `modelvc server`, the bytes
the server process read and wrote (/proc/PID/io rchar + wchar: files and sockets) and
the bytes stored. The server amends the head version (its weights are reused as they
are, never checked out), so all three stay O(KB) whatever the model's size.

    python bench/hf_amend.py --gb 1 [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from served import start_server, writer_token


def server_io(pid: int) -> int:
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def stored(registry: Path) -> int:
    return sum(p.stat().st_size for p in (registry / ".modelvc" / "objects").rglob("*")
               if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelvc-hfamend-"))
    proc = None
    try:
        from safetensors.numpy import save_file

        from modelvc import Registry

        folder = work / "model"
        folder.mkdir()
        rng = np.random.default_rng(0)
        n = max(1, round(args.gb * 1e9 / (256 << 20)))
        save_file({f"layer{i}.weight": rng.standard_normal(64 << 20, dtype=np.float32)
                   for i in range(n)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text('{"hidden_size": 4096}\n')
        size = sum(p.stat().st_size for p in folder.iterdir())
        with Registry.init(work / "reg") as reg:
            reg.commit(folder, model="acme--big", author="bench", cwd=work)
        token = writer_token(work / "reg")
        proc, url = start_server(work / "reg")
        os.environ.update(HF_ENDPOINT=url, HF_TOKEN=token, HF_HUB_DISABLE_XET="1",
                          HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(work / "hf-home"))
        from huggingface_hub import HfApi

        api = HfApi(endpoint=url, token=token)
        api.upload_file(path_or_fileobj=b"warm-up\n", path_in_repo="NOTES.md",
                        repo_id="acme/big")  # the server's first upload imports code
        times, moved, grew = [], [], []
        for i in range(args.runs):
            readme = f"# big\n\nedit {i}\n".encode() * 50
            s0, io0 = stored(work / "reg"), server_io(proc.pid)
            t = time.perf_counter()
            api.upload_file(path_or_fileobj=readme, path_in_repo="README.md",
                            repo_id="acme/big", commit_message=f"readme {i}")
            times.append(time.perf_counter() - t)
            moved.append(server_io(proc.pid) - io0)
            grew.append(stored(work / "reg") - s0)
        result = {"model_bytes": size, "readme_bytes": len(readme), "runs": args.runs,
                  "seconds_median": statistics.median(times), "seconds_max": max(times),
                  "server_io_bytes_median": statistics.median(moved),
                  "stored_bytes_median": statistics.median(grew)}
        if args.json:
            print(json.dumps(result, indent=2))
            return
        print(f"model: {size / 1e9:.2f} GB, README {len(readme)} bytes, {args.runs} uploads "
              f"({time.strftime('%Y-%m-%d')}, 2 cores)")
        print(f"upload_file time     median {result['seconds_median']:.3f} s, "
              f"max {result['seconds_max']:.3f} s")
        print(f"server read+written  median {result['server_io_bytes_median'] / 1e3:.0f} KB")
        print(f"objects stored       median {result['stored_bytes_median'] / 1e3:.1f} KB "
              "(README and manifest)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
