"""The message classes of inference.proto, built from the shipped descriptor set in a
private descriptor pool: a client in the same process (tritonclient, kserve) registers
the same full names in the default pool, which would collide with generated modules."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"


def _load() -> dict[str, Any]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(
        files(__package__).joinpath("inference.desc").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    desc = pool.FindFileByName("inference.proto")
    return {name: message_factory.GetMessageClass(m)
            for name, m in desc.message_types_by_name.items()}


_M = _load()
ServerLiveRequest, ServerLiveResponse = _M["ServerLiveRequest"], _M["ServerLiveResponse"]
ServerReadyRequest, ServerReadyResponse = _M["ServerReadyRequest"], _M["ServerReadyResponse"]
ModelReadyRequest, ModelReadyResponse = _M["ModelReadyRequest"], _M["ModelReadyResponse"]
ServerMetadataRequest = _M["ServerMetadataRequest"]
ServerMetadataResponse = _M["ServerMetadataResponse"]
ModelMetadataRequest, ModelMetadataResponse = (_M["ModelMetadataRequest"],
                                               _M["ModelMetadataResponse"])
ModelInferRequest, ModelInferResponse = _M["ModelInferRequest"], _M["ModelInferResponse"]
InferTensorContents, InferParameter = _M["InferTensorContents"], _M["InferParameter"]
ModelConfigRequest, ModelConfigResponse = _M["ModelConfigRequest"], _M["ModelConfigResponse"]
RepositoryIndexRequest, RepositoryIndexResponse = (_M["RepositoryIndexRequest"],
                                                   _M["RepositoryIndexResponse"])
ModelStatisticsRequest, ModelStatisticsResponse = (_M["ModelStatisticsRequest"],
                                                   _M["ModelStatisticsResponse"])

# rpc name -> (request class, response class)
METHODS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (ServerLiveRequest, ServerLiveResponse),
    "ServerReady": (ServerReadyRequest, ServerReadyResponse),
    "ModelReady": (ModelReadyRequest, ModelReadyResponse),
    "ServerMetadata": (ServerMetadataRequest, ServerMetadataResponse),
    "ModelMetadata": (ModelMetadataRequest, ModelMetadataResponse),
    "ModelInfer": (ModelInferRequest, ModelInferResponse),
    "ModelConfig": (ModelConfigRequest, ModelConfigResponse),
    "ModelStatistics": (ModelStatisticsRequest, ModelStatisticsResponse),
    "RepositoryIndex": (RepositoryIndexRequest, RepositoryIndexResponse),
}
