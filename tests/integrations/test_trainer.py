"""The HF Trainer with ModelvcCallback: a tiny BERT (built from a config, one layer of
width 16: MiniLM is too slow for a test on a busy CPU) learns a synthetic task for 30
steps, a checkpoint committed every 5; versions, metrics, params, lineage and the best
tag recorded; and resuming from a version continues with the same losses as resuming
from the folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelvc.registry import Registry
from tests.services.lazy import lazy

if TYPE_CHECKING:
    import torch
else:
    torch = lazy("torch")  # imported by the tests, not at collection

STEPS, EVERY = 30, 5


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """One torch thread: a model this small gains nothing from two, and on a busy
    machine the second spins waiting for a core (most of the test's wall time)."""
    pytest.importorskip("transformers")  # here, not at collection (tests/services/lazy.py)
    pytest.importorskip("accelerate")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def Synthetic(n: int, seed: int) -> Any:
    """Label 1 when token 7 occurs in the sequence."""

    class Synthetic(torch.utils.data.Dataset):  # type: ignore[misc]
        def __init__(self, n: int, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(1, 50, (n, 12), generator=g)
            self.labels = (self.ids == 7).any(1).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": self.ids[i],
                    "attention_mask": torch.ones(12, dtype=torch.long),
                    "labels": self.labels[i]}

    return Synthetic(n, seed)


def _trainer(out: Path, callbacks: list[Any], steps: int = STEPS, **more: Any) -> Any:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=16, num_labels=2))
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8,
        learning_rate=2e-3, eval_strategy="steps", eval_steps=EVERY, save_strategy="steps",
        save_steps=EVERY, logging_steps=1, report_to=[], seed=0, use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0, **more)
    return Trainer(model=model, args=args, train_dataset=Synthetic(256, 1),
                   eval_dataset=Synthetic(16, 2), callbacks=callbacks)


def _losses(trainer: Any, after: int) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in trainer.state.log_history
            if "loss" in e and e["step"] > after]


def test_trainer_checkpoints_become_versions_and_resume_from_one(
        reg: Registry, tmp_path: Path) -> None:
    from modelvc.integrations.transformers import ModelvcCallback, checkout_checkpoint

    data = tmp_path / "train.txt"
    data.write_text("synthetic: label 1 when token 7 occurs\n")
    cb = ModelvcCallback(reg, model="tiny", branch="run-1", data=[data])
    first = _trainer(tmp_path / "out", [cb])
    first.train()

    steps = list(range(EVERY, STEPS + 1, EVERY))
    assert sorted(cb.by_step) == steps
    versions = reg.log("tiny@run-1")
    assert [v.metrics["step"] for v in versions] == steps[::-1]  # one line of work
    v10 = cb.by_step[10]
    assert v10.params["learning_rate"] == 2e-3 and v10.params["save_steps"] == EVERY
    assert "output_dir" not in v10.params
    assert v10.metrics["eval_loss"] == next(e["eval_loss"] for e in first.state.log_history
                                             if e.get("step") == 10 and "eval_loss" in e)
    assert "loss" in v10.metrics and v10.metrics["epoch"] > 0
    assert v10.lineage["run"]["step"] == 10
    assert v10.lineage["data"][0]["path"].endswith("train.txt")
    files = {f.path for f in reg.manifest("tiny@run-1").files}
    assert {"model.safetensors", "config.json", "trainer_state.json"} <= files
    best = min(versions, key=lambda v: v.metrics["eval_loss"])
    assert reg.resolve("tiny@run-1-best").id == best.id

    # Resume at step 15 from the folder the Trainer wrote, and from the version.
    from_folder = _trainer(tmp_path / "a", [])
    from_folder.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-15"))
    cb2 = ModelvcCallback(reg, model="tiny", branch="resumed", parent=f"tiny@{cb.by_step[15].id}")
    from_version = _trainer(tmp_path / "b", [cb2])
    from_version.train(resume_from_checkpoint=checkout_checkpoint(
        reg, f"tiny@{cb.by_step[15].id}", tmp_path / "co"))
    a, b = _losses(from_folder, 15), _losses(from_version, 15)
    assert [s for s, _ in a] == list(range(16, STEPS + 1))
    assert a == b
    # ... which is the curve of the uninterrupted run.
    assert [loss for _, loss in _losses(first, 15)] == pytest.approx([x for _, x in a],
                                                                    rel=1e-4)
    # The resumed run continues the line of work from the version it resumed.
    line = [v.id for v in reg.log("tiny@resumed")]  # newest first: 30, 25, 20, then run-1's
    assert line[3:] == [cb.by_step[s].id for s in (15, 10, 5)]


@pytest.mark.parametrize("background", [True, False])
def test_commits_survive_the_trainer_rotating_folders(
        reg: Registry, tmp_path: Path, background: bool) -> None:
    """With save_total_limit=1 the Trainer deletes each folder at the next save, and
    every version still holds its own step's checkpoint: in the background (the default:
    the folder is staged by hard links and committed while training goes on) and
    synchronously."""
    import json

    from modelvc.api import staging
    from modelvc.integrations.transformers import ModelvcCallback

    cb = ModelvcCallback(reg, model="tiny", branch="bg", background=background)
    trainer = _trainer(tmp_path / "out", [cb], steps=15, save_total_limit=1)
    trainer.train()
    assert sorted(cb.by_step) == [5, 10, 15]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["checkpoint-15"]
    assert staging.pending(Path(reg.location) / "staging") == []
    for step, v in cb.by_step.items():
        assert v.metrics["step"] == step and v.lineage["run"]["step"] == step
        out = tmp_path / f"co-{step}"
        reg.checkout(f"tiny@{v.id}", out)
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == step
    final = tmp_path / "out" / "checkpoint-15"
    assert (tmp_path / "co-15" / "model.safetensors").read_bytes() == (
        final / "model.safetensors").read_bytes()
    assert reg.resolve("tiny@bg-best").id in {v.id for v in cb.by_step.values()}


def test_a_failed_background_commit_stops_training_and_stays_staged(
        reg: Registry, tmp_path: Path) -> None:
    """A background commit that fails (here the registry refuses the model name) is
    raised out of `trainer.train()`, not swallowed; its checkpoint stays staged."""
    from modelvc.api import staging
    from modelvc.errors import InvalidName
    from modelvc.integrations.transformers import ModelvcCallback

    cb = ModelvcCallback(reg, model="no/such name", branch="bg")
    trainer = _trainer(tmp_path / "out", [cb], steps=15, save_total_limit=1)
    with pytest.raises(InvalidName) as err:
        trainer.train()
    assert any("stays staged" in n for n in getattr(err.value, "__notes__", []))
    assert cb.by_step == {}
    assert staging.pending(Path(reg.location) / "staging")[0].step == 5
