"""Checkpoint benchmark: a MiniLM fine-tuning run (sequence classification on a small
synthetic task, CPU, in-process) checkpointed every N steps. Two passes over the same
run (same seeds, same losses):

  A. each checkpoint saved with `save_pretrained` alone (the peer: what a training loop
     does anyway), committed as that folder (what ModelvcCallback does after the Trainer
     saved it), and committed from the state dict with `reg.run(...).commit` (no file);
  B. each checkpoint handed to `reg.run(...).submit` (tensors copied, the encode on the
     run's thread while the next steps train);
  C. each checkpoint saved with `save_pretrained`, its folder submitted with
     `run.submit(folder=...)` (what `ModelvcCallback` does by default: staged by hard
     links, committed on the run's thread), the folder then deleted at once (the
     Trainer's rotation with save_total_limit=1).

  S. the same run with `save_pretrained` alone (the peer of C's whole loop).

Reported: stored bytes x raw bytes (target <= 0.35x); the time the training loop is held
per checkpoint relative to save_pretrained alone (target <= 1.5x): A's commits (save +
folder commit, the state-dict commit), B's submit and C's save + folder submit; C's whole
loop against S's (wall, and the loop thread's CPU: the commits run on another thread);
the CPU seconds of each (process CPU; B's encode runs on another thread: its CPU is A's
state-dict commit's); the peak
extra RSS during a commit (sampled every 5 ms, above the RSS just before it).

    python bench/checkpoints.py                      # 20 checkpoints, every 2 steps
    python bench/checkpoints.py --checkpoints 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
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

import psutil
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--every", type=int, default=2, help="training steps per checkpoint")
    ap.add_argument("--lr", type=float, default=2e-5)
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
        folder_bg_reg = Registry.init(work / "folder-bg-reg")
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
        model, train = trainer(a)  # pass S: the loop saving only (the peer of pass C)
        t_s, c_s, m_s = time.perf_counter(), time.process_time(), time.thread_time()
        for k in range(a.checkpoints):
            t0 = time.perf_counter()
            train()
            t1 = time.perf_counter()
            dest = work / "ckpt" / f"checkpoint-{(k + 1) * a.every}"
            model.save_pretrained(dest)
            rows[k].update(s_train_s=t1 - t0, s_save_s=time.perf_counter() - t1)
            shutil.rmtree(dest)
        pass_s = (time.perf_counter() - t_s, time.process_time() - c_s,
                  time.thread_time() - m_s)
        model, train = trainer(a)  # pass C: saved folders staged and submitted (the callback)
        t_c, c_c, m_c = time.perf_counter(), time.process_time(), time.thread_time()
        with folder_bg_reg.run(model="minilm-cls", branch="run") as r:
            for k in range(a.checkpoints):
                t0 = time.perf_counter()
                train()
                t1 = time.perf_counter()
                dest = work / "ckpt" / f"checkpoint-{(k + 1) * a.every}"
                model.save_pretrained(dest)
                t2 = time.perf_counter()
                held_s, held_cpu, _ = timed(partial(r.submit, folder=dest,
                                                    step=(k + 1) * a.every))
                shutil.rmtree(dest)  # the Trainer's rotation: the commit must not need it
                rows[k].update(folder_submit_held_s=held_s, folder_submit_held_cpu=held_cpu,
                               c_train_s=t1 - t0, c_save_s=t2 - t1)
                print(f"C {k + 1:2d}: folder submit held the loop {held_s:6.3f}s", flush=True)
            t_drain = time.perf_counter()
        pass_c_drain_s = time.perf_counter() - t_drain  # the commits still pending at the end
        pass_c_s, pass_c_cpu = time.perf_counter() - t_c, time.process_time() - c_c
        pass_c_loop_cpu = time.thread_time() - m_c
        figures: dict[str, Any] = {"checkpoints": a.checkpoints, "every": a.every,
                                   "lr": a.lr, "load_before": load0,
                                   "load_after": os.getloadavg(), "pass_b_s": pass_b_s,
                                   "pass_b_cpu": pass_b_cpu, "pass_c_s": pass_c_s,
                                   "pass_c_cpu": pass_c_cpu, "pass_c_drain_s": pass_c_drain_s,
                                   "pass_c_loop_cpu": pass_c_loop_cpu, "pass_s_s": pass_s[0],
                                   "pass_s_cpu": pass_s[1], "pass_s_loop_cpu": pass_s[2]}
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
                         "submit_held_cpu", "folder_submit_held_s", "folder_submit_held_cpu",
                         "s_train_s", "s_save_s", "c_train_s", "c_save_s")}
        figures.update({f"median_{k}": v for k, v in med.items()})
        figures["folder_total_x_save"] = (med["save_s"] + med["folder_commit_s"]) / med["save_s"]
        figures["state_commit_x_save"] = med["state_commit_s"] / med["save_s"]
        figures["submit_held_x_save"] = med["submit_held_s"] / med["save_s"]
        figures["folder_cpu_x_save"] = ((med["save_cpu"] + med["folder_commit_cpu"])
                                        / med["save_cpu"])
        figures["state_cpu_x_save"] = med["state_commit_cpu"] / med["save_cpu"]
        figures["submit_held_cpu_x_save"] = med["submit_held_cpu"] / med["save_cpu"]
        figures["folder_submit_total_x_save"] = ((med["save_s"] + med["folder_submit_held_s"])
                                                 / med["save_s"])
        figures["folder_submit_total_cpu_x_save"] = (
            (med["save_cpu"] + med["folder_submit_held_cpu"]) / med["save_cpu"])
        # The whole loop, not only the call: pass C (save + submit, the commits on the run's
        # thread, drained at the end) against pass S (save alone), per checkpoint, in
        # units of one save; and the loop thread's own CPU (the commits' CPU is on the
        # other thread, on the spare core).
        n = a.checkpoints
        figures["pass_c_extra_per_ckpt_x_save"] = (
            (figures["pass_c_s"] - figures["pass_s_s"]) / n / med["save_s"])
        figures["pass_c_loop_extra_cpu_per_ckpt_x_save"] = (
            (pass_c_loop_cpu - pass_s[2]) / n / med["save_cpu"])
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
                ("loop CPU with folder submits <= save + 0.5x save, per checkpoint",
                 figures["pass_c_loop_extra_cpu_per_ckpt_x_save"] <= 0.5)):
            print(f"{'PASS' if ok else 'MISS'}  {label}")
        if a.json:
            a.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
