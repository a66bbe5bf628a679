"""GRPCInferenceService on grpc.aio, in the gateway's event loop: every call goes
through the same Gateway as the REST routes (channel following, hot swap, canary and
shadow, metrics, version routing), so the two protocols cannot drift apart."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from ...errors import ModelvcError
from .. import oip
from ..gateway import EPOCH_HEADER, VERSION_HEADER, Gateway, NotReady, http_status
from ..protocol import MAX_ELEMENTS, Answer, BadRequest, InferRequest, binary_data, from_binary
from ..runtimes.base import OIP_TO_NUMPY, oip_datatype
from . import messages as pb

log = logging.getLogger("modelvc.serving")
KEY_METADATA = "x-request-key"  # a caller's sticky canary key, as the REST header
MAX_MESSAGE = 2**31 - 1  # as Triton: tensors are as large as the model takes

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
          409: grpc.StatusCode.FAILED_PRECONDITION, 503: grpc.StatusCode.UNAVAILABLE}

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


Call = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class Service:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def ServerLive(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.gw.ready())

    async def ModelReady(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        if req.name not in self.gw.models:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(
            ready=await oip.model_ready(self.gw, req.name, req.version or None))

    async def ServerMetadata(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelMetadata(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        doc = await oip.model_metadata(self.gw, req.name, req.version or None)
        doc.pop("parameters")  # not in the gRPC message
        return pb.ModelMetadataResponse(**doc)

    async def ModelInfer(self, msg: Any, ctx: grpc.aio.ServicerContext) -> Any:
        selector = msg.model_version or None
        try:
            req = parse_request(msg)
        except BadRequest as exc:
            self.gw.refused(msg.model_name, selector, exc)
            raise
        meta = {k: v for k, v in (ctx.invocation_metadata() or ())
                if isinstance(v, str)}
        key = meta.get(KEY_METADATA) or req.parameters.get("request_key")
        seen = meta.get(EPOCH_HEADER, "")
        ans = await self.gw.infer(msg.model_name, selector, req,
                                  str(key) if key is not None else None,
                                  int(seen) if seen.isdigit() and len(seen) <= 18 else None)
        ctx.set_trailing_metadata(((VERSION_HEADER, ans.version),
                                   (EPOCH_HEADER, str(ans.epoch))))
        return encode_answer(ans, typed=not msg.raw_input_contents and bool(msg.inputs))

    async def ModelConfig(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        doc = await oip.model_config(self.gw, req.name, req.version or None)
        return pb.ModelConfigResponse(config=doc)

    async def ModelStatistics(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        doc = oip.statistics(self.gw, req.name or None, req.version or None)
        for s in doc["model_stats"]:
            s.pop("batch_stats")
        return pb.ModelStatisticsResponse(**doc)

    async def RepositoryIndex(self, req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        return pb.RepositoryIndexResponse(models=oip.repository_index(self.gw, req.ready))


def _guarded(fn: Call) -> Call:
    """Errors become gRPC statuses with the same messages as the REST error bodies."""
    async def call(req: Any, ctx: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(req, ctx)
        except (BadRequest, NotReady, ModelvcError) as exc:
            msg = exc.message if isinstance(exc, ModelvcError) else str(exc)
            code = _CODES.get(http_status(exc), grpc.StatusCode.INTERNAL)
        except Exception as exc:  # a model failure: INTERNAL with the reason
            log.exception("gRPC %s", getattr(fn, "__name__", "call"))
            msg, code = f"{type(exc).__name__}: {exc}", grpc.StatusCode.INTERNAL
        await ctx.abort(code, msg)

    return call


def handler(gw: Gateway) -> grpc.GenericRpcHandler:
    svc = Service(gw)
    methods = {
        name: grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(svc, name)), request_deserializer=req.FromString,
            response_serializer=resp.SerializeToString)
        for name, (req, resp) in pb.METHODS.items()}
    return grpc.method_handlers_generic_handler(pb.SERVICE, methods)


async def start_grpc(gw: Gateway, host: str, port: int) -> grpc.aio.Server:
    """Listen on host:port in the running loop (the gateway's); stop() it at shutdown."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE)])
    server.add_generic_rpc_handlers((handler(gw),))
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"gRPC could not listen on {host}:{port}")
    await server.start()
    log.info("OIP gRPC on %s:%d", host, port)
    return server
