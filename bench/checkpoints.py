"""Checkpoint benchmark: a MiniLM fine-tuning run (sequence classification on a small
synthetic task, CPU, in-process) checkpointed every N steps. Passes over the same
run (same seeds, same losses):

  A. each checkpoint saved with `save_pretrained` alone (the peer: what a training loop
     does anyway), committed as that folder (what ModelvcCallback does after the Trainer
     saved it), and committed from the state dict with `reg.run(...).commit` (no file);
  B. each checkpoint handed to `reg.run(...).submit` (tensors copied, the encode on the
     run's thread while the next steps train);
  S, T, C. the whole loop, three times over the same run (alternated in --rounds):
     S saves each checkpoint with `save_pretrained` alone (the peer); T and C also
     submit its folder with `run.submit(folder=...)`, what `ModelvcCallback` does by
     default (staged by hard links), T committing on the run's thread
     (`isolate=False`), C in the child process at the lowest CPU priority (the
     default); in every pass the folder is then deleted at once (the Trainer's
     rotation with save_total_limit=1: T's and C's staged links keep its bytes until
     committed), its sha256 taken first, outside the timed loop, to check each version
     bit-exact after the run (`--keep-folders`: every pass keeps its folders instead).

Reported: stored bytes x raw bytes (target <= 0.35x); the time the training loop is held
per checkpoint relative to save_pretrained alone (target <= 1.5x): A's commits (save +
folder commit, the state-dict commit), B's submit and C's save + folder submit; the
whole loop: T's and C's wall less S's, per checkpoint, in units of S's save (target
<= 1.5x), the drain at the end (the commits still pending) apart, the loop thread's
CPU and the commits' CPU (other threads, or the child process: RUSAGE_CHILDREN);
every version committed and bit-exact; the peak extra RSS during a commit (sampled
every 5 ms, above the RSS just before it).

    python bench/checkpoints.py                      # 20 checkpoints, every 2 steps
    python bench/checkpoints.py --checkpoints 5 --json out.json
    python bench/checkpoints.py --rounds 3           # S, T, C alternated 3 times
    python bench/checkpoints.py --max-pending 20     # T, C: no submit waits for a commit
    python bench/checkpoints.py --keep-folders       # S, T, C keep their saved folders
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelvc import Registry

MB = 1e6


def minilm_path() -> Path:
    from tests.conftest import MINILM

    return Path(MINILM)


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """The peak RSS above the RSS at entry, sampled every 5 ms while inside."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    out = {"peak_extra_mb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak_extra_mb"] = max(out["peak_extra_mb"],
                                       (proc.memory_info().rss - base) / MB)
            stop.wait(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out["peak_extra_mb"] = max(out["peak_extra_mb"], (proc.memory_info().rss - base) / MB)


def timed(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """(wall s, process CPU s, peak extra RSS MB) of FN."""
    with peak_rss() as rss:
        t, c = time.perf_counter(), time.process_time()
        fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
    return dt, dc, rss["peak_extra_mb"]


def trainer(a: argparse.Namespace) -> tuple[Any, Callable[[], float]]:
    """A fresh model and a function training it `every` steps (the last loss): the same
    trajectory each time it is made."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 5000, (512, 16), generator=g)
    labels = (ids % 7 == 0).any(1).long()
    step = 0

    def train() -> float:
        nonlocal step
        model.train()
        for _ in range(a.every):
            i = (step * 8) % len(ids)
            out = model(input_ids=ids[i:i + 8], labels=labels[i:i + 8])
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
        return float(out.loss)

    return model, train


def whole_loop(a: argparse.Namespace, work: Path, reg: Registry | None, name: str,
               rows: list[dict[str, float]] | None) -> dict[str, float]:
    """One training run checkpointed every `every` steps: saved (S), or saved and its
    folder submitted to REG as ModelvcCallback does (T: committed on the run's thread,
    C: by the child process at the lowest priority), each folder deleted at once (the
    Trainer's rotation), the same in every pass. loop_s: the loop's wall; drain_s: the
    wait at the end for the commits still pending; commit_cpu: the commits' CPU (other
    threads, or the child process); bit_exact: every checkpoint committed, each
    version's checkout equal to the file saved.

    Why not keep the folders to compare: a saved file that stays costs the next saves
    fresh page-cache pages, one deleted at once gives its pages back to the next save
    (save_pretrained 0.12 s CPU instead of 0.03 s from the third kept checkpoint on,
    with no commit at all: docs/benchmarks.md, session 9), so keeping them in T and C
    but not in S charged the commits with the bench's own copies. Each file's sha256 is
    taken outside the timed part (its wall and CPU are left out of the loop's)."""
    model, train = trainer(a)
    kept = work / "kept" / name
    sums: list[str] = []
    aside_cpu = 0.0  # the hashing's, left out of the loop's figures
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, loop0 = time.process_time(), time.thread_time()
    r = reg.run(model="minilm-cls", branch="run", isolate=name == "C",
                max_pending=a.max_pending) if reg else None
    loop_s = 0.0
    for k in range(a.checkpoints):
        step = (k + 1) * a.every
        t0, c0 = time.perf_counter(), time.thread_time()
        train()
        t1, c1 = time.perf_counter(), time.thread_time()
        dest = work / "ckpt" / f"checkpoint-{step}"
        model.save_pretrained(dest)
        t2, c2 = time.perf_counter(), time.thread_time()
        if r is not None:
            r.submit(folder=dest, step=step)
        t3, c3 = time.perf_counter(), time.thread_time()
        hash_s = 0.0
        if a.keep_folders:
            kept.mkdir(parents=True, exist_ok=True)
            dest.rename(kept / str(k))
        else:
            sums.append(file_sha(dest / "model.safetensors"))
            hash_s = time.perf_counter() - t3
            aside_cpu += time.thread_time() - c3
            shutil.rmtree(dest)  # the rotation; T's and C's staged links keep the bytes
        t4 = time.perf_counter()
        loop_s += t4 - t0 - hash_s
        if rows is not None:
            p = name.lower()
            rows[k].update({f"{p}_train_s": t1 - t0, f"{p}_save_s": t2 - t1,
                            f"{p}_train_cpu": c1 - c0, f"{p}_save_cpu": c2 - c1,
                            f"{p}_submit_held_s": t3 - t2, f"{p}_submit_held_cpu": c3 - c2})
    out = {"loop_s": loop_s, "loop_cpu": time.thread_time() - loop0 - aside_cpu}
    if r is None or reg is None:
        shutil.rmtree(kept, ignore_errors=True)
        return out
    t = time.perf_counter()
    r.__exit__(None, None, None)  # waits for the pending commits, tags, ends the child
    out["drain_s"] = time.perf_counter() - t
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["commit_cpu"] = (time.process_time() - cpu0 - out["loop_cpu"] - aside_cpu
                         + kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime)
    vs = sorted(reg.versions("minilm-cls"), key=lambda v: v.number)
    same = len(vs) == a.checkpoints
    for k, v in enumerate(vs):
        co = work / "check"
        reg.checkout(f"minilm-cls@{v.id}", co)
        want = (file_sha(kept / str(k) / "model.safetensors") if a.keep_folders
                else sums[k])
        same = same and file_sha(co / "model.safetensors") == want
        shutil.rmtree(co)
    shutil.rmtree(kept, ignore_errors=True)
    out["bit_exact"] = float(same)
    return out


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--every", type=int, default=2, help="training steps per checkpoint")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of the whole-loop passes S, T, C (alternated)")
    ap.add_argument("--max-pending", type=int, default=2,
                    help="T's and C's max_pending (the callback's default: 2)")
    ap.add_argument("--keep-folders", action="store_true",
                    help="S, T, C keep every saved folder (no rotation) and compare "
                         "the versions with them")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)  # a shared machine: one core for the run, one for the rest
    load0 = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    rows: list[dict[str, float]] = []
    try:
        folder_reg = Registry.init(work / "folder-reg")
        state_reg = Registry.init(work / "state-reg")
        bg_reg = Registry.init(work / "bg-reg")
        model, train = trainer(a)
        with state_reg.run(model="minilm-cls", branch="run") as r:
            for k in range(a.checkpoints):
                loss = train()
                dest = work / "ckpt" / f"checkpoint-{(k + 1) * a.every}"
                save_s, save_cpu, save_rss = timed(partial(model.save_pretrained, dest))
                folder_s, folder_cpu, folder_rss = timed(partial(
                    folder_reg.commit, dest, model="minilm-cls", branch="run",
                    metrics={"step": (k + 1) * a.every}))
                state_s, state_cpu, state_rss = timed(partial(
                    r.commit, model.state_dict(), step=(k + 1) * a.every,
                    metrics={"loss": loss}))
                shutil.rmtree(dest)
                rows.append({"save_s": save_s, "save_cpu": save_cpu, "folder_commit_s": folder_s,
                             "folder_commit_cpu": folder_cpu, "state_commit_s": state_s,
                             "state_commit_cpu": state_cpu, "save_rss_mb": save_rss,
                             "folder_rss_mb": folder_rss, "state_rss_mb": state_rss})
                print(f"A {k + 1:2d}: save {save_s:6.3f}s ({save_cpu:.3f} CPU)  commit folder "
                      f"{folder_s:6.3f}s ({folder_cpu:.3f})  state dict {state_s:6.3f}s "
                      f"({state_cpu:.3f})  extra RSS {max(folder_rss, state_rss):6.1f} MB",
                      flush=True)
        model, train = trainer(a)  # pass B: the same run again, checkpoints submitted
        t_b, c_b = time.perf_counter(), time.process_time()
        with bg_reg.run(model="minilm-cls", branch="run") as r:
            for k in range(a.checkpoints):
                loss = train()
                held_s, held_cpu, _ = timed(partial(
                    r.submit, model.state_dict(), step=(k + 1) * a.every,
                    metrics={"loss": loss}))
                rows[k].update(submit_held_s=held_s, submit_held_cpu=held_cpu)
                print(f"B {k + 1:2d}: submit held the loop {held_s:6.3f}s", flush=True)
        pass_b_s, pass_b_cpu = time.perf_counter() - t_b, time.process_time() - c_b
        # The whole loop, S (save alone) against T (save + folder submit, committed on the
        # run's thread) and C (the same, committed by the child process at the lowest
        # priority: the default), in alternating rounds: the load moves between passes.
        whole: dict[str, dict[str, float]] = {}
        for rnd in range(a.rounds):
            for name in ("S", "T", "C"):
                reg = None if name == "S" else Registry.init(work / f"loop-{name}-{rnd}")
                got = whole_loop(a, work, reg, name, rows if rnd == 0 else None)
                if name == "C" and rnd == 0:
                    assert reg is not None  # only S runs without a registry
                    folder_bg_reg = reg
                for figure, v in got.items():
                    whole.setdefault(name, {}).setdefault(figure, 0.0)
                    whole[name][figure] += v
                print(f"{name} round {rnd + 1}: loop {got['loop_s']:.2f}s (its thread "
                      f"{got['loop_cpu']:.2f} s CPU), drain {got.get('drain_s', 0):.2f}s, "
                      f"commit CPU elsewhere {got.get('commit_cpu', 0):.2f}s, load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
        figures: dict[str, Any] = {"checkpoints": a.checkpoints, "every": a.every,
                                   "lr": a.lr, "load_before": load0,
                                   "load_after": os.getloadavg(), "pass_b_s": pass_b_s,
                                   "pass_b_cpu": pass_b_cpu, "rounds": a.rounds,
                                   "max_pending": a.max_pending}
        for name, got in whole.items():
            figures.update({f"pass_{name.lower()}_{k}": v for k, v in got.items()})
        for name, reg, model_name in (("folder", folder_reg, "minilm-cls"),
                                      ("state", state_reg, "minilm-cls"),
                                      ("submit", bg_reg, "minilm-cls"),
                                      ("folder_submit", folder_bg_reg, "minilm-cls")):
            vs = reg.versions(model_name)
            raw, stored = sum(v.raw_size for v in vs), sum(v.stored_size for v in vs)
            figures[f"{name}_raw_mb"] = raw / MB
            figures[f"{name}_stored_mb"] = stored / MB
            figures[f"{name}_ratio"] = stored / raw
            # After the first (a full copy), what each further checkpoint costs.
            rest = vs[1:] if len(vs) > 1 else vs
            figures[f"{name}_ratio_after_first"] = (sum(v.stored_size for v in rest)
                                                    / sum(v.raw_size for v in rest))
        med = {k: statistics.median(r[k] for r in rows)
               for k in ("save_s", "save_cpu", "folder_commit_s", "folder_commit_cpu",
                         "state_commit_s", "state_commit_cpu", "submit_held_s",
                         "submit_held_cpu", "c_submit_held_s", "c_submit_held_cpu",
                         "s_train_s", "s_save_s", "t_train_s", "c_train_s", "c_save_s",
                         # the loop thread's CPU: training slowed by the commits beside
                         # it, and a save slowed by fresh page-cache pages
                         "s_train_cpu", "t_train_cpu", "c_train_cpu", "s_save_cpu",
                         "t_save_cpu", "c_save_cpu")}
        figures.update({f"median_{k}": v for k, v in med.items()})
        figures["folder_total_x_save"] = (med["save_s"] + med["folder_commit_s"]) / med["save_s"]
        figures["state_commit_x_save"] = med["state_commit_s"] / med["save_s"]
        figures["submit_held_x_save"] = med["submit_held_s"] / med["save_s"]
        figures["folder_cpu_x_save"] = ((med["save_cpu"] + med["folder_commit_cpu"])
                                        / med["save_cpu"])
        figures["state_cpu_x_save"] = med["state_commit_cpu"] / med["save_cpu"]
        figures["submit_held_cpu_x_save"] = med["submit_held_cpu"] / med["save_cpu"]
        figures["folder_submit_total_x_save"] = ((med["s_save_s"] + med["c_submit_held_s"])
                                                 / med["s_save_s"])
        # The whole loop, not only the call: the loop's wall with background commits (T:
        # on the run's thread, C: the child process) less S's (save alone), per
        # checkpoint, in units of S's save; the drain at the end apart (per checkpoint
        # too); the loop thread's own CPU likewise.
        n = a.checkpoints * a.rounds
        save = med["s_save_s"]
        for p in ("t", "c"):
            figures[f"pass_{p}_extra_per_ckpt_x_save"] = (
                (figures[f"pass_{p}_loop_s"] - figures["pass_s_loop_s"]) / n / save)
            figures[f"pass_{p}_drain_per_ckpt_x_save"] = figures[f"pass_{p}_drain_s"] / n / save
            figures[f"pass_{p}_loop_extra_cpu_per_ckpt_s"] = (
                (figures[f"pass_{p}_loop_cpu"] - figures["pass_s_loop_cpu"]) / n)
            figures[f"pass_{p}_commit_cpu_per_ckpt_s"] = figures[f"pass_{p}_commit_cpu"] / n
        figures["peak_extra_rss_mb"] = max(max(r["folder_rss_mb"], r["state_rss_mb"])
                                           for r in rows)
        figures["save_peak_extra_rss_mb"] = max(r["save_rss_mb"] for r in rows)
        figures["rows"] = rows
        print(json.dumps({k: v for k, v in figures.items() if k != "rows"}, indent=2))
        for label, ok in (
                ("stored x raw <= 0.35 (folder commits)", figures["folder_ratio"] <= 0.35),
                ("stored x raw <= 0.35 (state dicts)", figures["state_ratio"] <= 0.35),
                ("stored x raw <= 0.35 (submitted)", figures["submit_ratio"] <= 0.35),
                ("save + commit <= 1.5x save (folder)", figures["folder_total_x_save"] <= 1.5),
                ("state dict commit <= 1.5x save", figures["state_commit_x_save"] <= 1.5),
                ("submit holds the loop <= 1.5x save", figures["submit_held_x_save"] <= 1.5),
                ("save + folder submit <= 1.5x save",
                 figures["folder_submit_total_x_save"] <= 1.5),
                ("whole loop, background commits (child process): extra wall <= 1.5x save "
                 "per checkpoint", figures["pass_c_extra_per_ckpt_x_save"] <= 1.5),
                ("every checkpoint committed bit-exact (T and C)",
                 figures["pass_t_bit_exact"] == a.rounds == figures["pass_c_bit_exact"])):
            print(f"{'PASS' if ok else 'MISS'}  {label}")
        if a.json:
            a.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
