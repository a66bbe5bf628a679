"""HTTP/2's wire helpers (serving/oipgrpc/http2.py): the HPACK decoder against the hpack
package's real encoder (dynamic table, Huffman, evictions, size updates), hostile blocks
that must end as HpackError and nothing else, and the integers and literals written."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as s

from modelvc.serving.oipgrpc import http2 as h

names = s.sampled_from([b":path", b":method", b"content-type", b"x-request-key",
                        b"user-agent", b"te", b"grpc-timeout", b"x-custom"])
values = s.binary(min_size=0, max_size=40).map(lambda b: bytes(c % 94 + 33 for c in b))
blocks = s.lists(s.lists(s.tuples(names, values), min_size=1, max_size=12), min_size=1,
                 max_size=12)


@settings(max_examples=200, deadline=None)
@given(blocks, s.booleans(), s.sampled_from([0, 64, 256, 4096]))
def test_decodes_what_the_hpack_encoder_writes(lists: list[list[tuple[bytes, bytes]]],
                                               huffman: bool, table: int) -> None:
    enc, dec = hpack.Encoder(), h.HeaderDecoder()
    enc.header_table_size = table  # emits a size update in the next block
    for fields in lists:
        block = enc.encode(fields, huffman=huffman)
        assert dec.decode(block) == fields
    assert dec.size <= dec.cap


def test_never_indexed_and_indexed_names() -> None:
    enc, dec = hpack.Encoder(), h.HeaderDecoder()
    fields = [hpack.NeverIndexedHeaderTuple(b"authorization", b"secret"),
              (b":method", b"POST"), (b":status", b"200")]
    assert dec.decode(enc.encode(fields)) == [(k, v) for k, v in fields]
    assert dec.dynamic == []  # never-indexed and static fields add nothing


@settings(max_examples=300, deadline=None)
@given(s.binary(max_size=64))
def test_garbage_is_an_hpack_error(block: bytes) -> None:
    """Any other exception (IndexError, a Huffman error, ...) fails the test."""
    try:
        fields = h.HeaderDecoder(max_list=1024).decode(block)
    except h.HpackError:
        return
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields)


def test_limits() -> None:
    with pytest.raises(h.HpackError, match="no table entry"):
        h.HeaderDecoder().decode(b"\xbf")  # index 63: the dynamic table is empty
    with pytest.raises(h.HpackError, match="table size"):
        h.HeaderDecoder(max_table=4096).decode(h.hpack_int(8192, 5, 0x20))
    big = hpack.Encoder().encode([(b"x-big", b"v" * 2000)], huffman=False)
    with pytest.raises(h.HpackError, match="limit"):
        h.HeaderDecoder(max_list=1024).decode(big)
    with pytest.raises(h.HpackError, match=r"cut short|runs past"):
        h.HeaderDecoder().decode(big[:-10])


def test_written_literals_decode() -> None:
    assert h.hpack_int(10, 5) == b"\x0a" and h.hpack_int(1337, 5) == b"\x1f\x9a\x0a"
    block = (h.STATUS_200 + h.literal_indexed_name(h.CONTENT_TYPE, b"application/grpc")
             + h.literal(b"grpc-status", b"0") + h.literal(b"x-long", b"y" * 300))
    assert hpack.Decoder().decode(block, raw=True) == [
        (b":status", b"200"), (b"content-type", b"application/grpc"),
        (b"grpc-status", b"0"), (b"x-long", b"y" * 300)]
    frames = h.headers(1, b"z" * 40_000, True, 16_384)  # over one frame: CONTINUATIONs
    kinds = []
    at = 0
    while at < len(frames):
        length, kind, flags, sid = h.parse_head(frames, at)
        kinds.append((kind, flags, sid))
        at += 9 + length
    assert kinds == [(h.HEADERS, h.END_STREAM, 1), (h.CONTINUATION, 0, 1),
                     (h.CONTINUATION, h.END_HEADERS, 1)]
