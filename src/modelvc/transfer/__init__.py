"""Push, pull and clone between registries (local folders, S3-backed, servers).

    push(src, dst, ["bert@main"])        dst: a Registry, a folder, a URL, a remote name
    pull(dst, src, ["bert"])             every branch and tag of bert
    clone("http://host:8470", "./copy")  every model, branch, tag and channel

Only what the receiver lacks travels, as stored (deltas stay deltas); every object is
verified by the receiver before it is stored; an interrupted transfer is resumed by
running it again. See docs/transfer.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..registry import Registry
from .engine import Progress, RefResult, TransferResult, select_refs, transfer
from .http import HttpEnd
from .local import LocalEnd, local_end
from .protocol import Sink, Source
from .remotes import add_remote, remote_url, remotes, remove_remote

__all__ = [
    "HttpEnd",
    "LocalEnd",
    "RefResult",
    "TransferResult",
    "add_remote",
    "clone",
    "open_end",
    "pull",
    "push",
    "remote_url",
    "remotes",
    "remove_remote",
]

Target = Registry | str | Path


@contextmanager
def open_end(target: Target, *, token: str | None = None,
             local: Registry | None = None) -> Iterator[Source | Sink]:
    """A transfer end for a Registry, a registry folder, an http(s) URL, or the name of
    a remote configured in `local`."""
    if isinstance(target, Registry):
        yield local_end(target)
        return
    text = str(target)
    if local is not None and "/" not in text and "://" not in text:
        text = remote_url(local, text)
    if text.startswith(("http://", "https://")):
        end = HttpEnd(text, token=token)
        try:
            yield end
        finally:
            end.close()
        return
    reg = Registry.open_local(text)
    try:
        yield LocalEnd(reg)
    finally:
        reg.close()


def push(src: Registry, dst: Target, refs: Sequence[str], *, force: bool = False,
         channels: bool = False, token: str | None = None, jobs: int = 4,
         progress: Progress | None = None) -> TransferResult:
    """Send REFS (MODEL or MODEL@NAME) with their history to DST."""
    with open_end(dst, token=token, local=src) as sink:
        return transfer(local_end(src), sink, refs, force=force,  # type: ignore[arg-type]
                        channels=channels, jobs=jobs, progress=progress)


def pull(dst: Registry, src: Target, refs: Sequence[str], *, force: bool = False,
         channels: bool = False, token: str | None = None, jobs: int = 4,
         progress: Progress | None = None) -> TransferResult:
    """Fetch REFS (MODEL or MODEL@NAME; none: every model) from SRC into DST."""
    with open_end(src, token=token, local=dst) as source:
        return transfer(source, local_end(dst), refs, force=force,  # type: ignore[arg-type]
                        channels=channels, jobs=jobs, progress=progress)


def clone(url: Target, path: str | Path, *, token: str | None = None, jobs: int = 4,
          meta_url: str | None = None, objects_url: str | None = None,
          progress: Progress | None = None) -> tuple[Registry, TransferResult]:
    """A new registry at PATH holding every model, branch, tag and channel of URL, with
    URL recorded as its remote "origin". The caller closes the returned Registry.
    Run again after an interruption, it resumes into the registry it began (PATH's
    registry whose origin is URL): only what is missing travels."""
    reg = _resumed_clone(url, path) or Registry.init(path, meta_url=meta_url,
                                                      objects_url=objects_url)
    try:
        if not isinstance(url, Registry):
            add_remote(reg, "origin", str(url))
        result = pull(reg, url, [], channels=True, token=token, jobs=jobs, progress=progress)
    except BaseException:
        reg.close()
        raise
    return reg, result


def _resumed_clone(url: Target, path: str | Path) -> Registry | None:
    """PATH's registry when a clone of URL began it (its origin is URL), else None."""
    if isinstance(url, Registry) or not (Path(path) / ".modelvc").exists():
        return None
    reg = Registry.open_local(path)
    if remotes(reg).get("origin") == str(url):
        return reg
    reg.close()
    return None


__all__ += ["Sink", "Source", "select_refs", "transfer"]
