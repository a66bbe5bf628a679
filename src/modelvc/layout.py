"""Where an embedded registry lives on disk, and how it is found.

    PROJECT/.modelvc/
        config.json     format version, registry id, where metadata and objects live
        meta.db         SQLite metadata (unless config points elsewhere)
        objects/        the local object store
        locks/gc.lock   shared by writers, exclusive for gc's sweep
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .errors import (
    AlreadyExists,
    Corrupt,
    Locked,
    RegistryNotFound,
    StorageError,
    UnsupportedFormat,
)

DIRNAME = ".modelvc"
FORMAT_VERSION = 1
ENV_VAR = "MODELVC_REGISTRY"


@dataclass(frozen=True)
class Layout:
    root: Path  # the .modelvc folder
    config: dict[str, Any]

    @property
    def meta_url(self) -> str:
        url = str(self.config.get("meta", "sqlite:///meta.db"))
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return f"sqlite:///{(self.root / url[len('sqlite:///'):]).resolve()}"
        return url

    @property
    def objects_url(self) -> str:
        url = str(self.config.get("objects", "objects"))
        return url if "://" in url else str((self.root / url).resolve())

    @property
    def registry_id(self) -> str:
        return str(self.config["id"])

    def set_config(self, key: str, value: Any) -> None:
        """Write one entry of config.json atomically (keeping the file's mode: 0600
        when it names a database or bucket) and this copy of it."""
        path = self.root / "config.json"
        config = json.loads(path.read_text())
        config[key] = value
        atomic_write(path, json.dumps(config, indent=2).encode() + b"\n",
                     mode=path.stat().st_mode & 0o777)
        self.config[key] = value

    @contextmanager
    def lock(self, *, exclusive: bool, wait: bool = True) -> Iterator[None]:
        """Writers hold the gc lock shared; gc's sweep holds it exclusive."""
        path = self.root / "locks" / "gc.lock"
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, flags if wait else flags | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise Locked("another modelvc process is writing or collecting garbage") from exc
            yield
        finally:
            os.close(fd)


def create(project: Path, *, meta: str | None = None, objects: str | None = None) -> Layout:
    root = project / DIRNAME
    if (root / "config.json").exists():
        raise AlreadyExists(f"a modelvc registry already exists at {root}")
    config = {
        "format": FORMAT_VERSION,
        "id": uuid.uuid4().hex,
        "meta": meta or "sqlite:///meta.db",
        "objects": objects or "objects",
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "locks").mkdir(exist_ok=True)
        # URLs of a database or bucket may carry a password or keys: owner only.
        atomic_write(root / "config.json", json.dumps(config, indent=2).encode() + b"\n",
                     mode=0o600 if meta or objects else 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create a registry at {root}: {exc.strerror or exc}",
                           hint="choose a folder you can write to (modelvc init PATH)") from exc
    return Layout(root, config)


def load(root: Path) -> Layout:
    try:
        config = json.loads((root / "config.json").read_text())
    except FileNotFoundError as exc:
        raise RegistryNotFound(f"no modelvc registry at {root}") from exc
    except ValueError as exc:
        raise Corrupt(f"{root / 'config.json'} is not valid JSON: {exc}") from exc
    fmt = config.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise UnsupportedFormat(
            f"registry {root} has format {fmt!r}; this modelvc reads format {FORMAT_VERSION}",
            hint="upgrade modelvc (pip install -U modelvc)",
        )
    return Layout(root, config)


def find(start: Path | str | None = None) -> Layout:
    """The registry named by `start`, $MODELVC_REGISTRY, or the nearest .modelvc upward."""
    if start is None and os.environ.get(ENV_VAR):
        start = os.environ[ENV_VAR]
    if start is not None:
        p = Path(start).expanduser()
        if (p / "config.json").exists() and p.name == DIRNAME:
            return load(p)
        if (p / DIRNAME).is_dir():
            return load(p / DIRNAME)
        if (p / "config.json").exists():
            return load(p)
        if p.exists() and not p.is_dir():
            raise RegistryNotFound(
                f"no modelvc registry at {p}: it is a file",
                hint="pass the folder that holds .modelvc (--registry PATH / MODELVC_REGISTRY)")
        raise RegistryNotFound(
            f"no modelvc registry at {p}", hint=f"run `modelvc init {p}` to create one"
        )
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / DIRNAME / "config.json").exists():
            return load(d / DIRNAME)
    raise RegistryNotFound(
        f"no modelvc registry in {here} or any parent folder",
        hint="run `modelvc init` here, or pass --registry PATH / set MODELVC_REGISTRY",
    )
