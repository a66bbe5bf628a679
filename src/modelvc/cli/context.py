"""What every command module shares: the per-invocation context (the registry it works
on, opened once) and the --json option. Apart from main.py, which imports every command
module to register it, so the command modules never import main."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import UsageError

if TYPE_CHECKING:
    from ..api import RegistryAPI
    from ..registry import Registry

F = TypeVar("F", bound=Callable[..., Any])


class Ctx:
    def __init__(self, registry: str | None) -> None:
        self.location = registry
        self._reg: RegistryAPI | None = None

    def registry(self) -> RegistryAPI:
        """The registry the command works on: a folder or a server URL, through the
        RegistryAPI only (so every command works on both)."""
        if self._reg is None:
            from ..registry import Registry

            self._reg = Registry.open(self.location)
        return self._reg

    def local_registry(self) -> Registry:
        """The embedded registry, for the few commands that host one (`deploy`, `serve`,
        `push`/`pull` from this side): UsageError for a server URL."""
        from ..registry import Registry

        reg = self.registry()
        if not isinstance(reg, Registry):
            raise UsageError(f"this command needs a registry folder, not the server "
                             f"{reg.location}",
                             hint="run it where the registry's folder (or its config, for "
                                  "PostgreSQL + S3) is: --registry PATH")
        return reg

    def close(self) -> None:
        if self._reg is not None:
            self._reg.close()


def few_arenas() -> None:
    """For a one-shot command that encodes or decodes (commit, checkout), before its
    threads start and before numpy is imported: one glibc malloc arena. With one per
    thread (up to 8 per CPU), the block-sized buffers one thread frees stay in its arena
    for it alone: a 91 MB delta commit peaked at 235-250 MiB, 187 with one arena, at the
    same CPU (its threads spend their time in zstd and numpy, not in malloc). And no
    OpenBLAS thread pool: these commands do no linear algebra, and numpy's import
    started a spinning thread per CPU (~20-30 ms of CPU per process). Long-running
    commands (serve, server) keep glibc's and OpenBLAS's defaults."""
    import os
    import sys

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = getattr(libc, "mallopt", None)
        if mallopt is not None:
            mallopt(-8, 1)  # M_ARENA_MAX
    except OSError:  # no C library to ask: keep its defaults
        pass


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
