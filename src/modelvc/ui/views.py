"""What the pages show, computed from the registry verbs (no HTML here)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..records import GateRun, Ref, RefMove, Version
from .port import UIRegistry

PAGE = 50
REFRESH_PER_PAGE = 50  # stale summaries refreshed per page when sorting all models
SORTS = ("name", "activity", "versions", "raw", "stored")


@dataclass
class ModelSummary:
    name: str
    versions: int
    raw: int
    stored: int
    last_activity: datetime | None
    latest: int | None  # number of the newest version
    channels: list[tuple[str, int | None]]  # (channel, version number)
    branches: int

    @property
    def ratio(self) -> float:
        return self.stored / self.raw if self.raw else 0.0


@dataclass
class ModelData:
    """A model's versions and what every page derives from them, computed once per
    change of the model (see VersionsCache)."""

    versions: list[Version]  # newest first, deleted ones included
    live: list[Version] = field(init=False)
    numbers: dict[str, int] = field(init=False)
    by_id: dict[str, Version] = field(init=False)
    children: dict[str, list[Version]] = field(init=False)
    derived: dict[str, list[Version]] = field(init=False)  # source id -> derived from it
    raw: int = field(init=False)
    stored: int = field(init=False)

    def __post_init__(self) -> None:
        self.live = [v for v in self.versions if v.deleted_at is None]
        self.numbers = {v.id: v.number for v in self.versions}
        self.by_id = {v.id: v for v in self.versions}
        self.children = {}
        self.derived = {}
        for v in reversed(self.versions):  # oldest first: children listed in order
            for p in v.parents:
                self.children.setdefault(p, []).append(v)
            rec = derivation(v)
            if rec is not None:
                self.derived.setdefault(rec["version"], []).append(v)
        self.raw = sum(v.raw_size for v in self.live)
        self.stored = sum(v.stored_size for v in self.live)


def derivation(v: Version) -> dict[str, Any] | None:
    """V's `derived_from` record (docs/derive.md) if it names a source, else None: any
    caller can write lineage, so a malformed record is shown as plain lineage only."""
    rec = v.lineage.get("derived_from") if isinstance(v.lineage, dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get("version"), str):
        return None
    return rec


def derivation_text(rec: dict[str, Any]) -> str:
    """`cast (dtype=bf16)`: the recipe and its params, as `modelvc log --graph` marks it."""
    params = rec.get("params")
    ps = " ".join(f"{k}={x}" for k, x in params.items()) if isinstance(params, dict) else ""
    return f"{rec.get('recipe')}" + (f" ({ps})" if ps else "")


class VersionsCache:
    """A model's versions, kept while its refs are unchanged.

    Every commit moves a branch (its revision grows) and every promotion a channel, so
    the refs, one cheap call that is authorized like versions(), tell when the list
    changed: a model of 10,000 versions costs one refs() call per page instead of
    decoding 10,000 rows. Deleting a version moves no ref, so an entry older than `ttl`
    (plus a second per 100 versions: re-reading a big model costs the pages served
    meanwhile) is re-read too, in the background (the page is served from the entry
    meanwhile, so no request waits for a big model's re-read unless its refs moved).
    Entries are evicted least recently used first once they hold more than `budget`
    versions in all (sorting 1,000 models by activity must not evict the big one)."""

    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 budget: int = 200_000) -> None:
        self.ttl = ttl
        self.clock = clock
        self.budget = budget
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, tuple[Any, ...], ModelData]] = {}  # LRU order
        self._held = 0  # versions held by all entries
        self._refreshing: dict[str, threading.Thread] = {}

    def _ttl(self, data: ModelData) -> float:
        return self.ttl + len(data.versions) / 100

    def get(self, reg: UIRegistry, model: str) -> tuple[ModelData, list[Ref]]:
        """(the model's versions and derived data, its refs)."""
        refs = reg.refs(model)
        key = tuple(sorted((r.name, r.kind, r.version_id, r.revision) for r in refs))
        now = self.clock()
        with self._lock:
            hit = self._items.get(model)
            if hit is not None and hit[1] == key:
                self._items[model] = self._items.pop(model)  # most recently used
                if now - hit[0] >= self._ttl(hit[2]) and model not in self._refreshing:
                    t = threading.Thread(target=self._refresh, args=(reg, model, key),
                                         name="modelvc-ui-refresh", daemon=True)
                    self._refreshing[model] = t
                    t.start()
                return hit[2], refs
        return self._load(reg, model, key), refs

    def _load(self, reg: UIRegistry, model: str, key: tuple[Any, ...]) -> ModelData:
        started = self.clock()
        data = ModelData(reg.versions(model))
        with self._lock:
            self._forget(model)
            self._items[model] = (started, key, data)
            self._held += len(data.versions)
            while self._held > self.budget and len(self._items) > 1:
                self._forget(next(iter(self._items)))
        return data

    def _forget(self, model: str) -> None:
        old = self._items.pop(model, None)
        if old is not None:
            self._held -= len(old[2].versions)

    def _refresh(self, reg: UIRegistry, model: str, key: tuple[Any, ...]) -> None:
        try:
            self._load(reg, model, key)
        except Exception:  # the next request reads it itself (and shows the error)
            self.drop(model)
        finally:
            with self._lock:
                self._refreshing.pop(model, None)

    def settle(self) -> None:
        """Wait for background re-reads (tests)."""
        with self._lock:
            pending = list(self._refreshing.values())
        for t in pending:
            t.join()

    def drop(self, model: str) -> None:
        with self._lock:
            self._forget(model)


def summarize(reg: UIRegistry, name: str, versions: VersionsCache | None = None
              ) -> ModelSummary:
    if versions is not None:
        data, refs = versions.get(reg, name)
    else:
        data, refs = ModelData(reg.versions(name)), reg.refs(name)
    vs = data.live
    times = [r.updated_at for r in refs] + ([vs[0].created_at] if vs else [])
    return ModelSummary(
        name=name, versions=len(vs), raw=data.raw, stored=data.stored,
        last_activity=max(times) if times else None,
        latest=vs[0].number if vs else None,
        channels=sorted((r.name, data.numbers.get(r.version_id or ""))
                        for r in refs if r.kind == "channel"),
        branches=sum(1 for r in refs if r.kind == "branch"))


class SummaryCache:
    """Model summaries for sorting the whole list by size or activity: computing one
    costs two registry calls, so they are kept for `ttl` seconds (and dropped at once
    when this UI changes something). Sorting by name summarizes only the page shown."""

    def __init__(self, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 versions: VersionsCache | None = None) -> None:
        self.ttl = ttl
        self.clock = clock
        self.versions = versions or VersionsCache(clock=clock)
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, ModelSummary]] = {}

    def get(self, reg: UIRegistry, name: str, *, budget: list[int] | None = None
            ) -> ModelSummary:
        """A summary at most `ttl` old; with BUDGET ([n]), a stale one is refreshed only
        while n > 0 (each refresh spends one), so sorting 1,000 models costs a bounded
        number of registry calls per page (the rows shown are refreshed regardless)."""
        now = self.clock()
        with self._lock:
            hit = self._items.get(name)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        if hit is not None and budget is not None:
            if budget[0] <= 0:
                return hit[1]
            budget[0] -= 1
        s = summarize(reg, name, self.versions)
        with self._lock:
            self._items[name] = (now, s)
        return s

    def drop(self, name: str) -> None:
        """Forget what this UI just changed (the next page shows it)."""
        self.versions.drop(name)
        with self._lock:
            self._items.pop(name, None)


@dataclass
class ModelList:
    rows: list[ModelSummary]
    total: int
    page: int
    pages: int
    q: str
    sort: str
    desc: bool


def model_list(reg: UIRegistry, cache: SummaryCache, *, q: str = "", sort: str = "name",
               desc: bool = False, page: int = 1, per_page: int = PAGE,
               refresh: int = REFRESH_PER_PAGE) -> ModelList:
    names = sorted(reg.models())
    if q:
        needle = q.lower()
        names = [n for n in names if needle in n.lower()]
    sort = sort if sort in SORTS else "name"
    total = len(names)
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    lo = (page - 1) * per_page
    if sort == "name":
        if desc:
            names.reverse()
        rows = [cache.get(reg, n) for n in names[lo:lo + per_page]]
    else:
        budget = [refresh]
        every = [cache.get(reg, n, budget=budget) for n in names]
        key: Callable[[ModelSummary], Any] = {
            "activity": lambda s: s.last_activity.timestamp() if s.last_activity else 0.0,
            "versions": lambda s: s.versions, "raw": lambda s: s.raw,
            "stored": lambda s: s.stored}[sort]
        every.sort(key=key, reverse=desc)
        rows = [cache.get(reg, s.name) for s in every[lo:lo + per_page]]
    return ModelList(rows, total, page, pages, q, sort, desc)


@dataclass
class RefsAt:
    """Refs grouped by the version they point at."""

    by_version: dict[str, list[Ref]] = field(default_factory=dict)

    @classmethod
    def of(cls, refs: Iterable[Ref]) -> RefsAt:
        out = cls()
        for r in refs:
            if r.version_id:
                out.by_version.setdefault(r.version_id, []).append(r)
        for rs in out.by_version.values():
            rs.sort(key=lambda r: ("channel", "branch", "tag").index(r.kind))
        return out

    def get(self, vid: str) -> list[Ref]:
        return self.by_version.get(vid, [])


@dataclass
class TimelineRow:
    move: RefMove
    old: int | None
    new: int | None
    gate: GateRun | None = None  # the run that cleared a promotion (newest before it)


def channel_timeline(moves: list[RefMove], numbers: dict[str, int]) -> list[TimelineRow]:
    """Every channel move, newest first, with version numbers."""
    rows = [TimelineRow(m, numbers.get(m.old or ""), numbers.get(m.new or ""))
            for m in moves if m.kind == "channel"]
    rows.sort(key=lambda r: r.move.id, reverse=True)
    return rows


def numeric_metrics(vs: Iterable[Version]) -> list[str]:
    """Metric names with a number in at least one version, most common first."""
    seen: dict[str, int] = {}
    for v in vs:
        for k, x in v.metrics.items():
            if isinstance(x, int | float) and not isinstance(x, bool):
                seen[k] = seen.get(k, 0) + 1
    return sorted(seen, key=lambda k: (-seen[k], k))


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys (lineage: git.commit, data.0.sha256, ...); nothing
    for an empty or absent value at the top (the page says "none")."""
    if not prefix and (d is None or d == [] or d == {}):
        return []
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k in sorted(d):
            out.extend(flatten(d[k], f"{prefix}{k}."))
        return out
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        out = []
        for i, x in enumerate(d):
            out.extend(flatten(x, f"{prefix}{i}."))
        return out
    return [(prefix.rstrip("."), d)]


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(x) < 1000 or unit == "TB":
            return f"{int(x)} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} PB"


@dataclass
class AuditCell:
    """An audit entry's before or after, as a person reads it: the version it names as
    vN (a link), other fields short; the whole value as JSON beside it."""

    number: int | None  # the version named by a "version" field, when known
    text: str  # the other fields, short
    full: str  # the whole value as JSON


HEX_ID = 64  # version ids, digests: shown by their first 12 characters


def audit_cell(value: Any, numbers: dict[str, int]) -> AuditCell | None:
    if value is None:
        return None
    full = json.dumps(value, sort_keys=True, default=str)
    if not isinstance(value, dict):
        return AuditCell(None, _short_value(value), full)
    number = None
    parts = []
    if isinstance(value.get("passed"), bool):  # a gate run: its verdict first, and why
        failed = value.get("failed") or []
        parts.append("passed" if value["passed"] else
                     "failed" + (": " + "; ".join(map(str, failed)) if failed else ""))
        value = {k: x for k, x in value.items() if k == "version"}
    for k in sorted(value):
        x = value[k]
        if k == "version" and isinstance(x, str) and x in numbers:
            number = numbers[x]
        elif k == "version" and x is None:
            parts.append("no version")
        elif k != "kind":  # the target column already says branch, channel or tag
            parts.append(f"{k} {_short_value(x)}")
    return AuditCell(number, ", ".join(parts), full)


def _short_value(x: Any) -> str:
    if isinstance(x, str):
        return x[:12] if len(x) >= HEX_ID else x
    if isinstance(x, list):
        return "[" + ", ".join(_short_value(i) for i in x) + "]"
    if x is None:
        return "-"
    return json.dumps(x, default=str) if isinstance(x, dict | bool) else str(x)
