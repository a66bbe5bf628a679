"""`modelvc log --graph`: lanes drawn as `git log --graph` draws them.

Versions come newest first; each lane waits for one version id. A version takes the lane
waiting for it (a new lane on the right if none: a branch tip). Its first parent continues
that lane, unless another lane already waits for the parent: then the two join at once
("|/", with "_" where the join passes under lanes in between). Extra parents (a merge)
open lanes to its right ("|\\"). Lanes are two characters wide, lines in the odd columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Node(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def parents(self) -> Sequence[str]: ...


def graph(versions: Sequence[Node]) -> list[tuple[str, Node | None]]:
    """(prefix, version) per line: a version's own line, or (connector, None)."""
    known = {v.id for v in versions}
    lanes: list[str] = []
    out: list[tuple[str, Node | None]] = []
    for v in versions:
        if v.id not in lanes:
            lanes.append(v.id)
        col = lanes.index(v.id)
        cells = ["|"] * len(lanes)
        cells[col] = "M" if len(v.parents) > 1 else "*"
        out.append((" ".join(cells) + " ", v))
        parents = [p for p in v.parents if p in known]
        if not parents:  # a root: its lane ends, lanes right of it move left
            out.extend(_close(lanes, col, None))
            continue
        first, *extra = parents
        if first in lanes:  # join the lane that already waits for the parent
            into = lanes.index(first)
            out.extend(_close(lanes, max(col, into), min(col, into)))
            lanes[min(col, into)] = first
        else:
            lanes[col] = first
        extra = [p for p in extra if p not in lanes]
        if extra:  # lanes right of col shift right to make room for the new ones
            grid = [" "] * (2 * (len(lanes) + len(extra)))
            for i in range(col + 1):
                grid[2 * i] = "|"
            for k in range(len(lanes) - col - 1 + len(extra)):
                grid[2 * col + 1 + 2 * k] = "\\"
            out.append(("".join(grid), None))
            lanes[col + 1:col + 1] = extra
    return [(prefix.rstrip() + (" " if v is not None else ""), v) for prefix, v in out]


def _close(lanes: list[str], gone: int, into: int | None) -> list[tuple[str, Node | None]]:
    """Remove lane GONE (joining lane INTO, or ending); the connector line, if any."""
    n = len(lanes)
    del lanes[gone]
    if gone == n - 1 and into is None:
        return []  # the rightmost lane just ends
    grid = [" "] * (2 * n)
    for i in range(n):
        if i < gone and i != into:
            grid[2 * i] = "|"
        elif i > gone:
            grid[2 * i - 1] = "/"  # moves one lane left
    if into is not None:
        grid[2 * into] = "|"
        grid[2 * gone - 1] = "/"
        for c in range(2 * into + 1, 2 * gone - 1):
            if grid[c] == " ":
                grid[c] = "_"
    return [("".join(grid), None)]
