"""The Open Inference Protocol v2 over gRPC (the KServe v2 GRPCInferenceService plus
Triton's config, statistics and repository index calls), served beside the REST routes
by the same Gateway."""
