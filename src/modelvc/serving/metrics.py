"""Prometheus metrics of one gateway, on its own registry (several gateways per process
in tests and benchmarks must not collide). Labels: model, version (v7), channel."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5)
_PAGE = 4096


def resident_bytes() -> float:
    """RSS from /proc (no psutil): the number the swap memory target is about."""
    try:
        return float(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0.0


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        mvc = ["model", "version", "channel"]
        self.requests = Counter("modelvc_requests", "Inference requests answered", mvc,
                                registry=r)
        self.errors = Counter("modelvc_errors", "Requests that failed", [*mvc, "kind"],
                              registry=r)
        self.latency = Histogram("modelvc_request_seconds", "Inference latency", mvc,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("modelvc_inflight_requests", "Requests being answered",
                              ["model", "version"], registry=r)
        self.load_seconds = Gauge("modelvc_load_seconds", "Checkout + load time",
                                  ["model", "version"], registry=r)
        self.warmup_seconds = Gauge("modelvc_warmup_seconds", "Warm-up time",
                                    ["model", "version"], registry=r)
        self.load_failures = Counter("modelvc_load_failures", "Versions that failed to load",
                                     ["model", "version"], registry=r)
        self.swaps = Counter("modelvc_swaps", "Atomic switches to a new version",
                             ["model", "channel"], registry=r)
        self.rollbacks = Counter("modelvc_rollbacks", "Automatic canary rollbacks",
                                 ["model", "channel"], registry=r)
        self.promotions = Counter("modelvc_promotions", "Automatic canary promotions",
                                  ["model", "channel"], registry=r)
        self.refusals = Counter("modelvc_canary_refusals",
                                "Automatic canary moves the registry refused or failed "
                                "(kind: permission | gates | error)",
                                ["model", "channel", "action", "kind"], registry=r)
        self.serving = Gauge("modelvc_serving_version", "Version number a channel serves",
                             ["model", "channel"], registry=r)
        self.loaded = Gauge("modelvc_loaded_versions", "Versions held in memory", registry=r)
        self.feedback = Counter("modelvc_feedback", "Feedback received",
                                ["model", "version", "correct"], registry=r)
        self.accuracy = Gauge("modelvc_live_accuracy", "Accuracy from feedback (window)",
                              ["model", "version"], registry=r)
        self.shadow = Counter("modelvc_shadow_requests", "Requests mirrored to a shadow",
                              ["model", "version"], registry=r)
        self.shadow_agreement = Gauge("modelvc_shadow_agreement",
                                      "Fraction of shadow outputs equal to the served ones",
                                      ["model", "version"], registry=r)
        self.memory = Gauge("modelvc_resident_memory_bytes", "Gateway resident memory",
                            registry=r)
        self.memory.set_function(resident_bytes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
