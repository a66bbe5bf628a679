"""The lineage graph: lanes like `git log --graph`, drawn as SVG with a link per version.

Rows are versions, newest at the top. A version continues its first parent's lane when
it is that parent's first child; other children (branches, derived exports) open a lane
that has been free since below the parent's row, so no edge runs over another version.
A lane frees above a version with no children left to place. Merges draw a second edge.
A derived version (lineage `derived_from`, docs/derive.md) hangs off its source: that edge
is dashed and the version's label says `RECIPE of vN` (also in its accessible name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup

from ..records import Ref, Version
from .views import derivation, derivation_text

ROW = 24
LANE = 16
PAD = 12
COLORS = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4d7c0f",
          "#be185d")
KIND_CLASS = {"channel": "ref-channel", "branch": "ref-branch", "tag": "ref-tag"}


@dataclass(frozen=True)
class Node:
    v: Version
    row: int
    lane: int


@dataclass
class Layout:
    nodes: list[Node]  # newest first (row 0 at the top)
    lanes: int
    edges: list[tuple[Node, Node | None, bool]]  # (child, parent or None: outside), merge
    # (derived, its source or None: outside the window, recipe text); the edge is dashed
    derived: list[tuple[Node, Node | None, str]] = field(default_factory=list)

    def derived_pairs(self) -> set[tuple[str, str]]:
        """(derived id, source id) of every derivation (its source id even if outside)."""
        return {(c.v.id, (derivation(c.v) or {}).get("version", "")) for c, _, _ in
                self.derived}


def layout(versions: Sequence[Version]) -> Layout:
    """Lanes for VERSIONS (any order; parents outside the set draw as stubs)."""
    vs = sorted(versions, key=lambda v: v.number)  # oldest first: parents come first
    n = len(vs)
    index = {v.id: i for i, v in enumerate(vs)}
    remaining = [0] * n
    for v in vs:
        for pid in v.parents:
            if pid in index:
                remaining[index[pid]] += 1
    row_of = [n - 1 - i for i in range(n)]  # oldest at the bottom
    lane_of = [0] * n
    tips: list[int | None] = []  # per lane: the version whose first child may continue it
    free_below: list[int] = []  # per lane: lowest row index above which the lane is free
    for i, v in enumerate(vs):
        p = index.get(v.parents[0]) if v.parents else None
        lane: int | None = None
        if p is not None and tips[lane_of[p]] == p:
            lane = lane_of[p]
        else:
            floor = row_of[p] if p is not None else n  # the edge runs down to the parent
            for k in range(len(tips)):
                if tips[k] is None and free_below[k] >= floor:
                    lane = k
                    break
            if lane is None:
                lane = len(tips)
                tips.append(None)
                free_below.append(n)
        lane_of[i] = lane
        tips[lane] = i
        for q in v.parents:
            j = index.get(q)
            if j is not None:
                remaining[j] -= 1
                if remaining[j] == 0 and tips[lane_of[j]] == j:
                    tips[lane_of[j]] = None
                    free_below[lane_of[j]] = row_of[j]
        if remaining[i] == 0:
            tips[lane] = None
            free_below[lane] = row_of[i]
    nodes = [Node(v, row_of[i], lane_of[i]) for i, v in enumerate(vs)]
    edges: list[tuple[Node, Node | None, bool]] = []
    for node in nodes:
        for k, q in enumerate(node.v.parents):
            j = index.get(q)
            edges.append((node, nodes[j] if j is not None else None, k > 0))
    derived: list[tuple[Node, Node | None, str]] = []
    for node in nodes:
        rec = derivation(node.v)
        if rec is not None:
            j = index.get(rec["version"])
            derived.append((node, nodes[j] if j is not None else None, derivation_text(rec)))
    nodes.reverse()
    return Layout(nodes, max(1, len(tips)), edges, derived)


def _x(lane: int) -> int:
    return PAD + lane * LANE


def _y(row: int) -> int:
    return PAD + row * ROW


def svg(lay: Layout, refs: Callable[[str], list[Ref]], href: Callable[[Version], str],
        *, title: str, width_text: int = 560) -> Markup:
    """The graph as inline SVG: one focusable link per version, labels for its refs."""
    text_x = _x(lay.lanes) + 8
    width = text_x + width_text
    height = _y(max(0, len(lay.nodes) - 1)) + ROW // 2 + PAD
    out = [f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="group" '
           f'aria-label="{escape(title)}">']
    out.append('<g class="edges" aria-hidden="true">')
    pairs = lay.derived_pairs()
    # A derivation whose source is no parent (a team's own tool) gets an edge of its own.
    extra = [(c, s, True) for c, s, _ in lay.derived
             if s is not None and s.v.id not in c.v.parents]
    for child, parent, merge in [*lay.edges, *extra]:
        cx, cy = _x(child.lane), _y(child.row)
        color = COLORS[(parent.lane if merge and parent else child.lane) % len(COLORS)]
        pid = parent.v.id if parent else (
            child.v.parents[0] if child.v.parents else "")
        cls = ' class="derived"' if (child.v.id, pid) in pairs else ""
        if parent is None:  # parent outside the window: a stub down
            out.append(f'<path d="M{cx},{cy}V{cy + ROW // 2}" stroke="{color}" '
                       f'class="stub{" derived" if cls else ""}"/>')
            continue
        px, py = _x(parent.lane), _y(parent.row)
        if px == cx:
            d = f"M{cx},{cy}V{py}"
        elif merge:  # over to the other line just below the child, then down its lane
            d = f"M{cx},{cy}L{px},{cy + ROW * 2 // 3}V{py}"
        else:  # down the child's lane to just above the parent, then across to it
            d = f"M{cx},{cy}V{py - ROW * 2 // 3}L{px},{py}"
        out.append(f'<path d="{d}" stroke="{color}"{cls}/>')
    out.append("</g>")
    number = {n.v.id: n.v.number for n in lay.nodes}
    marks: dict[str, tuple[str, str]] = {}
    for c, src, text in lay.derived:
        rec = derivation(c.v) or {}
        label = f"v{src.v.number}" if src else (
            f"v{number[rec['version']]}" if rec.get("version") in number
            else str(rec.get("version", ""))[:12])
        marks[c.v.id] = f"{text.split(' (')[0]} of {label}", f"derived from {label} by {text}"
    for node in lay.nodes:
        v = node.v
        x, y = _x(node.lane), _y(node.row)
        color = COLORS[node.lane % len(COLORS)]
        labels = refs(v.id)
        ref_txt = ", ".join(f"{r.kind} {r.name}" for r in labels)
        msg = v.message.splitlines()[0] if v.message else ""
        mark = marks.get(v.id)
        name = f"v{v.number} by {v.author}" + (f": {msg}" if msg else "") + (
            f" ({ref_txt})" if ref_txt else "") + (f", {mark[1]}" if mark else "")
        out.append(f'<a href="{escape(href(v))}" class="node" aria-label="{escape(name)}">'
                   f"<title>{escape(name)}</title>"
                   f'<circle cx="{x}" cy="{y}" r="5" fill="{color}"/>'
                   f'<rect x="0" y="{y - ROW // 2}" width="{width}" height="{ROW}" '
                   'class="hit"/>')
        tx = text_x
        out.append(f'<text x="{tx}" y="{y + 4}" class="num">v{v.number}</text>')
        tx += 8 * (len(str(v.number)) + 1) + 8
        for r in labels:
            w = 7 * len(r.name) + 10
            out.append(f'<rect x="{tx}" y="{y - 8}" width="{w}" height="16" rx="3" '
                       f'class="{KIND_CLASS[r.kind]}"/><text x="{tx + 5}" y="{y + 4}" '
                       f'class="ref">{escape(r.name)}</text>')
            tx += w + 4
        if mark:  # the recipe, in words beside the dashed edge (as log --graph marks it)
            out.append(f'<text x="{tx + 4}" y="{y + 4}" class="derived">'
                       f"[{escape(mark[0])}]</text>")
            tx += 7 * (len(mark[0]) + 2) + 8
        if msg:
            out.append(f'<text x="{tx + 4}" y="{y + 4}" class="msg">'
                       f"{escape(msg[:80])}</text>")
        out.append("</a>")
    out.append("</svg>")
    return Markup("".join(out))
