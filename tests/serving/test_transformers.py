"""The transformers runtime: a tiny BERT text classifier served from a safetensors folder."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from modelvc.registry import Registry
from tests.serving.conftest import Start

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "model", "very"]


def _tiny_classifier(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, vocab_size=len(WORDS), num_labels=2,
                     id2label={0: "NEGATIVE", 1: "POSITIVE"},
                     label2id={"NEGATIVE": 0, "POSITIVE": 1})
    BertForSequenceClassification(cfg).save_pretrained(folder)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(folder)


def _infer(url: str, texts: list[str]) -> dict[str, object]:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}
    req = urllib.request.Request(f"{url}/v2/models/sentiment/infer",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        out: dict[str, object] = json.loads(resp.read())
    return out


def test_transformers_pipeline_served_over_oip(reg: Registry, tmp_path: Path,
                                               start_gateway: Start) -> None:
    from transformers import pipeline

    folder = tmp_path / "bert"
    _tiny_classifier(folder)
    assert not list(folder.glob("*.onnx"))  # the transformers runtime, not ONNX
    reg.commit(folder, model="sentiment", message="tiny classifier")
    reg.promote("sentiment@v1", "production", create=True)
    srv = start_gateway(reg, [{"model": "sentiment"}])
    meta = json.loads(urllib.request.urlopen(f"{srv.url}/v2/models/sentiment").read())
    assert meta["platform"] == "transformers"
    assert [i["name"] for i in meta["inputs"]] == ["text"]
    texts = ["very good model", "bad model"]
    doc = _infer(srv.url, texts)
    outputs = {o["name"]: o for o in doc["outputs"]}  # type: ignore[attr-defined]
    expected = pipeline("text-classification", model=str(folder), tokenizer=str(folder))(texts)
    assert outputs["label"]["data"] == [e["label"] for e in expected]
    assert [round(s, 4) for s in outputs["score"]["data"]] == [
        round(e["score"], 4) for e in expected]
