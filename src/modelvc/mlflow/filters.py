"""MLflow search filters, ordering and page tokens, over plain dicts.

A filter is `COND [AND COND]...`, a COND `KEY OP VALUE`: KEY an attribute (`name`,
`run_id`, `source_path`, `version_number`, ...; `attributes.` allowed before it) or
`tags.KEY` (backquotes allowed; where the caller says so, also `params.KEY` and
`metrics.KEY`), OP one of = != < <= > >= LIKE ILIKE IN NOT IN, VALUE a quoted string, a
number, or for IN a parenthesised list. What MLflow's SQL stores accept for registry
and logged-model searches.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<key>(?:tags|tag|attributes|attribute|params|param|metrics|metric)\.
            (?:`[^`]+`|[\w.\-]+)|`[^`]+`|[A-Za-z_][\w]*)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op>!=|<=|>=|=|<|>|\(|\)|,)
  )""", re.X)


class FilterError(ValueError):
    pass


Cond = tuple[str, str, Any]


_PLURAL = {"tag": "tags", "param": "params", "metric": "metrics"}


def parse(text: str | None, entities: Sequence[str] = ("tags",)) -> list[Cond]:
    """The conditions of FILTER (all must hold), or FilterError saying what is wrong.
    ENTITIES: the `PREFIX.KEY` kinds the search has (of tags, params, metrics)."""
    if not text or not text.strip():
        return []
    toks: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"invalid filter {text!r} at position {pos}")
        kind = m.lastgroup or ""
        toks.append((kind, m.group(kind)))
        pos = m.end()
    conds: list[Cond] = []
    i = 0

    def value(t: tuple[str, str]) -> Any:
        if t[0] == "str":
            return re.sub(r"\\(.)", r"\1", t[1][1:-1])
        if t[0] == "num":
            return t[1]
        raise FilterError(f"expected a quoted value in {text!r}, got {t[1]!r}")

    while i < len(toks):
        if len(toks) < i + 3 or toks[i][0] != "key":
            raise FilterError(f"invalid filter {text!r}: expected KEY OP VALUE")
        key = toks[i][1].replace("`", "")
        key = re.sub(r"^(attributes|attribute)\.", "", key)
        key = re.sub(r"^(tag|param|metric)\.", lambda m: _PLURAL[m.group(1)] + ".", key)
        kind = key.split(".", 1)[0] if "." in key else ""
        if kind in ("tags", "params", "metrics") and kind not in entities:
            raise FilterError(f"this search has no {kind}: {key!r} in {text!r} (it "
                              f"filters on attributes{''.join(', ' + e for e in entities)})")
        op_t = toks[i + 1]
        op = op_t[1].upper()
        if op_t[0] == "key" and op == "NOT" and i + 2 < len(toks) and \
                toks[i + 2][1].upper() == "IN":
            op, i = "NOT IN", i + 1
        elif op_t[0] == "key" and op in ("LIKE", "ILIKE", "IN"):
            pass
        elif op_t[0] != "op" or op in ("(", ")", ","):
            raise FilterError(f"invalid comparator {op_t[1]!r} in {text!r}")
        i += 2
        if op in ("IN", "NOT IN"):
            if i >= len(toks) or toks[i][1] != "(":
                raise FilterError(f"IN needs a parenthesised list in {text!r}")
            items, i = [], i + 1
            while i < len(toks) and toks[i][1] != ")":
                if toks[i][1] != ",":
                    items.append(value(toks[i]))
                i += 1
            conds.append((key, op, items))
            i += 1
        else:
            conds.append((key, op, value(toks[i])))
            i += 1
        if i < len(toks):
            if toks[i][0] != "key" or toks[i][1].upper() != "AND":
                raise FilterError(f"only AND joins conditions (in {text!r})")
            i += 1
    return conds


def _like(pattern: str, text: str, *, fold: bool) -> bool:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.S | (re.I if fold else 0)) is not None


def matches(conds: Sequence[Cond], row: dict[str, Any]) -> bool:
    """ROW: attribute -> value, and `tags` (`params`, `metrics`) -> {key: value}."""
    for key, op, want in conds:
        kind, _, sub = key.partition(".")
        have = row.get(kind, {}).get(sub) if sub and kind in ("tags", "params", "metrics") \
            else row.get(key)
        if have is None:  # MLflow's client adds `tag.`mlflow.prompt.is_prompt` != 'true'`
            if op in ("!=", "NOT IN"):
                continue
            return False
        if op in ("IN", "NOT IN"):
            if (str(have) in [str(w) for w in want]) != (op == "IN"):
                return False
            continue
        if op in ("LIKE", "ILIKE"):
            if not _like(str(want), str(have), fold=op == "ILIKE"):
                return False
            continue
        a: Any = have
        b: Any = want
        if isinstance(have, int | float):
            try:
                b = float(want)
            except ValueError as exc:
                raise FilterError(f"{key} compares with a number, not {want!r}") from exc
        else:
            a, b = str(have), str(want)
        ok = {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b,
              ">=": a >= b}[op]
        if not ok:
            return False
    return True


def order(rows: list[dict[str, Any]], order_by: Sequence[str] | None,
          default: Sequence[str]) -> list[dict[str, Any]]:
    """Sort by `KEY [ASC|DESC]` clauses, the last clause first (stable sorts)."""
    clauses = list(order_by or []) or list(default)
    for clause in reversed(clauses):
        parts = clause.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and
                                           parts[1].upper() not in ("ASC", "DESC")):
            raise FilterError(f"invalid order_by clause {clause!r}")
        key = parts[0].removeprefix("attributes.").removeprefix("attribute.")
        desc = len(parts) == 2 and parts[1].upper() == "DESC"
        rows = sorted(rows, key=_sort_key(key), reverse=desc)
    return rows


def _sort_key(key: str) -> Callable[[dict[str, Any]], Any]:
    def of(row: dict[str, Any]) -> Any:
        return (row.get(key) is None, row.get(key) or 0)
    return of


def page(rows: list[Any], max_results: Any, token: str | None, *, limit: int = 1000
         ) -> tuple[list[Any], str | None]:
    """One page of ROWS and the token of the next ('' or None: the last page)."""
    try:
        n = int(max_results) if max_results not in (None, "") else 100
    except (TypeError, ValueError) as exc:
        raise FilterError(f"max_results must be a number, not {max_results!r}") from exc
    if n < 1 or n > limit:
        raise FilterError(f"max_results must be between 1 and {limit}, got {n}")
    start = 0
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FilterError(f"invalid page_token {token!r}") from exc
    chunk = rows[start:start + n]
    more = start + n < len(rows)
    nxt = base64.urlsafe_b64encode(json.dumps({"offset": start + n}).encode()).decode() \
        if more else None
    return chunk, nxt
