"""safetensors: 8-byte little-endian header length, a JSON header, then the tensor data.

Parsed by hand (no safetensors package) and validated strictly, as the safetensors
library validates (0.8): a file that claims to be safetensors but is not must fail here
with a message that says what is wrong, not later inside a codec or in the user's
`load_file`. So a dtype the format does not define, a hole between tensors or bytes
after the last one are refused like the library refuses them; the hint says how to keep
such a file anyway, as opaque bytes under another extension. Dtypes the format defines
but modelvc's codecs do not (packed F4/F6) are kept as opaque segments of a valid file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from modelvc.codec.dtypes import DTYPES
from modelvc.errors import InvalidModelFile
from modelvc.formats.plan import FilePlan, Segment, fill_gaps

MAX_HEADER = 100_000_000  # same limit as the reference implementation
ITEMSIZES: dict[str, int] = {code: d.itemsize for code, d in DTYPES.items()}
# Every dtype the format defines (safetensors 0.8's Dtype), in bits per element: those
# without an ITEMSIZES entry are stored as opaque bytes.
BITS: dict[str, int] = {**{code: 8 * n for code, n in ITEMSIZES.items()}, "F4": 4,
                        "F6_E2M3": 6, "F6_E3M2": 6, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8}
_HINT = ("re-save it with safetensors (save_file / save_pretrained) or check the download; "
         "to keep it anyway as opaque bytes (stored exactly, its tensors not parsed), give "
         "it another extension, e.g. `mv {name} {name}.raw`")


def _bad(path: Path, what: str) -> InvalidModelFile:
    return InvalidModelFile(f"{path}: not a valid safetensors file: {what}",
                            hint=_HINT.format(name=path.name))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _read_header(path: Path) -> tuple[int, dict[str, Any]]:
    size = path.stat().st_size
    if size < 8:
        raise _bad(path, f"only {size} bytes, shorter than the 8-byte header length")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER:
            raise _bad(path, f"header length {n} exceeds the {MAX_HEADER}-byte limit")
        if n > size - 8:
            raise _bad(path, f"header length {n} is larger than the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, f"header is not UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _bad(path, f"header is a JSON {type(header).__name__}, expected an object")
    return n, header


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The parsed JSON header (tensor entries and optional "__metadata__"), validated."""
    n, header = _read_header(path)
    _validate(path, header, n, path.stat().st_size)
    return header


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(path: Path, name: str, entry: object, data_size: int) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise _bad(path, f"tensor {name!r}: entry is not an object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise _bad(path, f"tensor {name!r}: missing {key!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        raise _bad(path, f"tensor {name!r}: dtype {dtype!r} is not a string")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _bad(path, f"tensor {name!r}: shape {shape!r} must be non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise _bad(path, f"tensor {name!r}: data_offsets {offsets!r} must be [begin, end]")
    if dtype not in BITS:
        raise _bad(path, f"tensor {name!r}: unknown dtype {dtype!r} (safetensors defines "
                         f"{', '.join(sorted(BITS))})")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise _bad(
            path,
            f"tensor {name!r}: data_offsets [{begin}, {end}] out of range "
            f"(the data section has {data_size} bytes)",
        )
    bits = math.prod(shape) * BITS[dtype]
    if bits % 8:
        raise _bad(path, f"tensor {name!r}: {dtype} {tuple(shape)} is {bits} bits, not "
                         "whole bytes")
    if bits // 8 != end - begin:
        raise _bad(
            path,
            f"tensor {name!r}: {end - begin} bytes, but {dtype} {tuple(shape)} "
            f"needs {bits // 8}",
        )
    return begin, end


def _validate(path: Path, header: dict[str, Any], n: int, size: int) -> int:
    """Check every entry; return where the data section starts (8 + header length)."""
    meta = header.get("__metadata__")
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    ):
        raise _bad(path, "__metadata__ must map strings to strings")
    data_size = size - 8 - n
    ranges = sorted(
        (*_check_entry(path, name, entry, data_size), name)
        for name, entry in header.items()
        if name != "__metadata__"
    )
    prev_end, prev_name = 0, ""
    for begin, end, name in ranges:
        if begin < prev_end:
            raise _bad(path, f"tensors {prev_name!r} and {name!r} overlap at byte {begin}")
        if begin > prev_end:
            after = f"after tensor {prev_name!r}" if prev_name else "before the first tensor"
            raise _bad(path, f"{begin - prev_end} bytes {after} belong to no tensor (tensor "
                             f"{name!r} starts at {begin}, not {prev_end})")
        prev_end, prev_name = end, name
    if prev_end != data_size:
        raise _bad(path, f"{data_size - prev_end} trailing bytes after the last tensor's "
                         f"data (the data section has {data_size} bytes, tensors cover "
                         f"{prev_end})")
    return 8 + n


def plan_safetensors(path: Path) -> FilePlan:
    size = path.stat().st_size
    n, header = _read_header(path)
    base = _validate(path, header, n, size)
    tensors: list[Segment] = []
    unknown: list[str] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        if entry["dtype"] in ITEMSIZES:
            shape = tuple(entry["shape"])
            seg = Segment(base + begin, end - begin, "tensor", name, entry["dtype"], shape)
            tensors.append(seg)
        else:
            unknown.append(name)  # e.g. packed F4/F6: kept as opaque bytes, exact anyway
    segments = (Segment(0, base, "bytes"), *fill_gaps(path, base, size, tensors))
    info: dict[str, Any] = {
        "metadata": header.get("__metadata__"),
        "header_size": base,
        "tensor_count": len(header) - ("__metadata__" in header),
    }
    if unknown:
        info["opaque_tensors"] = sorted(unknown)
    return FilePlan("safetensors", size, segments, info)
