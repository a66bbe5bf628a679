"""decode_delta_run: a run of delta links summed in one pass equals link-by-link decoding."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.codec import decode_block, decode_delta_run, encode_block

CODES = ["F32", "BF16", "F16", "F64", "I64", "I32", "U8", "I8"]
WIDTH = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1}


@settings(max_examples=60, deadline=None)
@given(code=st.sampled_from(CODES), n=st.integers(0, 300), links=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), same_at=st.integers(-1, 3))
def test_run_matches_link_by_link(code: str, n: int, links: int, seed: int,
                                  same_at: int) -> None:
    rng = np.random.default_rng(seed)
    width = WIDTH[code]
    # Arbitrary bit patterns (NaN payloads, -0.0, subnormals included), then small edits.
    versions = [rng.integers(0, 256, n * width, dtype=np.uint8).tobytes()]
    for k in range(links):
        prev = np.frombuffer(versions[-1], dtype=np.uint8).copy()
        if k != same_at and n:
            idx = rng.integers(0, n * width, max(1, n // 3))
            prev[idx] ^= rng.integers(1, 256, idx.size, dtype=np.uint8)
        versions.append(prev.tobytes())
    blocks = []
    for old, new in itertools.pairwise(versions):
        mode, payload = encode_block(new, code, ref=old, ref_code=code)
        if mode == "full":  # the run only holds delta links; force one for the test
            from modelvc.codec.delta import delta_encode
            from modelvc.codec.planes import compress_planes

            mode, payload = "delta", compress_planes(delta_encode(new, old, code), width)
        blocks.append((mode, payload))
        assert decode_block(mode, payload, code, n, ref=old, ref_code=code) == new
    assert decode_delta_run(versions[0], blocks, code, n) == versions[-1]


@settings(max_examples=60, deadline=None)
@given(code=st.sampled_from(CODES), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_extrap_round_trips(code: str, n: int, seed: int) -> None:
    from modelvc.codec.delta import delta_encode, extrap_encode
    from modelvc.codec.planes import compress_planes

    rng = np.random.default_rng(seed)
    width = WIDTH[code]
    a = rng.integers(0, 256, n * width, dtype=np.uint8).tobytes()
    b, c = (rng.integers(0, 256, n * width, dtype=np.uint8).tobytes() for _ in range(2))
    k = 1 + seed % 3
    payload = bytes([k]) + compress_planes(extrap_encode(c, b, a, code, k), width)
    assert decode_block("extrap", payload, code, n, ref=b, ref_code=code, ref2=a) == c
    link = compress_planes(delta_encode(b, a, code), width)
    assert decode_delta_run(a, [("delta", link), ("extrap", payload)], code, n) == c


def test_extrap_is_chosen_for_steady_steps() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1 << 16).astype(np.float32)
    step = (rng.standard_normal(a.size) * 1e-3).astype(np.float32)
    b = a + step
    c = b + step  # the same step again (as weight decay alone would give)
    mode, payload = encode_block(c.tobytes(), "F32", ref=b.tobytes(), ref2=a.tobytes())
    plain = encode_block(c.tobytes(), "F32", ref=b.tobytes())[1]
    assert mode in ("extrap", "gextrap") and len(payload) < 0.6 * len(plain)
    out = decode_block(mode, payload, "F32", a.size, ref=b.tobytes(), ref2=a.tobytes())
    assert out == c.tobytes()


def test_extrap_multiple_for_a_reference_two_steps_back() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(1 << 16).astype(np.float32)
    step = (rng.standard_normal(a.size) * 1e-3).astype(np.float32)
    b = a + step
    d = b + step + step  # two checkpoints after b: the reference is two steps back
    mode, payload = encode_block(d.tobytes(), "F32", ref=b.tobytes(), ref2=a.tobytes())
    assert mode in ("extrap", "gextrap") and payload[0] == 2
    assert decode_block(mode, payload, "F32", a.size, ref=b.tobytes(),
                        ref2=a.tobytes()) == d.tobytes()


def test_extrap_multiple_past_a_plateau() -> None:
    # Rows that only decay move by a few fixed ulp counts per checkpoint (MiniLM's unseen
    # tokens: +-40 or +-60), so k = 1 and k = 2 leave them residuals of four values each,
    # the same size, and k = 3 (the reference three checkpoints back) exactly zero; a few
    # rows that moved steadily by one step do best at k = 1, so k = 2 is the larger. The
    # search must not stop at the first k that does not improve.
    from modelvc.codec.delta import delta_encode, extrap_encode, from_ordered, to_ordered
    from modelvc.codec.planes import compress_planes

    rng = np.random.default_rng(2)
    n = 1 << 16
    a = to_ordered((rng.standard_normal(n) * 0.05).astype(np.float32).view(np.uint32))
    steady = rng.random(n) < 0.05
    step = np.where(steady, rng.integers(-96, 97, n), rng.choice([-60, -40, 40, 60], n))
    step_u = (step % (1 << 32)).astype(np.uint32)
    b = a + step_u
    d = b + np.where(steady, step_u, step_u * np.uint32(3))
    a_, b_, d_ = (from_ordered(x).tobytes() for x in (a, b, d))
    sizes = [len(compress_planes(extrap_encode(d_, b_, a_, "F32", k) if k else
                                 delta_encode(d_, b_, "F32"), 4)) for k in range(4)]
    assert sizes[1] < 0.97 * sizes[0] and sizes[2] >= sizes[1] and sizes[3] < sizes[1] / 2
    mode, payload = encode_block(d_, "F32", ref=b_, ref2=a_)
    assert mode in ("extrap", "gextrap") and payload[0] == 3
    assert decode_block(mode, payload, "F32", n, ref=b_, ref2=a_) == d_


def test_extrap_multiple_past_four_is_guessed() -> None:
    # A sibling at the chain bound seven checkpoints past its reference: rows that only
    # decay move by the same ulp count each time, so k = 7 leaves zeros; the four
    # multiples tried on every block do not reach it, the median step ratio does.
    from modelvc.codec.delta import from_ordered, to_ordered

    rng = np.random.default_rng(3)
    n = 1 << 16
    a = to_ordered((rng.standard_normal(n) * 0.05).astype(np.float32).view(np.uint32))
    step = (rng.choice([-60, -40, 40, 60], n) % (1 << 32)).astype(np.uint32)
    b = a + step
    d = b + step * np.uint32(7)
    a_, b_, d_ = (from_ordered(x).tobytes() for x in (a, b, d))
    mode, payload = encode_block(d_, "F32", ref=b_, ref2=a_)
    assert mode in ("extrap", "gextrap") and payload[0] == 7
    assert decode_block(mode, payload, "F32", n, ref=b_, ref2=a_) == d_
    link = encode_block(b_, "F32", ref=a_)
    assert decode_delta_run(a_, [link, (mode, payload)], "F32", n) == d_


def test_step_ratio_of_noise_is_not_a_multiple() -> None:
    # Dense weights' steps are uncorrelated noise: the median step ratio is near 0, no
    # multiple is taken and the block stays a plain delta.
    rng = np.random.default_rng(4)
    a = (rng.standard_normal(1 << 16) * 0.05).astype(np.float32)
    b = a + (rng.standard_normal(a.size) * 1e-4).astype(np.float32)
    c = b + (rng.standard_normal(a.size) * 1e-4).astype(np.float32)
    mode, payload = encode_block(c.tobytes(), "F32", ref=b.tobytes(), ref2=a.tobytes())
    assert mode == "delta"
    assert decode_block(mode, payload, "F32", a.size, ref=b.tobytes()) == c.tobytes()
