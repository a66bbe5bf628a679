"""Create and open a registry database: schema migrations and format version."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from ..errors import AlreadyExists, RegistryNotFound, UnsupportedFormat
from . import engine as eng
from . import migrate
from .rows import now
from .schema import repo_info

T = TypeVar("T")
Opened = tuple[sa.Engine, dict[str, str]]


def create(url: str, fmt: int) -> Opened:
    engine = eng.make_engine(url)

    def tx(conn: sa.Connection) -> dict[str, str]:
        if sa.inspect(conn).has_table(repo_info.name):
            raise AlreadyExists(
                f"{safe_url(url)} already holds a modelvc registry",
                hint="open it instead, or use an empty database",
            )
        migrate.upgrade(conn)
        info = {
            "format_version": str(fmt),
            "registry_id": uuid.uuid4().hex,
            "created_at": now().isoformat(),
        }
        conn.execute(sa.insert(repo_info), [{"key": k, "value": v} for k, v in info.items()])
        return info

    return engine, _guard(engine, lambda: eng.run(engine, tx, write=True))


def open_(url: str, fmt: int) -> Opened:
    db = sa.make_url(url)
    if db.get_backend_name() == "sqlite" and not Path(db.database or "").is_file():
        # Connecting would create an empty file; a missing file is no registry.
        raise RegistryNotFound(f"no registry database at {db.database}")
    engine = eng.make_engine(url)

    def read(conn: sa.Connection) -> tuple[dict[str, str], str | None]:
        return read_info(conn, url, fmt), migrate.current_revision(conn)

    def upgrade(conn: sa.Connection) -> dict[str, str]:
        info = read_info(conn, url, fmt)  # re-check under the write lock
        if migrate.current_revision(conn) != migrate.head_revision():
            migrate.upgrade(conn)
        if int(info["format_version"]) < fmt:
            conn.execute(
                sa.update(repo_info)
                .where(repo_info.c.key == "format_version")
                .values(value=str(fmt))
            )
            info["format_version"] = str(fmt)
        return info

    def go() -> dict[str, str]:
        info, rev = eng.run(engine, read, write=False)
        # A revision we do not know with a format we support means a newer modelvc
        # made a compatible change: use the schema as it is.
        if rev != migrate.head_revision() and rev in migrate.known_revisions():
            info = eng.run(engine, upgrade, write=True)
        return info

    return engine, _guard(engine, go)


def read_info(conn: sa.Connection, url: str, fmt: int) -> dict[str, str]:
    """repo_info as a dict; refuses a format newer than `fmt` (invariant 5)."""
    if not sa.inspect(conn).has_table(repo_info.name):
        raise RegistryNotFound(f"no modelvc registry in {safe_url(url)}")
    info = {k: v for k, v in conn.execute(sa.select(repo_info.c.key, repo_info.c.value))}
    found = int(info.get("format_version", "0"))
    if found == 0:
        raise RegistryNotFound(f"no modelvc registry in {safe_url(url)} (no format version)")
    if found > fmt:
        raise UnsupportedFormat(
            f"the registry has format version {found}; this modelvc reads up to "
            f"format version {fmt}",
            hint="upgrade modelvc (pip install -U modelvc) to open it",
        )
    return info


def _guard(engine: sa.Engine, fn: Callable[[], T]) -> T:
    """Dispose the engine if opening fails, so no pooled connection leaks."""
    try:
        return fn()
    except BaseException:
        engine.dispose()
        raise


def safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)
