"""Pick a file's format and plan it: by extension first, then by magic bytes / content."""

from __future__ import annotations

import json
from pathlib import Path

from modelvc.errors import InvalidModelFile, PathNotFound
from modelvc.formats.chunking import MAX_SIZE
from modelvc.formats.plan import FilePlan, bytes_segments
from modelvc.formats.safetensors import plan_safetensors

# Pickle-based checkpoints (torch.save zip or legacy raw pickle, joblib, plain pickle).
PICKLE_EXTS = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})
_ZIP_MAGIC = b"PK\x03\x04"


def _looks_pickled(head: bytes) -> bool:
    # Protocol 2+ starts with PROTO (0x80) and the protocol number; torch's legacy
    # format is a sequence of such pickles.
    return head.startswith(_ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def plan_file(path: Path) -> FilePlan:
    """Split `path` into segments that rebuild it byte for byte.

    Raises InvalidModelFile if the file claims a format (by its extension) that its bytes
    do not follow, PathNotFound if it is missing. Pickles are never unpickled.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise PathNotFound(f"{path}: no such file")
        ext = path.suffix.lower()
        if ext == ".safetensors":
            return plan_safetensors(path)
        if ext == ".onnx":
            from modelvc.formats.onnx import plan_onnx  # its protobuf walker: ~1.5 ms to load

            return plan_onnx(path)
        return _plan_opaque(path, ext)
    except OSError as exc:
        raise InvalidModelFile(f"{path}: cannot read the file ({exc.strerror})") from exc


def _plan_opaque(path: Path, ext: str) -> FilePlan:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(MAX_SIZE if size <= MAX_SIZE else 8)
    segments = tuple(bytes_segments(path, 0, size))
    if ext in PICKLE_EXTS and (ext != ".bin" or _looks_pickled(head)):
        info = {"container": "zip" if head.startswith(_ZIP_MAGIC) else "pickle"}
        return FilePlan("pickle", size, segments, info)
    return FilePlan(_content_format(head, ext) if size <= MAX_SIZE else _large_format(path, ext),
                    size, segments, {})  # fmt: skip


JSON_PARSE_MAX = 64 << 10  # bigger .json files are labelled by their first character


def _content_format(data: bytes, ext: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    if ext == ".json":
        if len(data) > JSON_PARSE_MAX:  # a tokenizer.json: parsing it costs ~10 ms a commit
            return "json" if text.lstrip()[:1] in ("{", "[") else "text"
        try:
            json.loads(text)
            return "json"
        except ValueError:
            pass
    return "text"


def _large_format(path: Path, ext: str) -> str:
    """Label a large file without holding it in memory: text if it decodes as UTF-8."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "binary"
    return "json" if ext == ".json" else "text"
