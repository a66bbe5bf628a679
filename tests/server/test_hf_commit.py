"""The incremental reader of Hugging Face commit bodies (server/hf_commit.py): the same
operations whatever the pieces the body arrives in, large contents spooled to files
(never a string in memory), malformed lines refused naming them."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from modelvc.server.hf_commit import INLINE, CommitOps, CommitReader
from modelvc.server.hf_repo import HfError


def _body(*items: dict[str, object]) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def _file(path: str, data: bytes) -> dict[str, object]:
    return {"key": "file", "value": {"content": base64.b64encode(data).decode(),
                                     "path": path, "encoding": "base64"}}


def _read(body: bytes, folder: Path, cuts: list[int]) -> CommitOps:
    reader = CommitReader(folder)
    last = 0
    for c in [*cuts, len(body)]:
        reader.feed(body[last:c])
        last = c
    return reader.close()


def _content(value: bytes | Path) -> bytes:
    return value.read_bytes() if isinstance(value, Path) else value


def test_any_split_of_the_body_reads_the_same(tmp_path: Path) -> None:
    rng = random.Random(7)
    big = rng.randbytes(3 * INLINE + 5)
    body = _body({"key": "header", "value": {"summary": 'a "quoted" \\ \u00e9 \U0001f600',
                                            "description": "x\ny", "parentCommit": None}},
                 _file("model.safetensors", big), _file("small/README.md", b"# hi\n"),
                 {"key": "deletedFile", "value": {"path": "old.bin"}},
                 {"key": "deletedFolder", "value": {"path": "logs/"}})
    # Escapes in the big content ('\/' is legal JSON for '/').
    body = body.replace(b"/", b"\\/", 40)
    for trial in range(40):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randrange(0, 60)))
        if trial == 0:
            cuts = list(range(1, len(body)))[:2000]  # byte by byte at the start
        folder = tmp_path / str(trial)
        folder.mkdir()
        ops = _read(body, folder, cuts)
        assert ops.summary == 'a "quoted" \\ \u00e9 \U0001f600' and ops.description == "x\ny"
        assert sorted(ops.add) == ["model.safetensors", "small/README.md"]
        spooled = ops.add["model.safetensors"]
        assert isinstance(spooled, Path) and spooled.name == "model.safetensors"
        assert spooled.read_bytes() == big
        assert ops.add["small/README.md"] == b"# hi\n"
        assert ops.delete == ["old.bin"] and ops.delete_dirs == ["logs"]


@pytest.mark.parametrize(("body", "says"), [
    (b'{"key": "file", "value": {"content": "' + b"A" * (INLINE + 3) + b'", "path": "x"}}',
     "incomplete"),
    (b'{"key": "file", "value": {"content": "' + b"AA==" * (INLINE // 2) + b'", "path": "x"}}',
     "padding"),
    (b'{"key": "file", "value": {"content": "' + b"A!AA" * (INLINE // 2) + b'", "path": "x"}}',
     "not base64"),
    (b'{"key": "header", "value": {"summary": "' + b"s" * (2 << 20) + b'"}}', "longer than"),
    (b'{"key": "header", "value": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "deeper"),
    (b'{"key": "header", "value": {"summary": "x"}\n', "ends inside"),
    (b'{"key" "header"}', "expected ':'"),
    (b'{"key": "file", "value": {"content": "aGk=", "path": "a\\u0000b"}}', "control"),
    (b'{"key": "file", "value": {"content": "aGk=", "path": "x", "encoding": "utf-8"}}',
     "only base64"),
    (b'{"key": "lfsFile", "value": {"path": "x"}}', "not supported"),
])
def test_a_malformed_line_is_refused_naming_it(tmp_path: Path, body: bytes, says: str) -> None:
    body = _body({"key": "header", "value": {"summary": "ok"}}) + body
    with pytest.raises(HfError) as info:
        _read(body, tmp_path, list(range(1000, len(body), 65536)))
    assert info.value.status == 400
    assert says in info.value.message and "line 2" in info.value.message, info.value.message


def test_a_large_content_is_never_a_string_in_memory(tmp_path: Path) -> None:
    """The reader's buffers stay small while a 16 MiB content passes through it."""
    import tracemalloc

    data = random.Random(1).randbytes(16 << 20)
    body = _body(_file("w.bin", data))
    tracemalloc.start()
    try:
        reader = CommitReader(tmp_path)
        base = tracemalloc.get_traced_memory()[0]
        for i in range(0, len(body), 1 << 16):
            reader.feed(body[i:i + (1 << 16)])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    ops = reader.close()
    assert _content(ops.add["w.bin"]) == data
    assert peak < 2 << 20, f"the reader held {peak >> 10} KiB"
