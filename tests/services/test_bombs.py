"""The built bombs inflate as zlib and gzip inflate them: every byte a zero, as many as
said, checksums right."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tests.services.bombs import bomb, deflate_zeros


@pytest.mark.parametrize("size", [1, 2, 258, 259, 260, 258 * 8 + 1, 258 * 9 + 1, 10_000])
def test_raw_stream_inflates_to_zeros(size: int) -> None:
    raw, n = deflate_zeros(size)
    assert size <= n < size + 258
    assert zlib.decompress(raw, -15) == bytes(n)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_bodies_inflate_and_check(encoding: str) -> None:
    body = bomb(encoding, 3)
    out = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body)
    assert len(out) >= 3 << 20 and out == bytes(len(out))
    assert len(body) < (3 << 20) // 1000
