"""The registry's metadata on SQLite, read without SQLAlchemy.

Importing SQLAlchemy and declaring the schema costs more than everything else a
one-shot command like `modelvc log` does (~0.2-0.3 s of CPU per process, issue 13).
`open_meta` gives the registry a `LiteMeta` for a SQLite database: the reads that
`log`, `show`, `refs`, `channel history`, `audit`, `gate show`, `checkout` and the start
of a commit make (resolving refs, versions, refs, ref history, the audit trail, gate
runs, the trust policy) are plain sqlite3 queries here, and so are the writes of a
commit, a ref move (promote, rollback, tag) and a gate run (litewrite.py); any other
call opens the real MetaStore (SQLAlchemy) on first use and goes there. Each method is
one transaction, as in MetaStore, and returns the same records and raises the same
errors (tests/meta/test_lite.py and test_litewrite.py compare them).

Only a database at the schema revision this code knows is read here; any other
state (a missing table, an older revision to migrate, a newer format) is left to
MetaStore.open, which migrates or refuses it.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import interrupts, records
from ..errors import Conflict, ModelNotFound, RefNotFound, StorageError
from . import literows, litewrite
from .api import (
    FORMAT_VERSION,
    HEAD_REVISION,
    AuditEntry,
    AuditRow,
    ModelRow,
    NewVersion,
    RefKind,
    RefMove,
    RefRow,
    VersionRow,
)
from .litewrite import Heads

if TYPE_CHECKING:
    from datetime import datetime

    from ..records import GateRun, Signature, Webhook
    from .store import MetaStore

T = TypeVar("T")
WRITE_RETRIES = 6  # as meta/engine.py
def open_meta(url: str, *, real: MetaStore | None = None) -> MetaStore:
    """The registry's metadata at URL: a LiteMeta for a SQLite file at the current
    schema, else MetaStore.open (which migrates, refuses, or opens PostgreSQL). REAL:
    the MetaStore already open on URL (a registry just created), used for the rest."""
    path = _sqlite_path(url)
    if path is not None and path.is_file():
        lite = LiteMeta(url, path)
        try:
            ok = lite.ready()
        except BaseException:
            lite.close()
            raise
        if ok:
            lite._real = real
            return cast("MetaStore", lite)
        lite.close()
    if real is not None:
        return real
    from .store import MetaStore

    return MetaStore.open(url)


def _sqlite_path(url: str) -> Path | None:
    """The file of a plain sqlite:///PATH URL (None: anything else, left to SQLAlchemy)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    rest = url[len(prefix):]
    return Path(rest) if rest and rest != ":memory:" else None


def _no_model(name: str) -> ModelNotFound:
    return ModelNotFound(f"no model {name!r}", hint="list models with `modelvc models`")


class LiteMeta:
    """MetaStore's read verbs on sqlite3; everything else on a MetaStore opened lazily.

    Thread-safe: one sqlite3 connection per thread (WAL: readers never block). `close`
    from one thread never closes a connection another thread is using (CPython 3.11's
    sqlite3 crashes the process then): that thread closes it when its call ends."""

    # Attributes the registry sets on its MetaStore: kept here, handed on when the
    # real one opens.
    audit_seal: Callable[[int, str], None] | None = None

    def __init__(self, url: str, path: Path) -> None:
        self._url = url
        self._path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._busy: set[sqlite3.Connection] = set()  # in a call on some thread
        self._closed = False
        self._lock = threading.Lock()
        self._real: MetaStore | None = None
        self.registry_id = ""
        self.format_version = FORMAT_VERSION

    # ---- the real MetaStore, for everything not read here
    @property
    def real(self) -> MetaStore:
        with self._lock:
            if self._real is None:
                from .store import MetaStore

                real = MetaStore.open(self._url)
                real.audit_seal = self.audit_seal
                self._real = real
            return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "audit_seal" and self.__dict__.get("_real") is not None:
            self._real.audit_seal = value  # type: ignore[union-attr]

    def will_write(self) -> None:
        """A commit is coming: its writes are made here (litewrite.py), nothing to open."""

    def close(self) -> None:
        """Close every connection not in use now; one in use on another thread is
        closed by that thread as its call ends. Calls after this fail (StorageError)."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
            idle = [c for c in conns if c not in self._busy]
            real, self._real = self._real, None
        for c in idle:
            c.close()
        if real is not None:
            real.close()

    # ---- connections and transactions
    def _take(self, attr: str = "conn", timeout: float = 30) -> sqlite3.Connection:
        """This thread's connection ATTR (opened on first use), marked busy until
        `_give`: `close` leaves a busy connection to its thread."""
        conn: sqlite3.Connection | None = getattr(self._local, attr, None)
        with self._lock:
            if self._closed:
                raise StorageError("the registry's database was closed while in use",
                                   hint="open the registry again")
            if conn is not None:
                self._busy.add(conn)
                return conn
        try:
            conn = sqlite3.connect(self._path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise _failed(exc) from exc
        if attr == "conn":
            try:  # as meta/engine.py sets up its connections (the journal is WAL already)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                conn.close()
                raise _failed(exc) from exc
        setattr(self._local, attr, conn)
        with self._lock:
            self._conns.append(conn)
            self._busy.add(conn)
        return conn

    def _give(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._busy.discard(conn)
            closed = self._closed
        if closed:
            conn.close()

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """FN in one read transaction (a consistent snapshot across its queries)."""
        conn = self._take()
        try:
            with interrupts.deferred():  # a Ctrl-C never leaves the transaction open
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _failed(exc) from exc
        finally:
            self._give(conn)

    def _write(self, fn: Callable[[sqlite3.Connection, Heads], T]) -> T:
        """FN in one write transaction (BEGIN IMMEDIATE, as meta/engine.py), retried
        whole if the busy timeout ran out; the audit head it appended is sealed once
        the transaction has committed (as MetaStore._tx)."""
        with interrupts.deferred():  # a Ctrl-C waits for the commit and its seal
            return self._write_now(fn)

    def _write_now(self, fn: Callable[[sqlite3.Connection, Heads], T]) -> T:
        conn = self._take()
        try:
            return self._write_on(conn, fn)
        finally:
            self._give(conn)

    def _write_on(self, conn: sqlite3.Connection,
                  fn: Callable[[sqlite3.Connection, Heads], T]) -> T:
        for attempt in range(WRITE_RETRIES):
            heads: Heads = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn, heads)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and attempt + 1 < WRITE_RETRIES:
                    time.sleep(random.uniform(0, 0.01 * 2**attempt))
                    continue
                raise _failed(exc) from exc
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"the registry database refused a change: {exc}",
                               hint="another writer may have changed the same rows; "
                                    "re-read and retry") from exc
            except sqlite3.Error as exc:
                raise _failed(exc) from exc
            if heads and self.audit_seal is not None:
                self.audit_seal(*heads[-1])
            return out
        raise AssertionError("unreachable")  # pragma: no cover

    def ready(self) -> bool:
        """Whether the database is a registry at the schema revision read here (and
        not of a newer format): else MetaStore.open decides (migrate or refuse)."""
        def tx(conn: sqlite3.Connection) -> bool:
            have = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('repo_info', 'alembic_version')")}
            if have != {"repo_info", "alembic_version"}:
                return False
            rev = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            info = dict(conn.execute("SELECT key, value FROM repo_info").fetchall())
            fmt = info.get("format_version", "0")
            if rev != [(HEAD_REVISION,)] or not fmt.isdigit() or not (
                    0 < int(fmt) <= FORMAT_VERSION):
                return False
            self.registry_id = info.get("registry_id", "")
            self.format_version = int(fmt)
            return True

        return self._read(tx)

    # ---- models
    @staticmethod
    def _model_id(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise _no_model(name)
        return int(row[0])

    def get_model(self, name: str) -> ModelRow:
        def tx(conn: sqlite3.Connection) -> ModelRow:
            r = conn.execute("SELECT id, name, created_at FROM models WHERE name = ?",
                             (name,)).fetchone()
            if r is None:
                raise _no_model(name)
            return ModelRow(id=r[0], name=r[1], created_at=literows.time_of(r[2]))

        return self._read(tx)

    def list_models(self) -> list[ModelRow]:
        return self._read(lambda conn: [
            ModelRow(id=r[0], name=r[1], created_at=literows.time_of(r[2])) for r in conn.execute(
                "SELECT id, name, created_at FROM models ORDER BY name")])

    # ---- what a commit writes (litewrite.py) and reads after it
    def ensure_model(self, name: str) -> ModelRow:
        return self._write(lambda conn, _: litewrite.ensure_model(conn, name, literows.now()))

    def insert_version(self, v: NewVersion, *, branch: str | None, expected_head: str | None,
                       create_branch: bool, actor: str, audit: AuditEntry | None = None,
                       tags: Sequence[tuple[str, AuditEntry]] = ()) -> VersionRow:
        litewrite.check_json(v)
        return self._write(lambda conn, heads: litewrite.insert_version(
            conn, v, branch=branch, expected_head=expected_head, create_branch=create_branch,
            actor=actor, audit=audit, tags=tags, at=literows.now(), heads=heads))

    def list_webhooks(self, *, active_only: bool = True) -> list[Webhook]:
        q = ("SELECT id, url, secret, events, cursor, created_at, active FROM webhooks"
             + (" WHERE active = 1" if active_only else "") + " ORDER BY id")
        return self._read(lambda conn: [
            records.Webhook(r[0], r[1], r[2], list(literows.json_of(r[3])), r[4],
                            literows.time_of(r[5]), bool(r[6]))
            for r in conn.execute(q)])

    # ---- versions
    def get_version(self, version_id: str) -> VersionRow:
        r = self._read(lambda conn: conn.execute(f"{literows.VERSION} WHERE v.id = ?",
                                                 (version_id,)).fetchone())
        if r is None:
            raise RefNotFound(f"no version {version_id}", hint="list versions with `modelvc log`")
        return literows.version_of(r)

    def version_by_number(self, model: str, number: int) -> VersionRow:
        def tx(conn: sqlite3.Connection) -> VersionRow:
            mid = self._model_id(conn, model)
            known = 0 <= number <= literows.MAX_NUMBER
            r = conn.execute(f"{literows.VERSION} WHERE v.model_id = ? AND v.number = ?",
                             (mid, number)).fetchone() if known else None
            if r is None:
                raise RefNotFound(f"{model} has no v{number}", hint=f"run `modelvc log {model}`")
            return literows.version_of(r)

        return self._read(tx)

    def versions_by_prefix(self, model: str | None, prefix: str) -> list[VersionRow]:
        # MetaStore's startswith(autoescape=True): LIKE with % and _ escaped.
        pat = prefix.lower().replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
        q = f"{literows.VERSION} WHERE v.id LIKE ? ESCAPE '/'"
        args: tuple[Any, ...] = (pat,)
        if model is not None:
            q += " AND m.name = ?"
            args += (model,)
        q += " ORDER BY m.name, v.number"
        return self._read(lambda conn: [literows.version_of(r) for r in conn.execute(q, args)])

    def list_versions(self, model: str, *, include_deleted: bool = False) -> list[VersionRow]:
        def tx(conn: sqlite3.Connection) -> list[VersionRow]:
            mid = self._model_id(conn, model)
            live = "" if include_deleted else " AND v.deleted_at IS NULL"
            return [literows.version_of(r) for r in conn.execute(
                f"{literows.VERSION} WHERE v.model_id = ?{live} ORDER BY v.number DESC", (mid,))]

        return self._read(tx)

    # ---- refs
    def get_ref(self, model: str, name: str) -> RefRow:
        def tx(conn: sqlite3.Connection) -> RefRow:
            mid = self._model_id(conn, model)
            r = conn.execute(f"{literows.REF} WHERE r.model_id = ? AND r.name = ?",
                             (mid, name)).fetchone()
            if r is None:
                raise RefNotFound(f"no ref {model}@{name}", hint=f"see `modelvc refs {model}`")
            return literows.ref_of(r)

        return self._read(tx)

    def change_token(self) -> object | None:
        """A token that differs once any connection has committed since it was read:
        this thread's connection kept for it (it never writes, so every write is
        another connection's) and its PRAGMA data_version. One statement and no busy
        wait (busy: None, as on any error): a gateway's poll reads the refs only when
        it moved."""
        try:
            conn = self._take("token_conn", timeout=0)
        except StorageError:
            return None
        try:
            row = conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        finally:
            self._give(conn)
        return (id(conn), row[0])

    def list_refs(self, model: str, kind: RefKind | None = None) -> list[RefRow]:
        return [literows.ref_of(r)
                for r in self._of_model(model, literows.REF, "r.kind", kind, "r.name")]

    def ref_history(self, model: str, name: str | None = None) -> list[RefMove]:
        return [literows.move_of(r)
                for r in self._of_model(model, literows.MOVE, "r.name", name, "r.at, r.id")]

    def _of_model(self, model: str, select: str, column: str, value: str | None,
                  order: str) -> list[tuple[Any, ...]]:
        """SELECT's rows of MODEL (ModelNotFound if none), those with COLUMN = VALUE
        unless VALUE is None, in ORDER: one read transaction."""
        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            q, args = f"{select} WHERE r.model_id = ?", list[Any]([self._model_id(conn, model)])
            if value is not None:
                q += f" AND {column} = ?"
                args.append(value)
            return conn.execute(f"{q} ORDER BY {order}", args).fetchall()

        return self._read(tx)

    # ---- trust (what every checkout reads)
    def current_policy(self) -> tuple[str, str] | None:
        r = self._read(lambda conn: conn.execute(
            "SELECT digest, body FROM policies ORDER BY id DESC LIMIT 1").fetchone())
        return None if r is None else (r[0], r[1])

    def signatures(self, version_id: str) -> list[Signature]:
        return self._read(lambda conn: [
            records.Signature(r[0], r[1], r[2], literows.time_of(r[3]), r[4]) for r in conn.execute(
                "SELECT version_id, key_id, signature, signed_at, signer FROM signatures "
                "WHERE version_id = ?", (version_id,))])

    def audit_entries(self, *, model: str | None = None, actor: str | None = None,
                      action: str | None = None, target: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      after_id: int = 0, limit: int | None = None,
                      newest: int | None = None, before_id: int | None = None
                      ) -> list[AuditRow]:
        """MetaStore.audit_entries (governance.py): oldest first, ids in (after_id,
        before_id); `newest=N`: only the N newest that match."""
        where, args = ["id > ?"], list[Any]([after_id])
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        for col, val in (("model", model), ("actor", actor), ("action", action),
                         ("target", target)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        for op, when in ((">=", since), ("<=", until)):
            if when is not None:  # stored as UTC digits: string order is time order
                where.append(f"at {op} ?")
                args.append(litewrite.stamp(when))
        q = f"{literows.AUDIT} WHERE {' AND '.join(where)} ORDER BY id"
        q += " DESC" if newest else ""
        if limit is not None or newest:
            q += " LIMIT ?"
            args.append(newest or limit)
        found = self._read(lambda conn: [literows.audit_of(r) for r in conn.execute(q, args)])
        return found[::-1] if newest else found

    # ---- what promote, tag, rollback and gate run write (litewrite.py)
    def set_ref(self, model: str, name: str, kind: RefKind, *, expected: str | None,
                new: str | None, actor: str, action: str, reason: str = "",
                create: bool = False, audit: AuditEntry | None = None) -> RefRow:
        return self._write(lambda conn, heads: litewrite.set_ref(
            conn, model, name, kind, expected=expected, new=new, actor=actor, action=action,
            reason=reason, create=create, audit=audit, at=literows.now(), heads=heads))

    def record_gate_run(self, *, version_id: str, channel: str, policy_digest: str,
                        passed: bool, report_id: str, summary: dict[str, Any], actor: str,
                        audit_entry: AuditEntry) -> GateRun:
        rid, at = self._write(lambda conn, heads: litewrite.record_gate_run(
            conn, version_id=version_id, channel=channel, policy_digest=policy_digest,
            passed=passed, report_id=report_id, summary=summary, actor=actor,
            audit_entry=audit_entry, at=literows.now(), heads=heads))
        return records.GateRun(rid, version_id, channel, policy_digest, passed, report_id,
                               summary, actor, at)

    def gate_runs(self, version_id: str, channel: str | None = None) -> list[GateRun]:
        q, args = ("SELECT id, version_id, channel, policy_digest, passed, report_id, summary, "
                   "actor, at FROM gate_runs WHERE version_id = ?"), [version_id]
        if channel is not None:
            q += " AND channel = ?"
            args.append(channel)
        return self._read(lambda conn: [
            records.GateRun(r[0], r[1], r[2], r[3], bool(r[4]), r[5], literows.json_of(r[6]),
                            r[7], literows.time_of(r[8]))
            for r in conn.execute(q + " ORDER BY id", args)])


def _failed(exc: sqlite3.Error) -> StorageError:
    return StorageError(f"the metadata database failed: {exc}",
                        hint="check that the database is reachable and writable, then retry")
