"""What a commit, a ref move and a gate run write, on SQLite without SQLAlchemy
(LiteMeta's write verbs).

A `modelvc commit` process spent more CPU importing SQLAlchemy and building its
statements than recording the version takes (~0.3 s, issue 13). These functions write
exactly the rows MetaStore's ensure_model, insert_version, set_ref and record_gate_run
write (versions.py, refs.py, refops.move_ref, objectsql.link, governance.py;
tests/meta/test_litewrite.py compares the two databases row by row), inside a
transaction LiteMeta opens with BEGIN IMMEDIATE, as meta/engine.py does for a write:
the database lock is the per-model commit lock and keeps the audit chain linear.
Values are stored as SQLAlchemy stores them on SQLite: UTC datetimes as
'YYYY-MM-DD HH:MM:SS.ffffff', JSON by json.dumps (None as 'null'), booleans as 0/1.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import AlreadyExists, Conflict, ModelNotFound, RefMoved, RefNotFound, UsageError
from .api import ASIDE, AuditEntry, ModelRow, NewVersion, ObjectRow, RefKind, RefRow, VersionRow
from .audithash import entry_hash

Heads = list[tuple[int, str]]  # (audit id, hash) appended in this transaction


def stamp(at: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite DateTime stores it (UTC digits, naive)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def _json(value: Any) -> str:
    return json.dumps(value)


def ensure_model(conn: sqlite3.Connection, name: str, at: datetime) -> ModelRow:
    conn.execute("INSERT INTO models (name, created_at, next_number) VALUES (?, ?, 1) "
                 "ON CONFLICT DO NOTHING", (name, stamp(at)))
    r = conn.execute("SELECT id, name, created_at FROM models WHERE name = ?",
                     (name,)).fetchone()
    return ModelRow(id=r[0], name=r[1], created_at=datetime.fromisoformat(r[2]).replace(
        tzinfo=UTC))


def check_json(v: NewVersion) -> None:
    """As versions.py's _check_json: refuse what JSON cannot hold before writing."""
    for name in ("parents", "params", "metrics", "lineage"):
        try:
            json.dumps(getattr(v, name), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise UsageError(
                f"version {name} must be JSON-serialisable: {err}",
                hint="use str/int/float/bool/None, lists and dicts with string keys",
            ) from err


def insert_version(conn: sqlite3.Connection, v: NewVersion, *, branch: str | None,
                   expected_head: str | None, create_branch: bool, actor: str,
                   audit: AuditEntry | None, tags: Sequence[tuple[str, AuditEntry]],
                   at: datetime, heads: Heads) -> VersionRow:
    """MetaStore.insert_version's transaction body (its docstring is the contract)."""
    if conn.execute("SELECT 1 FROM versions WHERE id = ?", (v.id,)).fetchone():
        raise _exists(v.id)
    counter = conn.execute("UPDATE models SET next_number = next_number + 1 WHERE name = ? "
                           "RETURNING id, next_number", (v.model,)).fetchone()
    if counter is None:
        raise ModelNotFound(f"no model {v.model!r}", hint="list models with `modelvc models`")
    model_id, number = counter[0], counter[1] - 1
    try:
        conn.execute(
            "INSERT INTO versions (id, model_id, number, created_at, author, message, parents, "
            "params, metrics, lineage, raw_size, stored_size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (v.id, model_id, number, stamp(v.created_at), v.author, v.message,
             _json(list(v.parents)), _json(v.params), _json(v.metrics), _json(v.lineage),
             v.raw_size, v.stored_size))
    except sqlite3.IntegrityError as err:
        raise _exists(v.id) from err
    t = stamp(at)
    _link(conn, v.id, v.objects, t, v.ref_objects)
    if audit is not None:
        append_audit(conn, audit, at, heads)
    if branch is not None:
        move_ref(conn, model_id, v.model, branch, "branch", expected_head, v.id, actor,
                 "commit", v.message, create=False,
                 create_if_missing=create_branch, at=t, created_action="create")
    for name, entry in tags:
        move_ref(conn, model_id, v.model, name, "tag", None, v.id, actor, "create", "",
                 create=True, at=t)
        append_audit(conn, entry, at, heads)
    return VersionRow(
        id=v.id, model=v.model, number=number,
        created_at=v.created_at.replace(tzinfo=UTC) if v.created_at.tzinfo is None
        else v.created_at.astimezone(UTC),
        author=v.author, message=v.message, parents=list(v.parents), params=dict(v.params),
        metrics=dict(v.metrics), lineage=dict(v.lineage), raw_size=v.raw_size,
        stored_size=v.stored_size,
    )  # fmt: skip


def _link(conn: sqlite3.Connection, version_id: str, objs: Sequence[ObjectRow], at: str,
          refs: Sequence[ObjectRow]) -> None:
    linked = {o.id for o in objs}
    rows = sorted({o.id: o for o in (*refs, *objs)}.values(), key=lambda o: o.id)
    conn.executemany(
        "INSERT INTO objects (id, kind, codec, raw_size, stored_size, ref_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [(o.id, o.kind, o.codec, o.raw_size, o.stored_size, o.ref_id, at) for o in rows])
    _replace_aside(conn, rows)
    conn.executemany("INSERT INTO version_objects (version_id, object_id) VALUES (?, ?)",
                     [(version_id, o.id) for o in rows if o.id in linked])


def _replace_aside(conn: sqlite3.Connection, rows: Sequence[ObjectRow]) -> None:
    """objectsql.replace_aside: rows `verify --repair` moved aside take the new writer's."""
    by_id = {o.id: o for o in rows}
    ids = list(by_id)
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        for (oid,) in conn.execute(f"SELECT id FROM objects WHERE codec = ? AND id IN ({marks})",
                                   [ASIDE, *part]).fetchall():
            o = by_id[oid]
            conn.execute("UPDATE objects SET kind = ?, codec = ?, raw_size = ?, "
                         "stored_size = ?, ref_id = ? WHERE id = ?",
                         (o.kind, o.codec, o.raw_size, o.stored_size, o.ref_id, oid))


def append_audit(conn: sqlite3.Connection, e: AuditEntry, at: datetime, heads: Heads) -> int:
    seq, prev = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    h = entry_hash(prev, at, e)
    (new_id,) = conn.execute(
        "INSERT INTO audit (at, actor, action, model, target, before, after, reason, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (stamp(at), e.actor, e.action, e.model, e.target, _json(e.before), _json(e.after),
         e.reason, prev, h)).fetchone()
    conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq + 1, h))
    heads.append((int(new_id), h))
    return int(new_id)


def set_ref(conn: sqlite3.Connection, model: str, name: str, kind: RefKind, *,
            expected: str | None, new: str | None, actor: str, action: str, reason: str,
            create: bool, audit: AuditEntry | None, at: datetime, heads: Heads) -> RefRow:
    """MetaStore.set_ref's transaction body (refs.py: its docstring is the contract)."""
    row = conn.execute("SELECT id FROM models WHERE name = ?", (model,)).fetchone()
    if row is None:
        raise ModelNotFound(f"no model {model!r}", hint="list models with `modelvc models`")
    model_id = int(row[0])
    if new is not None:
        _check_target(conn, model_id, model, new)
    out = move_ref(conn, model_id, model, name, kind, expected, new, actor, action, reason,
                   create=create, at=stamp(at))
    if audit is not None:
        append_audit(conn, audit, at, heads)
    return RefRow(out.model, out.name, out.kind, out.version_id,
                  at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC),
                  out.revision)


def _check_target(conn: sqlite3.Connection, model_id: int, model: str,
                  version_id: str) -> None:
    """refops.check_target: the version exists, is MODEL's and is not deleted."""
    row = conn.execute("SELECT model_id, deleted_at FROM versions WHERE id = ?",
                       (version_id,)).fetchone()
    if row is None:
        raise RefNotFound(f"no version {version_id}",
                          hint="commit the version before pointing a ref at it")
    if row[0] != model_id:
        raise Conflict(f"version {version_id} belongs to another model, not {model!r}",
                       hint="refs can only point at versions of their own model")
    if row[1] is not None:
        raise Conflict(f"version {version_id} is deleted", hint="point the ref at a live version")


def move_ref(conn: sqlite3.Connection, model_id: int, model: str, name: str, kind: RefKind,
             expected: str | None, new: str | None, actor: str, action: str, reason: str, *,
             create: bool, at: str, create_if_missing: bool = False,
             created_action: str | None = None) -> RefRow:
    """refops.move_ref: create, move (compare-and-swap) or delete (NEW None) a ref and
    append the move to its history. The write lock is held: nobody moves it meanwhile."""
    where = f"{model}@{name}"
    cur = conn.execute("SELECT kind, version_id, revision FROM refs "
                       "WHERE model_id = ? AND name = ?", (model_id, name)).fetchone()
    old, revision = None, 1
    if cur is None:
        if not (create or create_if_missing):
            raise RefNotFound(f"no ref {where}", hint=f"create the {kind} first")
        conn.execute("INSERT INTO refs (model_id, name, kind, version_id, updated_at, "
                     "revision) VALUES (?, ?, ?, ?, ?, 1)", (model_id, name, kind, new, at))
        action = created_action or action
    else:
        cur_kind, old, revision = cur[0], cur[1], cur[2] + 1
        if create:
            raise AlreadyExists(
                f"{where} already exists (a {cur_kind})",
                hint="tags are immutable: pick another tag name"
                if cur_kind == "tag" and kind == "tag" else "pick another name")
        if cur_kind != kind:
            raise Conflict(f"{where} is a {cur_kind}, not a {kind}",
                           hint=f"address it as a {cur_kind}")
        if old != expected:
            raise RefMoved(f"{where} points at {old}, not {expected}",
                           hint="another writer moved it first: re-read the ref and retry")
        if kind == "tag" and old is not None and new is not None:
            raise Conflict(f"tag {where} is immutable",
                           hint="delete the tag first or create a new one")
        if new is None:
            conn.execute("DELETE FROM refs WHERE model_id = ? AND name = ?", (model_id, name))
        else:
            conn.execute("UPDATE refs SET version_id = ?, updated_at = ?, "
                         "revision = revision + 1 WHERE model_id = ? AND name = ?",
                         (new, at, model_id, name))
    conn.execute("INSERT INTO ref_moves (model_id, name, kind, old, new, actor, at, action, "
                 "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (model_id, name, kind, old, new, actor, at, action, reason))
    return RefRow(model, name, kind, new, datetime.fromisoformat(at).replace(tzinfo=UTC),
                  revision)


def record_gate_run(conn: sqlite3.Connection, *, version_id: str, channel: str,
                    policy_digest: str, passed: bool, report_id: str, summary: dict[str, Any],
                    actor: str, audit_entry: AuditEntry, at: datetime,
                    heads: Heads) -> tuple[int, datetime]:
    """MetaStore.record_gate_run's transaction body: the run's id and time."""
    (rid,) = conn.execute(
        "INSERT INTO gate_runs (version_id, channel, policy_digest, passed, report_id, "
        "summary, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (version_id, channel, policy_digest, int(passed), report_id, _json(summary), actor,
         stamp(at))).fetchone()
    append_audit(conn, audit_entry, at, heads)
    return int(rid), at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _exists(version_id: str) -> AlreadyExists:
    return AlreadyExists(f"version {version_id} already exists",
                         hint="nothing to commit: it is recorded")
