"""Open Inference Protocol v2 requests and responses, JSON and the binary extension.

Every check against the model's signature happens here, so that a bad request gets a
400 naming what was expected rather than an error from deep inside a runtime.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .runtimes.base import OIP_TO_NUMPY, TensorSpec, oip_datatype

orjson: Any
try:  # a faster JSON codec when installed (the serve extra); the answers are the same
    import orjson
except ImportError:  # pragma: no cover - the standard library's json is used instead
    orjson = None

HEADER_LENGTH = "inference-header-content-length"


def loads(data: bytes | memoryview) -> Any:
    """json.loads, faster: orjson first; whatever it refuses (NaN literals, integers
    past 64 bits, bad UTF-8, deep nesting) the standard parser decides and words."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def dumps(doc: Any, finite: bool) -> bytes:
    """Compact JSON; orjson only when FINITE (it writes NaN as null, json as NaN) and
    every string is valid UTF-8 (else json escapes it)."""
    if orjson is not None and finite:
        try:
            return bytes(orjson.dumps(doc))
        except TypeError:
            pass
    return json.dumps(doc, separators=(",", ":")).encode()


class BadRequest(Exception):
    """The request does not follow the protocol or the model's signature (HTTP 400)."""

    status = 400
    counted = False  # set once the gateway counted it in the metrics


@dataclass
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: list[str]  # requested output names; empty = all
    binary_outputs: set[str] = field(default_factory=set)
    binary_all: bool = False


@dataclass
class Answer:
    """A request's answer, before a protocol encodes it (REST JSON/binary, gRPC)."""

    model: str
    version: str  # the version number that answered
    id: str
    outputs: dict[str, np.ndarray]
    epoch: int  # the fleet epoch it was served at (0: outside the fleet's epochs)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"modelvc_version": self.version, "modelvc_epoch": self.epoch}


MAX_ELEMENTS = 1 << 40  # far above any body the gateway accepts; keeps counts in int64


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    # bool is an int to Python: `[true, 4]` is not a shape.
    if not isinstance(raw, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers, "
                         f"got {str(raw)[:200]}")
    if len(raw) > 64 or math.prod(raw) > MAX_ELEMENTS:
        raise BadRequest(f"input {name!r}: shape {str(raw)[:200]} holds more elements than "
                         "any request can carry")
    return tuple(raw)


def _from_json_data(data: Any, shape: tuple[int, ...], datatype: str, name: str) -> np.ndarray:
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).reshape(-1)
            arr = np.array([x.encode() if isinstance(x, str) else bytes(x) for x in flat],
                           dtype=object)
        else:
            arr = np.asarray(data, dtype=OIP_TO_NUMPY[datatype]).reshape(-1)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise BadRequest(f"input {name!r}: data is not a list of {datatype} values "
                         f"({str(exc)[:200]})") from exc
    if arr.size != math.prod(shape):
        raise BadRequest(f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} "
                         f"values, got {arr.size}")
    return arr.reshape(shape)


def from_binary(raw: memoryview, shape: tuple[int, ...], datatype: str, name: str
                ) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos + 4 <= len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(bytes(raw[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos != len(raw) or len(items) != count:
            raise BadRequest(f"input {name!r}: binary BYTES data does not hold {count} "
                             "length-prefixed elements")
        return np.array(items, dtype=object).reshape(shape)
    dtype = OIP_TO_NUMPY[datatype]
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(f"input {name!r}: shape {list(shape)} of {datatype} needs "
                         f"{count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """Parse a JSON or binary-extension request body into arrays (no signature check)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError as exc:
            raise BadRequest("Inference-Header-Content-Length must be an integer") from exc
        if not 0 < n <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {n} is outside the body "
                             f"({len(body)} bytes)")
        head, tail = body[:n], memoryview(body)[n:]
    else:
        head, tail = body, memoryview(b"")
    try:
        doc = loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("request body is nested too deeply") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest('request must be a JSON object with an "inputs" list')
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest('"parameters" must be an object')
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for item in doc["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest('each input must be an object with a "name"')
        name, datatype = item["name"], item.get("datatype")
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        if not isinstance(datatype, str) or datatype not in OIP_TO_NUMPY:
            raise BadRequest(f"input {name!r}: datatype must be one of "
                             f"{sorted(OIP_TO_NUMPY)}, got {datatype!r}")
        shape = _shape(item.get("shape"), name)
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(tail):
                raise BadRequest(f"input {name!r}: binary_data_size {size!r} runs past the "
                                 "end of the body")
            inputs[name] = from_binary(tail[offset:offset + size], shape, datatype, name)
            offset += size
        elif "data" in item:
            inputs[name] = _from_json_data(item["data"], shape, datatype, name)
        else:
            raise BadRequest(f'input {name!r} has neither "data" nor binary_data_size')
    if offset != len(tail):
        raise BadRequest(f"{len(tail) - offset} bytes of binary data belong to no input")
    req_id = doc.get("id")
    outputs: list[str] = []
    binary: set[str] = set()
    if not isinstance(doc.get("outputs") or [], list):
        raise BadRequest('"outputs" must be a list of objects with a "name"')
    for out in doc.get("outputs") or []:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise BadRequest('each requested output must be an object with a "name"')
        outputs.append(out["name"])
        if (out.get("parameters") or {}).get("binary_data"):
            binary.add(out["name"])
    return InferRequest(id=str(req_id) if req_id is not None else None, parameters=params,
                        inputs=inputs, outputs=outputs, binary_outputs=binary,
                        binary_all=bool(params.get("binary_data_output")))


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_signature(req: InferRequest, inputs: list[TensorSpec], outputs: list[TensorSpec],
                    model: str) -> None:
    """400 with what was expected when names, datatypes or shapes do not match."""
    specs = {s.name: s for s in inputs}
    unknown = sorted(set(req.inputs) - set(specs))
    missing = sorted(set(specs) - set(req.inputs))
    if unknown or missing:
        want = ", ".join(f"{s.name} {s.datatype}{_fmt(s.shape)}" for s in inputs)
        raise BadRequest(f"model {model!r} takes inputs [{want}]; "
                         + (f"unknown {unknown}" if unknown else f"missing {missing}"))
    for name, arr in req.inputs.items():
        spec = specs[name]
        got = oip_datatype(arr.dtype)
        if got != spec.datatype:
            raise BadRequest(f"input {name!r} of model {model!r} must be {spec.datatype}, "
                             f"got {got}")
        ok = len(arr.shape) == len(spec.shape) and all(
            w < 0 or w == g for w, g in zip(spec.shape, arr.shape, strict=True))
        if not ok:
            raise BadRequest(f"input {name!r} of model {model!r} must have shape "
                             f"{_fmt(spec.shape)} (-1: any), got {_fmt(arr.shape)}")
        if arr.size == 0:  # a runtime fails on it (a 500 charged to the version)
            raise BadRequest(f"input {name!r} of model {model!r} is empty (shape "
                             f"{_fmt(arr.shape)}): send at least one element")
    names = {s.name for s in outputs}
    bad = [o for o in req.outputs if o not in names]
    if bad:
        raise BadRequest(f"model {model!r} has outputs {sorted(names)}; unknown {bad}")


def _json_data(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind in "OSU":
        return [x.decode(errors="replace") if isinstance(x, bytes) else str(x)
                for x in arr.reshape(-1)]
    return arr.reshape(-1).tolist()  # type: ignore[no-any-return]


def binary_data(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "OSU":
        parts = [x if isinstance(x, bytes) else str(x).encode() for x in arr.reshape(-1)]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    return np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()


def encode_response(req: InferRequest, ans: Answer) -> tuple[bytes, dict[str, str]]:
    """The REST response body and headers; binary outputs follow the JSON header."""
    outs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    finite = True
    for name, arr in ans.outputs.items():
        item: dict[str, Any] = {"name": name, "shape": list(arr.shape),
                                "datatype": oip_datatype(arr.dtype)}
        if req.binary_all or name in req.binary_outputs:
            blob = binary_data(arr)
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = _json_data(arr)
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                finite = False
        outs.append(item)
    doc: dict[str, Any] = {"model_name": ans.model, "model_version": ans.version,
                           "id": ans.id, "outputs": outs, "parameters": ans.parameters}
    head = dumps(doc, finite)
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream",
                                    HEADER_LENGTH: str(len(head))}
