"""Creating a registry whose metadata and objects live elsewhere (`modelvc init --meta
--objects`): PostgreSQL and S3, shared by every machine whose folder points at them.

Both are checked before anything is written, and a failed creation leaves no folder
behind, so a wrong URL can be fixed and the command rerun.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ModelvcError, StorageError, UsageError
from .layout import DIRNAME
from .registry import Registry

_SECRETS = {"secret_key", "session_token", "password"}


def meta_url(raw: str) -> str:
    """A metadata URL as SQLAlchemy takes it: postgresql:// and postgres:// use psycopg 3
    (the driver modelvc installs); other SQLAlchemy URLs pass as they are."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise UsageError(f"--meta must be a database URL, got {raw!r}",
                         hint="e.g. postgresql://USER:PASSWORD@HOST:5432/DATABASE")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return raw


def redact(url: str) -> str:
    """The URL without its password or secret key (for output and logs); a URL with
    neither comes back as it is (urlunsplit would turn sqlite:////abs/path, whose
    netloc is empty, into sqlite://abs/path)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    has_password = "@" in netloc and ":" in netloc.split("@", 1)[0]
    if not has_password and not any(k in _SECRETS for k, _ in pairs):
        return url
    if has_password:
        user = netloc.split("@", 1)[0].split(":", 1)[0]
        netloc = f"{user}:***@{netloc.split('@', 1)[1]}"
    query = urlencode([(k, "***" if k in _SECRETS else v)
                       for k, v in pairs],
                      safe="/:*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _check_store(url: str) -> None:
    from .objects import open_store

    try:
        store = open_store(url)
        try:
            store.has("0" * 64)  # a request that needs the endpoint, bucket and keys
        finally:
            store.close()
    except ModelvcError:
        raise
    except Exception as exc:  # botocore's endpoint, credential and bucket errors
        raise StorageError(f"the object store {redact(url)} did not answer: {exc}",
                           hint="check the endpoint, the bucket and the credentials "
                                "(access_key/secret_key in the URL or AWS_* variables)"
                           ) from exc


def init_registry(path: str | Path, meta: str | None, objects: str | None
                  ) -> tuple[Path, str, str]:
    """Create PATH/.modelvc on the given database and store; (root, meta, objects)."""
    folder = Path(path)
    m = meta_url(meta) if meta is not None else None
    if objects is not None:
        _check_store(objects)
    root = folder / DIRNAME
    existed = root.exists()
    try:
        reg = Registry.init(folder, meta_url=m, objects_url=objects)
    except BaseException:
        if not existed:  # nothing half-made stays behind (the database is untouched
            shutil.rmtree(root, ignore_errors=True)  # unless its schema was created)
        raise
    with reg:
        return reg.where()  # config.json is 0600 when it names a database or bucket
