from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import modelvc.codec as codec
from modelvc.codec.tensor import block_spans

from .strategies import perturbed_f32


def test_public_names_are_pinned() -> None:
    assert sorted(codec.__all__) == sorted(
        [
            "BLOCK_ELEMENTS", "DTYPES", "BlockInfo", "DTypeInfo", "TensorHeader",
            "TensorObjectWriter", "block_spans", "can_cast_predict", "cast_predict",
            "compress_planes", "decode_blob", "decode_block", "decode_chain",
            "decode_delta_run", "decode_tensor", "decompress_planes", "delta_decode",
            "delta_encode", "dtype_info", "encode_blob", "encode_block", "encode_tensor",
            "numpy_dtype", "read_header", "read_header_bytes",
        ]
    )  # fmt: skip
    for name in codec.__all__:
        assert getattr(codec, name) is not None


def test_blocks_encode_and_decode_on_threads() -> None:
    # Per-thread zstd contexts: concurrent use must give the same bytes as serial use.
    new, old = perturbed_f32(4000)
    spans = block_spans(4000, 100)

    def enc(span: tuple[int, int]) -> tuple[str, bytes]:
        s, e = span
        return codec.encode_block(new[s * 4 : e * 4], "F32", ref=old[s * 4 : e * 4])

    def dec(item: tuple[tuple[str, bytes], tuple[int, int]]) -> bytes:
        (mode, payload), (s, e) = item
        return codec.decode_block(mode, payload, "F32", e - s, ref=old[s * 4 : e * 4])

    serial = [enc(span) for span in spans]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(enc, spans))
        assert threaded == serial
        assert b"".join(pool.map(dec, zip(threaded, spans, strict=True))) == new
