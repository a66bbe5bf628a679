"""Named remotes, kept in the registry's config.json under "remotes"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..errors import NotFound, UsageError
from ..names import check_name
from ..registry import Registry


def _config_path(reg: Registry) -> Path:
    return reg.layout.root / "config.json"


def _load(reg: Registry) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_config_path(reg).read_text())
    return data


def remotes(reg: Registry) -> dict[str, str]:
    return dict(_load(reg).get("remotes", {}))


def remote_url(reg: Registry, name: str) -> str:
    url = remotes(reg).get(name)
    if url is None:
        raise NotFound(f"no remote named {name!r}",
                       hint="add one with `modelvc remote add NAME URL`, or pass a URL")
    return url


def add_remote(reg: Registry, name: str, url: str) -> None:
    check_name(name, "remote name")
    if not url:
        raise UsageError("a remote needs a URL or a path")
    _save(reg, name, url)


def remove_remote(reg: Registry, name: str) -> None:
    remote_url(reg, name)
    _save(reg, name, None)


def _save(reg: Registry, name: str, url: str | None) -> None:
    config = _load(reg)
    table = dict(config.get("remotes", {}))
    if url is None:
        table.pop(name, None)
    else:
        table[name] = url
    config["remotes"] = table
    atomic_write(_config_path(reg), json.dumps(config, indent=2).encode() + b"\n", mode=0o644)
    reg.layout.config["remotes"] = table
