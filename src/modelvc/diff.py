"""Diffs between two versions: files, tensors (how much changed), json, params, metrics.

Between a version and one derived from it (`derived_from` names the other), the diff
says so (`derivation`) and sums the error up over every tensor compared (`error`: max
abs, RMS, relative L2); an int8 or uint8 weight stored with `<name>_scale` and
`<name>_zero_point` (quantize-dynamic) is compared dequantized, its zero point read from
the model (a scalar ONNX zero point is no tensor segment: read from the file's bytes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .manifest import FileEntry, Manifest, SegmentRef
from .storage import ObjectIO


@dataclass(frozen=True)
class TensorChange:
    file: str
    name: str
    status: str  # added | removed | changed | reshaped | retyped
    old_dtype: str | None = None
    new_dtype: str | None = None
    old_shape: list[int] | None = None
    new_shape: list[int] | None = None
    changed_fraction: float | None = None  # elements whose value differs
    rel_l2: float | None = None  # ||new - old|| / ||old||
    max_abs: float | None = None
    rms: float | None = None  # sqrt(mean((new - old)^2))
    dequantized: bool = False  # new is int8 values compared as (q - zero_point) * scale


@dataclass(frozen=True)
class ValueChange:
    key: str
    old: Any  # None where absent (see old_absent) or null
    new: Any
    old_absent: bool = False  # the key is missing on that side (not a null value)
    new_absent: bool = False


@dataclass
class VersionDiff:
    a: str
    b: str
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    tensors: list[TensorChange] = field(default_factory=list)
    tensors_unchanged: int = 0
    json: dict[str, list[ValueChange]] = field(default_factory=dict)  # file -> key changes
    params: list[ValueChange] = field(default_factory=list)
    metrics: list[ValueChange] = field(default_factory=list)
    # When one version is derived from the other: recipe, params, source and derived
    # labels, and whether b is the source (a derived from b).
    derivation: dict[str, Any] | None = None
    # Over every tensor compared by value: max_abs, rms, rel_l2, tensors, elements.
    error: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def diff_manifests(io: ObjectIO, a: Manifest, b: Manifest, *, a_label: str, b_label: str,
                   numeric: bool = True, progress: Callable[[int, int], None] | None = None,
                   ids: tuple[str, str] | None = None) -> VersionDiff:
    """`progress(done, total)`: bytes of B's tensors compared so far. `ids`: the two
    versions' ids (to recognise a derivation between them)."""
    out = VersionDiff(a_label, b_label)
    out.derivation = _derivation(a, b, ids, a_label, b_label)
    fa = {f.path: f for f in a.files}
    fb = {f.path: f for f in b.files}
    out.files_added = sorted(set(fb) - set(fa))
    out.files_removed = sorted(set(fa) - set(fb))
    out.files_changed = sorted(p for p in set(fa) & set(fb) if fa[p].sha256 != fb[p].sha256)
    ta, tb = a.tensor_index(), b.tensor_index()
    if a.kind == b.kind == "file" and len(a.files) == len(b.files) == 1:
        # One-file versions: compare the files whatever their names.
        pa, pb = a.files[0].path, b.files[0].path
        if pa != pb:
            out.files_added, out.files_removed = [], []
            out.files_changed = [pb] if a.files[0].sha256 != b.files[0].sha256 else []
            fa = {pb: a.files[0]}
            ta = {(pb, n): s for (_, n), s in ta.items()}
    pairs = _pair_tensors(ta, _quantized_as_source(ta, tb))
    quant = _Quant(io, tb, fb)
    sizes = [s.size for _, sa, sb in pairs if (s := sb or sa) is not None]
    total, done = sum(sizes), 0
    acc = _Error()
    for key, sa, sb in pairs:
        seg = sb or sa
        done += seg.size if seg is not None else 0
        if sa is not None and sb is not None and sa.id == sb.id:
            out.tensors_unchanged += 1
            acc.same(sa)
        else:
            out.tensors.append(_tensor_change(io, key, sa, sb, numeric, acc,
                                              quant(key) if numeric else None))
        if progress is not None:
            progress(done, total)
    if numeric and out.derivation is not None:
        out.error = acc.summary()
    for path in out.files_changed:
        if path.endswith(".json"):
            old = _json_or_none(io, fa[path].segments)
            new = _json_or_none(io, fb[path].segments)
            if isinstance(old, dict) and isinstance(new, dict):
                out.json[path] = _dict_changes(_flatten(old), _flatten(new))
        ia, ib = fa[path].info.get("metadata"), fb[path].info.get("metadata")
        if ia != ib:
            out.json[f"{path}#metadata"] = _dict_changes(_flatten(ia or {}), _flatten(ib or {}))
    out.params = _dict_changes(a.params, b.params)
    out.metrics = _dict_changes(a.metrics, b.metrics)
    return out


def _pair_tensors(ta: dict[tuple[str, str], SegmentRef], tb: dict[tuple[str, str], SegmentRef]
                  ) -> list[tuple[tuple[str, str], SegmentRef | None, SegmentRef | None]]:
    """Pair tensors by (file, name); tensors that moved file (re-sharding) pair by name."""
    out: list[tuple[tuple[str, str], SegmentRef | None, SegmentRef | None]] = []
    only_a = {k: v for k, v in ta.items() if k not in tb}
    only_b = {k: v for k, v in tb.items() if k not in ta}
    by_name_a: dict[str, list[tuple[str, str]]] = {}
    for k in only_a:
        by_name_a.setdefault(k[1], []).append(k)
    for kb in sorted(only_b):
        cands = by_name_a.get(kb[1], [])
        if len(cands) == 1:
            ka = cands.pop()
            out.append((kb, only_a.pop(ka), only_b[kb]))
    for k in sorted(set(ta) & set(tb)):
        out.append((k, ta[k], tb[k]))
    matched_b = {k for k, _, b in out if b is not None}
    out.extend((k, v, None) for k, v in only_a.items())
    out.extend((k, None, v) for k, v in only_b.items() if k not in matched_b)
    return sorted(out, key=lambda t: t[0])


def _derivation(a: Manifest, b: Manifest, ids: tuple[str, str] | None, a_label: str,
                b_label: str) -> dict[str, Any] | None:
    if ids is None:
        return None
    for src, der, src_label, der_label, reverse in ((ids[0], b, a_label, b_label, False),
                                                    (ids[1], a, b_label, a_label, True)):
        rec = der.lineage.get("derived_from")
        if isinstance(rec, dict) and rec.get("version") == src:
            return {"recipe": rec.get("recipe"), "params": rec.get("params", {}),
                    "source": src_label, "derived": der_label, "reversed": reverse}
    return None


class _Error:
    """Error sums over the tensors compared by value (unchanged ones count as zero)."""

    def __init__(self) -> None:
        self.max_abs = self.sumsq = self.norm2 = 0.0
        self.n = self.tensors = 0

    def same(self, s: SegmentRef) -> None:
        if s.shape is not None and s.dtype in _FLOATS:
            self.n += int(np.prod(s.shape))
            self.tensors += 1

    def add(self, x: np.ndarray[Any, Any], d: np.ndarray[Any, Any]) -> None:
        fin = np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
        self.max_abs = max(self.max_abs, float(np.abs(fin).max()) if fin.size else 0.0)
        self.sumsq += float((fin ** 2).sum())
        self.norm2 += float((np.nan_to_num(x) ** 2).sum())
        self.n += x.size
        self.tensors += 1

    def summary(self) -> dict[str, float]:
        rel = (self.sumsq / self.norm2) ** 0.5 if self.norm2 > 0 else 0.0
        return {"max_abs": self.max_abs, "rms": (self.sumsq / self.n) ** 0.5 if self.n else 0.0,
                "rel_l2": rel, "tensors": float(self.tensors), "elements": float(self.n)}


_FLOATS = ("F64", "F32", "F16", "BF16")


def _quantized_as_source(ta: dict[tuple[str, str], SegmentRef],
                         tb: dict[tuple[str, str], SegmentRef]
                         ) -> dict[tuple[str, str], SegmentRef]:
    """ONNX Runtime's quantizer renames weight W to W_quantized (beside W_scale and
    W_zero_point): pair it with the source's W, to be compared dequantized."""
    out = dict(tb)
    for file, name in list(tb):
        base = name.removesuffix("_quantized")
        if base != name and (file, base) in ta and (file, base) not in tb and \
                (file, f"{base}_scale") in tb:
            out[(file, base)] = out.pop((file, name))
    return out


class _Quant:
    """(scale, zero point) stored beside an int8 weight by quantize-dynamic, if any."""

    def __init__(self, io: ObjectIO, tb: dict[tuple[str, str], SegmentRef],
                 files: dict[str, FileEntry]) -> None:
        self.io, self.tb, self.files = io, tb, files
        self._scalars: dict[str, dict[str, int]] = {}  # ONNX file -> its scalars

    def __call__(self, key: tuple[str, str]) -> tuple[float, float] | None:
        file, name = key
        sc = self.tb.get((file, f"{name}_scale"))
        zp = self.tb.get((file, f"{name}_zero_point"))
        if sc is None:
            return None
        s = _as_float(self.io.read_tensor(sc.id), sc.dtype or "")
        if zp is not None:
            z = _as_float(self.io.read_tensor(zp.id), zp.dtype or "")
        elif (found := self._onnx_scalars(file)) is not None:
            # A scalar ONNX zero point lives in int32_data, not a tensor segment; with
            # no such initializer DequantizeLinear's default, 0, applies.
            z = np.array([float(found.get(f"{name}_zero_point", 0))])
        else:
            z = None
        if s is None or z is None or s.size != 1 or z.size != 1:
            return None
        return float(s[0]), float(z[0])

    def _onnx_scalars(self, file: str) -> dict[str, int] | None:
        """FILE's scalar integer initializers (read once), None if it is not ONNX."""
        entry = self.files.get(file)
        if entry is None or entry.format != "onnx":
            return None
        if file not in self._scalars:
            from .formats.onnx import scalar_ints

            data = b"".join(self.io.read_object(s.id, s.tensor is not None)
                            for s in entry.segments)
            self._scalars[file] = scalar_ints(data)
        return self._scalars[file]


def _tensor_change(io: ObjectIO, key: tuple[str, str], sa: SegmentRef | None,
                   sb: SegmentRef | None, numeric: bool, acc: _Error | None = None,
                   quant: tuple[float, float] | None = None) -> TensorChange:
    file, name = key
    if sa is None or sb is None:
        s = sb or sa
        assert s is not None
        return TensorChange(file, name, "added" if sa is None else "removed",
                            new_dtype=s.dtype if sa is None else None,
                            old_dtype=s.dtype if sb is None else None,
                            new_shape=list(s.shape or ()) if sa is None else None,
                            old_shape=list(s.shape or ()) if sb is None else None)
    base = {"old_dtype": sa.dtype, "new_dtype": sb.dtype,
            "old_shape": list(sa.shape or ()), "new_shape": list(sb.shape or ())}
    if sa.shape != sb.shape:
        return TensorChange(file, name, "reshaped", **base)  # type: ignore[arg-type]
    status = "retyped" if sa.dtype != sb.dtype else "changed"
    if not numeric:
        return TensorChange(file, name, status, **base)  # type: ignore[arg-type]
    x = _as_float(io.read_tensor(sa.id), sa.dtype or "")
    y = _as_float(io.read_tensor(sb.id), sb.dtype or "")
    if x is None or y is None or x.size == 0:
        return TensorChange(file, name, status, **base)  # type: ignore[arg-type]
    dequantized = quant is not None and sb.dtype in ("I8", "U8") and sa.dtype in _FLOATS
    if dequantized and quant is not None:
        y = (y - quant[1]) * quant[0]
    d = y - x
    with np.errstate(invalid="ignore", over="ignore"):
        changed = float(np.count_nonzero(~((x == y) | (np.isnan(x) & np.isnan(y)))) / x.size)
        norm = float(np.linalg.norm(x))
        dn = float(np.linalg.norm(np.nan_to_num(d)))
        rel = dn / norm if norm > 0 else (0.0 if dn == 0 else float("inf"))
        mx = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 0.0
        rms = float(np.sqrt(np.mean(np.nan_to_num(d) ** 2)))
    if acc is not None:
        acc.add(x, d)
    return TensorChange(file, name, status, changed_fraction=changed, rel_l2=rel, max_abs=mx,
                        rms=rms, dequantized=dequantized, **base)  # type: ignore[arg-type]


def _as_float(raw: bytes, dtype: str) -> np.ndarray[Any, Any] | None:
    """Tensor values as float64 (BF16 widened by bit shift; unsupported types -> None)."""
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    table = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "U8": "u1", "I16": "<i2",
             "U16": "<u2", "I32": "<i4", "U32": "<u4", "I64": "<i8", "U64": "<u8", "BOOL": "u1"}
    if dtype not in table:
        return None
    return np.frombuffer(raw, dtype=table[dtype]).astype(np.float64)


def _json_or_none(io: ObjectIO, segments: tuple[SegmentRef, ...]) -> Any:
    try:
        return json.loads(b"".join(io.read_blob(s.id) for s in segments))
    except ValueError:
        return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _dict_changes(a: dict[str, Any], b: dict[str, Any]) -> list[ValueChange]:
    missing = object()
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, missing), b.get(k, missing)
        if va != vb:
            out.append(ValueChange(k, None if va is missing else va, None if vb is missing else vb,
                                   old_absent=va is missing, new_absent=vb is missing))
    return out
