"""ingest/refs.py: a new ref name that some version id of the model starts with."""

from __future__ import annotations

import pytest

from modelvc.errors import InvalidName
from modelvc.registry import Registry


def test_a_word_of_hex_letters_is_refused_once_an_id_starts_with_it(reg: Registry) -> None:
    n = 0
    while True:  # ids are hashes: commit until one starts with four letters a-f
        v = reg.commit_files({"x.bin": str(n).encode()}, model="m", message=str(n))
        n += 1
        if v.id[:4].isalpha():
            break
    word = v.id[:4]
    for make in (lambda: reg.tag("m@v1", word), lambda: reg.create_branch("m", word),
                 lambda: reg.promote("m@v1", word, create=True),
                 lambda: reg.commit_files({"y": b"y"}, model="m", tags=[word]),
                 lambda: reg.commit_files({"y": b"y"}, model="m", branch=word)):
        with pytest.raises(InvalidName, match="a version id of m starts with it"):
            make()
    assert {r.name for r in reg.refs("m")} == {"main"}
    other = next(w for w in ("beef", "cafe", "face") if not v.id.startswith(w))
    assert reg.tag("m@v1", other).name == other
