"""The serving gateway: Open Inference Protocol v2 over REST, models that follow
channels and swap without a failed request, canary and shadow traffic with automatic
rollback, Prometheus metrics and live accuracy from feedback.

Nothing here is imported by the core package: serving needs the `serve` extra
(starlette, uvicorn, onnxruntime, prometheus_client).
"""
