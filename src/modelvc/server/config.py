"""Server configuration: defaults < file (YAML, TOML or JSON) < MODELVC_SERVER_* < flags."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .state import ServerConfig

ENV_PREFIX = "MODELVC_SERVER_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the server config {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # each parser has its own error type
        raise UsageError(f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}",
                         hint="fix the file; keys are the fields of ServerConfig") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
    return data.get("server", data) if isinstance(data.get("server"), dict) else data


def _coerce(name: str, kind: Any, value: Any, origin: str) -> Any:
    kind = str(kind)
    if isinstance(value, str) and "bool" in kind:
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise UsageError(f"{origin}: {name} must be true or false, not {value!r}")
    if "float" in kind and value is not None:
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{origin}: {name} must be a number, not {value!r}") from exc
    if "int" in kind and value is not None:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{origin}: {name} must be an integer, not {value!r}") from exc
    return value


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                **flags: Any) -> ServerConfig:
    """The effective configuration; flags given as None are ignored."""
    env = dict(os.environ) if env is None else env
    known = {f.name: f.type for f in fields(ServerConfig)}
    values: dict[str, Any] = {}
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    if path is not None:
        for k, v in read_file(Path(path)).items():
            key = k.replace("-", "_")
            if key not in known:
                raise UsageError(f"{path}: unknown setting {k!r}",
                                 hint=f"known settings: {', '.join(sorted(known))}")
            values[key] = _coerce(key, known[key], v, str(path))
    for key, kind in known.items():
        if ENV_PREFIX + key.upper() in env:
            values[key] = _coerce(key, kind, env[ENV_PREFIX + key.upper()],
                                  ENV_PREFIX + key.upper())
    for key, v in flags.items():
        if v is not None:
            values[key] = _coerce(key, known[key], v, "--" + key.replace("_", "-"))
    if not values.get("registry"):
        raise UsageError("the server needs a registry",
                         hint="pass --registry PATH, set MODELVC_SERVER_REGISTRY, or put "
                              "`registry:` in the config file")
    return ServerConfig(**values)
