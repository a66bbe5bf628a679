"""MLflow-only metadata, as JSON documents keyed by (kind, key).

Kinds: `exp` (experiments), `run` (runs: params, metric history, tags), `lm` (logged
models), `rm` (a registered model's description, tags, deletion), `mv` (a model
version's description, tags, run, source, stage).

Where: on a registry whose metadata is on PostgreSQL, a table `mlflow_docs` in that
database (so every server process on it agrees); on SQLite, a file of its own beside it
(`.modelvc/mlflow.db`: its writers never wait on the registry's). Artifacts not yet
registered (a run's or a logged model's files) are kept under `.modelvc/mlflow/artifacts`
of the registry folder; a registered version's files are in the registry itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import layout

_md = sa.MetaData()
DOCS = sa.Table(
    "mlflow_docs", _md,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("key", sa.String(600), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)


class Sidecar:
    def __init__(self, registry_folder: str | Path) -> None:
        lay = layout.find(Path(registry_folder))
        url = lay.meta_url
        if url.startswith("sqlite"):
            url = f"sqlite:///{(lay.root / 'mlflow.db').resolve()}"
            self.engine = sa.create_engine(url, connect_args={"timeout": 60})

            @sa.event.listens_for(self.engine, "connect")
            def _wal(conn: Any, _: Any) -> None:
                conn.execute("PRAGMA journal_mode=WAL")
        else:
            url = url.replace("postgresql://", "postgresql+psycopg://", 1) \
                if url.startswith("postgresql://") else url
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        try:
            _md.create_all(self.engine, checkfirst=True)
        except sa.exc.DBAPIError:  # another server process created it just now
            _md.create_all(self.engine, checkfirst=True)
        self.artifacts = lay.root / "mlflow" / "artifacts"

    def close(self) -> None:
        self.engine.dispose()

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(DOCS.c.body).where(DOCS.c.kind == kind,
                                                         DOCS.c.key == key)).first()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, kind: str, key: str, body: dict[str, Any]) -> None:
        text = json.dumps(body, sort_keys=True)
        for _ in range(3):  # update, else insert; a racing insert makes us update
            with self.engine.begin() as c:
                n = c.execute(DOCS.update().where(DOCS.c.kind == kind, DOCS.c.key == key)
                              .values(body=text, updated=time.time())).rowcount
                if n:
                    return
                try:
                    c.execute(DOCS.insert().values(kind=kind, key=key, body=text,
                                                   updated=time.time()))
                    return
                except IntegrityError:
                    continue
        raise RuntimeError(f"could not write {kind}/{key}")

    def insert(self, kind: str, key: str, body: dict[str, Any]) -> bool:
        """False when (kind, key) exists already."""
        try:
            with self.engine.begin() as c:
                c.execute(DOCS.insert().values(kind=kind, key=key, updated=time.time(),
                                               body=json.dumps(body, sort_keys=True)))
            return True
        except IntegrityError:
            return False

    def delete(self, kind: str, key: str) -> None:
        with self.engine.begin() as c:
            c.execute(DOCS.delete().where(DOCS.c.kind == kind, DOCS.c.key == key))

    def items(self, kind: str, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        q = sa.select(DOCS.c.key, DOCS.c.body).where(DOCS.c.kind == kind)
        if prefix:
            q = q.where(DOCS.c.key.startswith(prefix, autoescape=True))
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(DOCS.c.key)).all()
        for key, body in rows:
            yield key, dict(json.loads(body))

    # Staged artifacts that became a version are removed from staging (the registry holds
    # them, with deltas); `moved` documents say where their paths went, so a run's or a
    # logged model's artifact URI keeps working.
    def mark_registered(self, rel: str, model: str, number: int, *, file: str | None
                        ) -> None:
        self.put("moved", rel.strip("/"), {"model": model, "number": number, "file": file})

    def moved_to(self, rel: str) -> tuple[str, int, str] | None:
        """(model, version number, path inside the version) of a registered staged path."""
        parts = [p for p in rel.strip("/").split("/") if p]
        for i in range(len(parts), 0, -1):
            doc = self.get("moved", "/".join(parts[:i]))
            if doc is None:
                continue
            rest = "/".join(parts[i:])
            if doc.get("file"):
                if rest:
                    return None
                rest = str(doc["file"])
            return str(doc["model"]), int(doc["number"]), rest
        return None
