"""Each page's context: registry calls and shaping, no HTTP and no HTML."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import ModelvcError, UsageError
from ..manifest import Manifest
from ..records import (
    AuditRecord,
    FileStorage,
    GateRun,
    Ref,
    RefMove,
    Version,
    previous_target,
)
from . import charts, graph
from .port import UIRegistry
from .views import (
    AuditCell,
    ModelData,
    RefsAt,
    TimelineRow,
    VersionsCache,
    audit_cell,
    channel_timeline,
    derivation,
    derivation_text,
    flatten,
    numeric_metrics,
)

GRAPH_DEFAULT = 200
GRAPH_MAX = 2000
CHARTS = 4
AUDIT_PAGE = 100


def vhref(base: str, v: Version) -> str:
    return f"{base}/m/{v.model}/v/{v.number}"


def parse_when(text: str) -> datetime:
    """A datetime-local value or ISO 8601; naive times are UTC."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UsageError(f"not a time: {text!r}",
                         hint="use ISO 8601, e.g. 2026-11-26T14:02 (UTC unless an offset "
                              "is given)") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def model_page(reg: UIRegistry, cache: VersionsCache, base: str, model: str, *,
               n: int = GRAPH_DEFAULT, before: int | None = None, at_channel: str = "",
               at_time: str = "", all_moves: bool = False) -> dict[str, Any]:
    data, refs = cache.get(reg, model)
    vs, numbers = data.live, data.numbers  # newest first
    n = max(10, min(GRAPH_MAX, n))
    window = [v for v in vs if before is None or v.number < before][:n]
    older = window[-1].number if len(window) == n and window[-1] != vs[-1] else None
    at_refs = RefsAt.of(refs)
    lay = graph.layout(window)
    title = (f"Lineage of {model}: {len(window)} versions"
             + (f" from v{window[-1].number} to v{window[0].number}" if window else ""))
    lineage_svg = graph.svg(lay, at_refs.get, lambda v: vhref(base, v), title=title)
    metrics = numeric_metrics(window)[:CHARTS]
    chart_list = [(m, charts.metric_chart(window, m, lambda v: vhref(base, v)))
                  for m in metrics]
    part = channels_part(reg, model, data, refs)
    channels, moves = part["channels"], part.pop("moves")
    timeline = _timeline(reg, model, [m for c in channels for m in moves[c.name]], numbers)
    at_result: dict[str, Any] | None = None
    if at_channel and at_time:
        when = parse_when(at_time).astimezone(UTC)  # shown as UTC whatever offset it had
        hit = reg.at(model, at_channel, when=when)
        at_result = {"channel": at_channel, "when": when, "version": hit}
    # Compare's default pair: the newest version and its parent (a fine-tune against its
    # base), not the two highest numbers, which may sit on unrelated branches.
    pick = [v.number for v in window[:2]]
    if window and window[0].parents and numbers.get(window[0].parents[0]) in {
            v.number for v in window[:12]}:
        pick = [window[0].number, numbers[window[0].parents[0]]]
    return {
        "compare_pick": pick,
        "model": model, "versions": vs, "window": window, "older": older, "n": n,
        "newest": vs[0] if vs else None, "lineage_svg": lineage_svg, "graph_title": title,
        "charts": chart_list, **part,
        "branches": sorted((r for r in refs if r.kind == "branch"), key=lambda r: r.name),
        "tags": sorted((r for r in refs if r.kind == "tag"), key=lambda r: r.name),
        "timeline": timeline if all_moves else timeline[:TIMELINE],
        "moves": len(timeline),
        "at_channel": at_channel, "at_time": at_time, "at_result": at_result,
        "raw": data.raw, "stored": data.stored,
    }


def channels_part(reg: UIRegistry, model: str, data: ModelData, refs: list[Ref]
                  ) -> dict[str, Any]:
    """The model page's Channels table (also served alone: the page polls it), from
    the model's cached versions and its refs (`VersionsCache.get`)."""
    channels = sorted((r for r in refs if r.kind == "channel"), key=lambda r: r.name)
    moves = {c.name: reg.history(model, name=c.name) for c in channels}
    return {"model": model, "channels": channels, "numbers": data.numbers, "moves": moves,
            "rollbacks": {c.name: _rollback_choices(moves[c.name], c.version_id,
                                                    data.numbers) for c in channels},
            "now": datetime.now(UTC), "every": CHANNELS_POLL_S}


CHANNELS_POLL_S = 5  # the Channels table refreshes this often on an open model page
TIMELINE = 50  # channel moves shown unless all are asked for (newest first)
TIMELINE_GATES = 20  # promotions whose clearing gate run is looked up (newest first)


@dataclass
class RollbackChoices:
    """What the rollback form of a channel offers: where a plain rollback goes (the
    registry's rule, so the form can say it before it asks) and the other versions the
    channel has served, newest first, to pick instead."""

    previous: int | None
    others: list[int]


def _rollback_choices(moves: list[RefMove], current: str | None, numbers: dict[str, int]
                      ) -> RollbackChoices:
    prev = previous_target(moves, current)
    served: list[int] = []
    for m in reversed(moves):
        n = numbers.get(m.new or "")
        if n is not None and m.new not in (current, prev) and n not in served:
            served.append(n)
    return RollbackChoices(numbers.get(prev or ""), served[:20])


def _timeline(reg: UIRegistry, model: str, moves: list[RefMove], numbers: dict[str, int]
              ) -> list[TimelineRow]:
    # Channels only: the whole history also holds a move per commit (10,000s).
    rows = channel_timeline(moves, numbers)
    if reg.gates.policy() is None:  # nothing was cleared by gates
        return rows
    runs: dict[tuple[str, str], list[GateRun]] = {}
    for row in [r for r in rows if r.move.action == "promote" and r.move.new][:TIMELINE_GATES]:
        key = (row.move.new or "", row.move.name)
        if key not in runs:
            runs[key] = reg.gates.runs(f"{model}@{key[0]}", channel=key[1])
        before = [g for g in runs[key] if g.at <= row.move.at]
        row.gate = before[-1] if before else None
    return rows


@dataclass
class FileRow:
    path: str
    format: str
    size: int
    tensors: int
    sha256: str
    stored: int  # bytes of its objects in the store
    codecs: dict[str, int]  # codec -> its stored bytes


def _files(m: Manifest, storage: list[FileStorage]) -> list[FileRow]:
    by_path = {s.path: s for s in storage}
    rows = []
    for f in m.files:
        s = by_path.get(f.path)
        rows.append(FileRow(f.path, f.format, f.size,
                            sum(1 for g in f.segments if g.tensor is not None), f.sha256,
                            s.stored_size if s else 0, s.codecs if s else {}))
    return rows


def version_page(reg: UIRegistry, cache: VersionsCache, base: str, model: str,
                 number: int) -> dict[str, Any]:
    ref = f"{model}@v{number}"
    v = reg.resolve(ref, deleted=True)
    data, all_refs = cache.get(reg, model)
    parents = [data.by_id.get(p) for p in v.parents]
    children = data.children.get(v.id, [])
    refs = [r for r in all_refs if r.version_id == v.id]
    files: list[FileRow] = []
    if v.deleted_at is None:
        at = f"{model}@{v.id}"
        files = _files(reg.manifest(at), reg.storage(at))
    lineage = v.lineage
    rec = derivation(v)
    derived_here = [DerivedRow(d.number, derivation_text(derivation(d) or {}))
                    for d in data.derived.get(v.id, [])]
    return {
        "model": model, "v": v, "parents": parents, "parent_ids": v.parents,
        "children": children, "refs": refs,
        "channels_here": [r for r in refs if r.kind == "channel"],
        # the promote form's suggestions: every channel of the model, where it is now
        "model_channels": sorted((r.name, data.numbers.get(r.version_id or ""))
                                 for r in all_refs if r.kind == "channel"),
        "files": files, "params": flatten(v.params), "metrics": flatten(v.metrics),
        "git": flatten(lineage.get("git", {})), "data": flatten(lineage.get("data", [])),
        "env": flatten({k: x for k, x in lineage.items()
                        if k not in ("git", "data", "derived_from")}),
        # The record without its per-tensor stats (hundreds of rows for a transformer).
        "derivation": flatten({k: ({n: x for n, x in val.items() if n != "per_tensor"}
                                   if k == "stats" and isinstance(val, dict)
                                   # the source by number (the id is on its own page)
                                   else f"v{data.numbers[val]}" if k == "version"
                                   and val in data.numbers else val)
                               for k, val in (lineage.get("derived_from") or {}).items()}
                              if isinstance(lineage.get("derived_from"), dict) else []),
        "raw": v.raw_size, "stored": v.stored_size, "numbers": data.numbers,
        "derived_from": rec, "derived_text": derivation_text(rec) if rec else "",
        "derived_source": data.by_id.get(rec["version"]) if rec else None,
        "derived_here": derived_here,
    }


@dataclass
class DerivedRow:
    number: int
    text: str  # recipe (params)


@dataclass
class HeatCell:
    status: str  # same | changed | added | removed | reshaped | retyped
    rel: float | None
    frac: float | None

    @property
    def level(self) -> int:
        """0..9 for the CSS class: log10 of the relative change from 1e-6 to 1."""
        if self.status == "same":
            return 0
        if self.rel is None or not math.isfinite(self.rel):
            return 1 if self.status == "changed" and self.rel is None else 9
        if self.rel <= 0:
            return 1
        return max(1, min(9, round((math.log10(self.rel) + 6) * 1.5) + 1))

    @property
    def text(self) -> str:
        if self.status == "same":
            return "same"
        if self.status != "changed" or self.rel is None:
            return self.status
        if not math.isfinite(self.rel):
            return "from zero"
        return f"{self.rel:.2g}"


def compare_page(reg: UIRegistry, base: str, refs: list[str]) -> dict[str, Any]:
    if len(refs) < 2:
        raise UsageError("compare needs two or more versions",
                         hint="pick versions on a model page, or add ?r=MODEL@vN&r=MODEL@vM")
    vs = [reg.resolve(r) for r in refs]
    manifests = [reg.manifest(f"{v.model}@{v.id}") for v in vs]
    tags: list[list[str]] = []
    ref_cache: dict[str, list[Ref]] = {}
    for v in vs:
        if v.model not in ref_cache:
            ref_cache[v.model] = reg.refs(v.model)
        tags.append(sorted(f"{r.kind}:{r.name}" for r in ref_cache[v.model]
                           if r.version_id == v.id))
    keys_p = sorted({k for v in vs for k, _ in flatten(v.params)})
    keys_m = sorted({k for v in vs for k, _ in flatten(v.metrics)})
    flat_p = [dict(flatten(v.params)) for v in vs]
    flat_m = [dict(flatten(v.metrics)) for v in vs]
    params = [_row(k, [f.get(k) for f in flat_p]) for k in keys_p]
    metrics = [_row(k, [f.get(k) for f in flat_m]) for k in keys_m]
    paths = sorted({f.path for m in manifests for f in m.files})
    files = [(p, [next(((f.size, f.sha256) for f in m.files if f.path == p), None)
                  for m in manifests]) for p in paths]
    # Heatmap: each version against the one before it in the list.
    names: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for m in manifests:
        for k in m.tensor_index():
            if k not in seen:
                seen.add(k)
                names.append(k)
    columns: list[dict[tuple[str, str], HeatCell]] = []
    errors: list[str] = []
    for a, b in itertools.pairwise(vs):
        col: dict[tuple[str, str], HeatCell] = {}
        try:
            d = reg.diff(f"{a.model}@{a.id}", f"{b.model}@{b.id}")
        except ModelvcError as exc:
            errors.append(f"v{a.number} -> v{b.number}: {exc.message}")
            columns.append(col)
            continue
        for t in d.tensors:
            col[(t.file, t.name)] = HeatCell(t.status, t.rel_l2, t.changed_fraction)
        columns.append(col)
    heat = [(k, [c.get(k, HeatCell("same", 0.0, 0.0)) for c in columns]) for k in names]
    legend = [(f"{x:g}", HeatCell("changed", x, None).level) for x in HEAT_LEGEND]
    return {"vs": vs, "refs": refs, "tags": tags, "params": params, "metrics": metrics,
            "files": files, "heat": heat, "pairs": list(itertools.pairwise(vs)),
            "errors": errors, "legend": legend, "model": vs[0].model}


HEAT_LEGEND = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the heatmap's scale, shown


@dataclass
class CompareRow:
    key: str
    values: list[Any]
    differs: bool


def _row(key: str, values: list[Any]) -> CompareRow:
    # Compared as JSON text: values may be lists or dicts (hidden: [128, 64]), and 1,
    # 1.0 and True, or "SGD" and "sgd", are different settings.
    texts = {json.dumps(x, sort_keys=True, default=str) for x in values}
    return CompareRow(key, values, len(texts) > 1)


@dataclass
class AuditRow:
    r: AuditRecord
    before: AuditCell | None
    after: AuditCell | None


def audit_page(reg: UIRegistry, cache: VersionsCache, *, model: str = "", actor: str = "",
               action: str = "", since: str = "", until: str = "",
               before: int | None = None, after: int | None = None,
               verify: bool = True) -> dict[str, Any]:
    """AUDIT_PAGE entries, newest first: the newest, those older than entry BEFORE or
    those newer than entry AFTER. The registry pages (by entry id), not this."""
    flt: dict[str, Any] = {
        "model": model or None, "actor": actor or None, "action": action or None,
        "since": parse_when(since) if since else None,
        "until": parse_when(until) if until else None}
    if after is not None:
        rows = reg.audit(**flt, after=after, limit=AUDIT_PAGE + 1)
        newer = len(rows) > AUDIT_PAGE
        rows = rows[:AUDIT_PAGE]
        older = bool(rows) and bool(reg.audit(**flt, before=rows[0].id, limit=1,
                                              newest=True))
    else:
        rows = reg.audit(**flt, before=before, limit=AUDIT_PAGE + 1, newest=True)
        older = len(rows) > AUDIT_PAGE
        rows = rows[-AUDIT_PAGE:]
        newer = before is not None and bool(rows) and bool(
            reg.audit(**flt, after=rows[-1].id, limit=1))
    rows.reverse()  # newest first
    numbers: dict[str, dict[str, int]] = {}
    for m in {r.model for r in rows if r.model}:
        try:
            numbers[m] = cache.get(reg, m)[0].numbers
        except ModelvcError:  # a model deleted since: its ids stay ids
            numbers[m] = {}
    shown = [AuditRow(r, audit_cell(r.before, numbers.get(r.model or "", {})),
                      audit_cell(r.after, numbers.get(r.model or "", {}))) for r in rows]
    problems: list[str] | None = None
    if verify:
        problems = reg.verify_audit()
    return {"rows": shown, "older": older, "newer": newer, "per_page": AUDIT_PAGE,
            "model": model, "actor": actor, "action": action, "since": since,
            "until": until, "problems": problems,
            "actions": sorted({r.action for r in rows} | ({action} if action else set()))}
