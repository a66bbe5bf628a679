"""GRPCInferenceService in the gateway's event loop (HTTP/2 by .transport): every call
goes through the same Gateway as the REST routes (channel following, hot swap, canary and
shadow, metrics, version routing), so the two protocols cannot drift apart."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from ...errors import ModelvcError
from .. import oip
from ..gateway import EPOCH_HEADER, VERSION_HEADER, Gateway, NotReady, http_status
from ..protocol import MAX_ELEMENTS, Answer, BadRequest, InferRequest, binary_data, from_binary
from ..runtimes.base import OIP_TO_NUMPY, oip_datatype, report_failure
from . import calls
from . import messages as pb
from .calls import GrpcStatus
from .transport import GrpcServer

log = logging.getLogger("modelvc.serving")
KEY_METADATA = "x-request-key"  # a caller's sticky canary key, as the REST header
MAX_MESSAGE = 2**31 - 1  # as Triton: tensors are as large as the model takes

_CODES = {400: calls.INVALID_ARGUMENT, 401: calls.UNAUTHENTICATED, 403: calls.PERMISSION_DENIED,
          404: calls.NOT_FOUND, 409: calls.FAILED_PRECONDITION, 503: calls.UNAVAILABLE}

# datatype -> the InferTensorContents field that carries it (FP16/BF16: raw only)
_TYPED = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
          "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
          "UINT16": "uint_contents", "UINT32": "uint_contents",
          "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
          "BYTES": "bytes_contents"}


def _param(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def _set_param(p: Any, value: Any) -> None:
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in raw)
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape must be non-negative integers, got "
                         f"{list(shape)}")
    if len(shape) > 64 or math.prod(shape) > MAX_ELEMENTS:  # int64 products overflow
        raise BadRequest(f"input {name!r}: shape {list(shape)[:64]} holds more elements "
                         "than any request can carry")
    return shape


def _typed(tensor: Any, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    name, field = tensor.name, _TYPED.get(datatype)
    if field is None:
        raise BadRequest(f"input {name!r}: {datatype} travels only in raw_input_contents")
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise BadRequest(f"input {name!r}: shape {list(shape)} needs {count} values in "
                         f"contents.{field}, got {len(values)}")
    if datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    try:
        return np.asarray(values, dtype=OIP_TO_NUMPY[datatype]).reshape(shape)
    except OverflowError as exc:
        raise BadRequest(f"input {name!r}: a value does not fit {datatype}") from exc


def parse_request(msg: Any) -> InferRequest:
    """A ModelInferRequest as the gateway's request (raw or typed contents)."""
    raw = list(msg.raw_input_contents)
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for "
                         f"{len(msg.inputs)} inputs (one per input, in order)")
    inputs: dict[str, np.ndarray] = {}
    for i, t in enumerate(msg.inputs):
        if t.datatype not in OIP_TO_NUMPY:
            raise BadRequest(f"input {t.name!r}: datatype must be one of "
                             f"{sorted(OIP_TO_NUMPY)}, got {t.datatype!r}")
        shape = _shape(t.shape, t.name)
        if t.name in inputs:
            raise BadRequest(f"input {t.name!r} is given twice")
        if raw:
            if t.HasField("contents"):
                raise BadRequest(f"input {t.name!r}: contents given beside "
                                 "raw_input_contents (use one or the other)")
            inputs[t.name] = from_binary(memoryview(raw[i]), shape, t.datatype, t.name)
        else:
            inputs[t.name] = _typed(t, shape, t.datatype)
    params = {k: _param(v) for k, v in msg.parameters.items()}
    return InferRequest(id=msg.id or None, parameters=params, inputs=inputs,
                        outputs=[o.name for o in msg.outputs])


def encode_answer(ans: Answer, typed: bool) -> Any:
    """A ModelInferResponse: raw_output_contents (as Triton answers), or typed contents
    when the request came typed and every output has a typed field."""
    resp = pb.ModelInferResponse(model_name=ans.model, model_version=ans.version, id=ans.id)
    for k, v in ans.parameters.items():
        _set_param(resp.parameters[k], v)
    kinds = {name: oip_datatype(arr.dtype) for name, arr in ans.outputs.items()}
    typed = typed and all(d in _TYPED for d in kinds.values())
    for name, arr in ans.outputs.items():
        out = resp.outputs.add(name=name, datatype=kinds[name], shape=list(arr.shape))
        if typed:
            flat = arr.reshape(-1)
            if kinds[name] == "BYTES":
                values: list[Any] = [x if isinstance(x, bytes) else str(x).encode()
                                     for x in flat]
            else:
                values = flat.tolist()
            getattr(out.contents, _TYPED[kinds[name]]).extend(values)
        else:
            resp.raw_output_contents.append(binary_data(arr))
    return resp


Meta = dict[str, str]
Trailing = list[tuple[str, str]]
Call = Callable[[Any, Meta], Awaitable[Any]]


class Service:
    """The RPCs: each takes its request message and the call's metadata; ModelInfer
    also sets trailing metadata (the version that answered and its epoch)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def ServerLive(self, req: Any, meta: Meta) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, req: Any, meta: Meta) -> Any:
        return pb.ServerReadyResponse(ready=self.gw.ready())

    async def ModelReady(self, req: Any, meta: Meta) -> Any:
        if req.name not in self.gw.models:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(
            ready=await oip.model_ready(self.gw, req.name, req.version or None))

    async def ServerMetadata(self, req: Any, meta: Meta) -> Any:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelMetadata(self, req: Any, meta: Meta) -> Any:
        doc = await oip.model_metadata(self.gw, req.name, req.version or None)
        doc.pop("parameters")  # not in the gRPC message
        return pb.ModelMetadataResponse(**doc)

    async def ModelInfer(self, msg: Any, meta: Meta) -> tuple[Any, Trailing]:
        selector = msg.model_version or None
        try:
            req = parse_request(msg)
        except BadRequest as exc:
            self.gw.refused(msg.model_name, selector, exc)
            raise
        key = meta.get(KEY_METADATA) or req.parameters.get("request_key")
        seen = meta.get(EPOCH_HEADER, "")
        ans = await self.gw.infer(msg.model_name, selector, req,
                                  str(key) if key is not None else None,
                                  int(seen) if seen.isdigit() and len(seen) <= 18 else None)
        return (encode_answer(ans, typed=not msg.raw_input_contents and bool(msg.inputs)),
                [(VERSION_HEADER, ans.version), (EPOCH_HEADER, str(ans.epoch))])

    async def ModelConfig(self, req: Any, meta: Meta) -> Any:
        doc = await oip.model_config(self.gw, req.name, req.version or None)
        return pb.ModelConfigResponse(config=doc)

    async def ModelStatistics(self, req: Any, meta: Meta) -> Any:
        doc = oip.statistics(self.gw, req.name or None, req.version or None)
        for s in doc["model_stats"]:
            s.pop("batch_stats")
        return pb.ModelStatisticsResponse(**doc)

    async def RepositoryIndex(self, req: Any, meta: Meta) -> Any:
        return pb.RepositoryIndexResponse(models=oip.repository_index(self.gw, req.ready))


def _method(fn: Call, parse: Callable[[bytes], Any]) -> calls.Handler:
    """Bytes in, bytes out; errors become gRPC statuses with the same messages as the
    REST error bodies."""
    name = getattr(fn, "__name__", "call")

    async def call(body: bytes, meta: Meta) -> tuple[bytes, Trailing]:
        try:
            req = parse(body)
        except DecodeError as exc:
            raise GrpcStatus(calls.INVALID_ARGUMENT, f"the {name} request is not a valid "
                             f"message of inference.proto: {exc}") from exc
        try:
            out = await fn(req, meta)
        except (BadRequest, NotReady, ModelvcError) as exc:
            msg = exc.message if isinstance(exc, ModelvcError) else str(exc)
            raise GrpcStatus(_CODES.get(http_status(exc), calls.INTERNAL), msg) from exc
        except Exception as exc:  # a model failure: INTERNAL with the reason
            raise GrpcStatus(calls.INTERNAL, report_failure(log, f"gRPC {name}", exc)
                             ) from exc
        resp, trailing = out if isinstance(out, tuple) else (out, [])
        return resp.SerializeToString(), trailing

    return call


def handlers(gw: Gateway) -> dict[str, calls.Handler]:
    svc = Service(gw)
    return {name: _method(getattr(svc, name), req.FromString)
            for name, (req, _resp) in pb.METHODS.items()}


async def start_grpc(gw: Gateway, host: str, port: int) -> GrpcServer:
    """Listen on host:port in the running loop (the gateway's); stop() it at shutdown."""
    server = GrpcServer(pb.SERVICE, handlers(gw), limit=MAX_MESSAGE)
    try:
        await server.start(host, port)
    except OSError as exc:
        raise OSError(f"gRPC could not listen on {host}:{port}: {exc.strerror or exc}"
                      ) from exc
    log.info("OIP gRPC on %s:%d", host, port)
    return server
