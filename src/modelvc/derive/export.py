"""`onnx-export`: a transformers model (safetensors) to ONNX with torch.onnx (the
TorchScript exporter: no onnxscript needed), dynamic batch and sequence axes, then a
numerical check: the source in torch and the export in ONNX Runtime on the same seeded
token ids (two shapes), the max abs error of the output recorded. Tokenizer and config
files are copied; the weights are the export's initializers."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import samples
from .files import architecture
from .recipe import Applied, unknown

WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
SHAPES = ((2, 16), (1, 7))  # (batch, sequence) of the numerical check


class OnnxExport:
    name = "onnx-export"
    version = "1"
    deterministic = True
    tolerance = 0.0
    tools = ("torch", "transformers", "onnx", "onnxruntime")

    def params(self, raw: Mapping[str, str]) -> dict[str, Any]:
        unknown(raw, ("opset",), self.name)
        text = raw.get("opset", "17")
        if not text.isdigit() or not 11 <= int(text) <= 25:
            raise UsageError(f"onnx-export: opset {text!r} is not a number in 11..25",
                             hint="--param opset=17")
        return {"opset": int(text)}

    def apply(self, files_dir: Path, params: Mapping[str, Any], out_dir: Path) -> Applied:
        import torch

        if files_dir.is_file() or not (files_dir / "config.json").is_file():
            raise UsageError("onnx-export needs a transformers model folder (config.json "
                             "and safetensors weights)")
        config, cls = architecture(files_dir)
        vocab = getattr(config, "vocab_size", None)
        if not isinstance(vocab, int):
            raise UsageError("onnx-export: the config has no vocab_size; this recipe exports "
                             "token-input transformers models")
        model = cls.from_pretrained(files_dir, dtype=torch.float32).eval()

        class First(torch.nn.Module):
            """The model's first output (last_hidden_state, logits) as a plain tensor."""

            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]

        # The reference outputs first: exporting leaves the module changed (its output
        # after torch.onnx.export differs from before; the export matches the before).
        feeds = samples.token_feeds(vocab, SHAPES)
        want = samples.torch_outputs(model, feeds)
        ids = torch.from_numpy(feeds[0]["input_ids"])
        dest = out_dir / "model.onnx"
        axes = {0: "batch", 1: "sequence"}
        with torch.no_grad():
            torch.onnx.export(First(), (ids, torch.ones_like(ids)), str(dest), dynamo=False,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["output"], opset_version=params["opset"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "output": axes})
        for p in sorted(files_dir.rglob("*")):
            if p.is_file() and not p.name.endswith(WEIGHTS) and \
                    not p.name.endswith(".safetensors.index.json"):
                target = out_dir / p.relative_to(files_dir).as_posix()
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, target)
        sess = samples.onnx_session(dest)
        errors = samples.token_error(want, lambda f: sess.run(None, f)[0], feeds)
        return Applied(stats={"method": "torch.onnx.export (TorchScript)",
                              "opset": params["opset"], "output": "output (first output)",
                              "check_shapes": [list(s) for s in SHAPES],
                              "output_samples_seed": samples.SEED, **errors})
