"""Prepare the registry folder a server container serves, from its environment.

Scale-out (MODELVC_META_URL set): the folder is a pointer, rewritten on every start, to
the PostgreSQL database (MODELVC_META_URL, from a Secret) and the bucket
(MODELVC_OBJECTS_URL, e.g. s3://models/prod; credentials come from AWS_* variables and
never touch the file). The database schema is created if the database is empty; a
replica racing another one to it finds it created and carries on.

Single pod (no MODELVC_META_URL): a SQLite registry with local objects is created in
the folder once; put the folder on a persistent volume.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from modelvc.atomic import atomic_write
from modelvc.errors import AlreadyExists, ModelvcError, RegistryNotFound
from modelvc.layout import DIRNAME, FORMAT_VERSION
from modelvc.meta.store import MetaStore
from modelvc.registry import Registry


def prepare(env: dict[str, str]) -> Path:
    folder = Path(env.get("MODELVC_SERVER_REGISTRY", "/var/lib/modelvc/registry"))
    meta = env.get("MODELVC_META_URL", "").strip()
    objects = env.get("MODELVC_OBJECTS_URL", "").strip()
    root = folder / DIRNAME
    if not meta:
        if objects:
            raise SystemExit("MODELVC_OBJECTS_URL is set without MODELVC_META_URL: "
                             "a shared bucket needs the shared database too")
        if not (root / "config.json").exists():
            Registry.init(folder).close()
        return folder
    if not objects:
        raise SystemExit("MODELVC_META_URL is set without MODELVC_OBJECTS_URL")
    (root / "locks").mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT_VERSION, "id": env.get("MODELVC_REGISTRY_ID") or "modelvc",
              "meta": meta, "objects": objects}
    # 0600: the database URL carries its password.
    atomic_write(root / "config.json", json.dumps(config, indent=2).encode() + b"\n",
                 mode=0o600)
    try:
        MetaStore.open(meta).close()
    except RegistryNotFound:
        with contextlib.suppress(AlreadyExists):  # another replica was first
            MetaStore.create(meta).close()
    return folder


def main() -> int:
    try:
        folder = prepare(dict(os.environ))
    except ModelvcError as exc:
        print(f"modelvc bootstrap: {exc}", file=sys.stderr)
        return 1
    print(f"modelvc bootstrap: serving the registry at {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
