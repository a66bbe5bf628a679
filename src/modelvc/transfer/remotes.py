"""Named remotes, kept in the registry's config.json under "remotes"."""

from __future__ import annotations

from ..errors import NotFound, UsageError
from ..names import check_name
from ..registry import Registry


def remotes(reg: Registry) -> dict[str, str]:
    return dict(reg.config_value("remotes") or {})


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
    table = remotes(reg)
    if url is None:
        table.pop(name, None)
    else:
        table[name] = url
    reg.set_config_value("remotes", table)
