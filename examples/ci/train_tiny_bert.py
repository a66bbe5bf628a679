"""Train a tiny BERT (transformers BertModel from a config) for a few steps; save safetensors.

usage: python train_tiny_bert.py OUT_DIR DATA_DIR METRICS_JSON [--steps N]
The objective is token reconstruction through the tied input embeddings (a stand-in for
masked-language modelling that needs no tokenizer download); token_accuracy is measured
on held-out sequences written to DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("data")
    p.add_argument("metrics")
    p.add_argument("--steps", type=int, default=30)
    a = p.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, vocab_size=99, max_position_embeddings=64)
    model = BertModel(cfg)
    data = Path(a.data)
    data.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 99, (64, 16))
    test = rng.integers(0, 99, (16, 16))
    np.save(data / "train_ids.npy", train)
    np.save(data / "test_ids.npy", test)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    emb = model.embeddings.word_embeddings.weight
    ids = torch.from_numpy(train)
    loss = torch.tensor(0.0)
    for _ in range(a.steps):
        logits = model(input_ids=ids).last_hidden_state @ emb.T
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 99), ids.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        t = torch.from_numpy(test)
        pred = (model(input_ids=t).last_hidden_state @ emb.T).argmax(-1)
        acc = float((pred == t).float().mean())
    model.save_pretrained(a.out)  # safetensors by default
    metrics = {"loss": float(loss.detach()), "token_accuracy": acc}
    Path(a.metrics).write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
