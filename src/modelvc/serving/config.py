"""Gateway configuration: a TOML (or JSON) file and/or command-line flags.

    registry = "./project"          # folder holding .modelvc (default: the nearest)
    host = "127.0.0.1"
    port = 8000
    grpc_port = 8001                # OIP over gRPC (0: off)
    poll_interval = 0.2             # seconds between looks at each followed channel
    trust = "never"                 # Python predictors: never | signed | any
    max_body_mb = 64                # request body cap (413 beyond), and once decompressed:
    max_decompressed_mb = 256       # (gzip/deflate bodies are inflated up to this only)
    body_timeout = 60.0             # seconds without a body byte before 408
    header_timeout = 30.0           # seconds a request's headers may take before 408
    load_cpus = [1]                 # CPUs where versions are loaded and freed (default:
                                    # wherever the process runs; e.g. serve on CPU 0 with
                                    # `taskset -c 0`, load on 1: a hot swap's work then
                                    # never delays a request on CPU 0)
    checkout_helper = true          # first loads prepared in a helper process (default:
                                    # on with load_cpus)
    standby_mb = 64                 # freed ONNX versions kept loaded, up to this many MB
                                    # of checkout in all: serving one again is instant
    actor = "canary-bot"            # who automatic canary moves are recorded as
                                    # (default modelvc-serve), or instead:
    token = "mvc_..."               # an API token (better: $MODELVC_SERVE_TOKEN); the
                                    # gateway acts as its subject (serving/identity.py)
    [fleet]                         # optional: switch when a deployment says (docs/deploy.md)
    labels = {app = "digits"}

    [[models]]
    name = "digits"                 # the OIP model name (default: the registry model)
    model = "digits"                # registry model
    ref = "production"              # channel or branch to follow, or a version (v3)
    label_output = "label"          # output compared with feedback labels
    [models.canary]
    ref = "canary"
    percent = 20
    [models.canary.policy]          # fields of canary.Policy
    min_samples = 100
    [models.shadow]
    ref = "staging"
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..canary import Policy
from ..errors import UsageError
from ..names import check_name
from .runtimes import Trust

TOKEN_ENV = "MODELVC_SERVE_TOKEN"
STANDBY_MB = 64.0  # the default of ServeConfig.standby_mb (and of swap.Pool's)


@dataclass(frozen=True)
class CanaryConfig:
    ref: str = "canary"
    percent: float = 10.0
    policy: Policy = field(default_factory=Policy)
    auto: bool = True  # act on the policy's decisions (False: only report them)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    model: str
    ref: str = "production"
    label_output: str | None = None
    keep_previous: bool = True
    canary: CanaryConfig | None = None
    shadow: str | None = None  # ref to mirror traffic to


@dataclass(frozen=True)
class FleetConfig:
    """Join a fleet: switch versions when a deployment says so (modelvc.fleet)."""

    labels: dict[str, str] = field(default_factory=dict)
    replica_id: str | None = None  # default: hostname-port
    advertise: str | None = None  # URL others reach this gateway at (default host:port)
    heartbeat: float = 1.0  # seconds between reports (and looks, with notifications)
    meta: str | None = None  # metadata database URL (default: the registry's)


@dataclass(frozen=True)
class ServeConfig:
    models: list[ModelConfig]
    registry: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 8001  # OIP over gRPC, as Triton's default; 0: no gRPC
    poll_interval: float = 0.2
    trust: Trust = "never"
    workers: int = 4  # inference threads
    threads: int = 1  # intra-op threads per ONNX session
    fleet: FleetConfig | None = None
    actor: str | None = None  # automatic canary moves: recorded as this actor ...
    token: str | None = field(default=None, repr=False)  # ... or this API token's subject
    max_body_mb: int = 64  # an inference or feedback request body, as sent
    max_decompressed_mb: int = 256  # ... and after Content-Encoding gzip/deflate
    body_timeout: float = 60.0  # seconds a request body may send nothing before 408
    header_timeout: float = 30.0  # seconds a request's head may take before 408 (httpproto)
    # CPUs the loading threads run on (checkout, session creation, warm-up, free, registry
    # reads); None: the process's CPUs
    load_cpus: tuple[int, ...] | None = None
    # A version's first load prepared in a helper process (serving/checkouts.py): its
    # checkout and graph optimization off this process's GIL, at idle CPU priority. None:
    # on with load_cpus (a pinned server, where a swap to a new version then delays
    # requests least: docs/benchmarks.md, serving, session 17), else off (a second process)
    checkout_helper: bool | None = None
    # Freed versions that run no user code (ONNX) kept loaded and warm, up to this many
    # MB of checkout in all (0: none): a rollback or a version back in a canary is then
    # served at once, with no session built or destroyed during the switch.
    standby_mb: float = STANDBY_MB


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise UsageError(f"{where}: unknown keys {extra}; expected some of {sorted(allowed)}")


def _policy(raw: dict[str, Any]) -> Policy:
    names = {f.name for f in fields(Policy)}
    _only(raw, names, "canary.policy")
    return Policy(**raw)


def model_config(raw: dict[str, Any]) -> ModelConfig:
    _only(raw, {f.name for f in fields(ModelConfig)}, "[[models]]")
    model = raw.get("model") or raw.get("name")
    if not isinstance(model, str):
        raise UsageError("[[models]]: each model needs `model` (the registry model name)")
    check_name(model)
    canary = raw.get("canary")
    if canary is not None:
        _only(canary, {"ref", "percent", "policy", "auto"}, "canary")
        percent = float(canary.get("percent", 10.0))
        if not 0 <= percent <= 100:
            raise UsageError(f"canary.percent must be within 0..100, got {percent}")
        canary = CanaryConfig(ref=canary.get("ref", "canary"), percent=percent,
                              policy=_policy(canary.get("policy", {})),
                              auto=bool(canary.get("auto", True)))
    shadow = raw.get("shadow")
    if isinstance(shadow, dict):
        shadow = shadow.get("ref")
    return ModelConfig(name=raw.get("name", model), model=model,
                       ref=raw.get("ref", "production"), label_output=raw.get("label_output"),
                       keep_previous=bool(raw.get("keep_previous", True)), canary=canary,
                       shadow=shadow)


def parse_cpus(text: str) -> tuple[int, ...]:
    """'1', '1,3' or '2-3' (as taskset -c) -> sorted CPU numbers."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise UsageError(f"load_cpus: {text!r} is not a CPU list; give e.g. 1 or 1,3 or "
                         "2-3 (as taskset -c)") from None
    return tuple(sorted(cpus))


def _load_cpus(raw: Any, threads: int) -> tuple[int, ...] | None:
    if raw is None:
        return None
    cpus = parse_cpus(raw) if isinstance(raw, str) else raw
    if not isinstance(cpus, list | tuple) or not cpus or \
            not all(isinstance(c, int) and not isinstance(c, bool) for c in cpus):
        raise UsageError(f"load_cpus must be a list of CPU numbers (e.g. [1]), got {raw!r}")
    n = os.cpu_count() or 1
    bad = sorted(c for c in cpus if not 0 <= c < n)
    if bad:
        raise UsageError(f"load_cpus: CPUs {bad} do not exist here (CPUs 0-{n - 1})")
    if threads != 1:
        # ONNX Runtime starts a session's intra-op threads where the session is created:
        # inference would then run on the load CPUs.
        raise UsageError("load_cpus needs threads = 1 (a session's intra-op threads "
                         "would start on the load CPUs); drop one of the two")
    return tuple(sorted(set(cpus)))


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> ServeConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        text = path.read_text()
        try:
            raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{path}: {exc}") from exc
    raw |= {k: v for k, v in (overrides or {}).items() if v is not None}
    _only(raw, {f.name for f in fields(ServeConfig)}, "serve config")
    models = [m if isinstance(m, ModelConfig) else model_config(m)
              for m in raw.pop("models", [])]
    if not models:
        raise UsageError("nothing to serve: give MODEL[@CHANNEL] or a config with [[models]]")
    if len({m.name for m in models}) != len(models):
        raise UsageError("two served models share a name")
    fleet = raw.get("fleet")
    if isinstance(fleet, dict):
        _only(fleet, {f.name for f in fields(FleetConfig)}, "[fleet]")
        raw["fleet"] = FleetConfig(**fleet)
    if raw.get("token") is None and os.environ.get(TOKEN_ENV):
        raw["token"] = os.environ[TOKEN_ENV]
    if raw.get("token") is not None and raw.get("actor") is not None:
        raise UsageError("give the gateway an actor or a token, not both (with a token "
                         "it acts as the token's subject)")
    if raw.get("trust", "never") not in ("never", "signed", "any"):
        raise UsageError("trust must be never, signed or any")
    raw["load_cpus"] = _load_cpus(raw.get("load_cpus"), raw.get("threads", 1))
    mb = raw.get("standby_mb", 0.0)
    if isinstance(mb, bool) or not isinstance(mb, int | float) or mb < 0:
        raise UsageError(f"standby_mb must be a number of MB >= 0, not {mb!r}",
                         hint="0 keeps no freed version loaded")
    return ServeConfig(models=models, **raw)
