"""transformers' push_to_hub of a model and its tokenizer to a fresh repo (a tiny BERT
built from a config: nothing downloaded), then from_pretrained of it by a tag."""

from __future__ import annotations

import uuid
from pathlib import Path

from .conftest import WORDS, Hub


def test_push_to_hub_then_from_pretrained_by_tag(hub: Hub, hf_env: Path,
                                                 tmp_path: Path) -> None:
    import torch
    from huggingface_hub import HfApi
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizer

    repo = f"acme/pushed-{uuid.uuid4().hex[:8]}"
    HfApi().create_repo(repo)  # fresh and empty, as push_to_hub meets it
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=37, vocab_size=99))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab))
    model.push_to_hub(repo, commit_message="the model")
    tokenizer.push_to_hub(repo, commit_message="its tokenizer")
    api = HfApi()
    api.create_tag(repo, tag="release-1")
    # a later push must not change what the tag names
    model.config.id2label = {0: "a", 1: "b"}
    model.push_to_hub(repo, commit_message="labels")

    with hub.open() as reg:
        model_name = repo.replace("/", "--")
        history = [(v.number, v.message, v.author) for v in reg.versions(model_name)]
        tagged = reg.resolve(f"{model_name}@release-1")
    assert history == [(3, "labels", "alice"), (2, "its tokenizer", "alice"),
                       (1, "the model", "alice")]
    assert tagged.number == 2

    got = AutoModel.from_pretrained(repo, revision="release-1", cache_dir=tmp_path / "c")
    for name, tensor in model.state_dict().items():
        assert torch.equal(got.state_dict()[name], tensor), name
    assert got.config.id2label != model.config.id2label  # the tag's config, not main's
    tok = AutoTokenizer.from_pretrained(repo, revision="release-1", cache_dir=tmp_path / "c")
    assert tok("hello world")["input_ids"] == tokenizer("hello world")["input_ids"]
    commits = [c.title for c in api.list_repo_commits(repo, revision="release-1")]
    assert commits == ["its tokenizer", "the model"]
