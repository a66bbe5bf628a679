"""docs/huggingface.md lists every Hub endpoint with its status, checked against the
server's routes; the refused ones are refused by a real server with a message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from modelvc.server.hf import router

from .conftest import Hub

DOC = Path(__file__).parents[2] / "docs" / "huggingface.md"
STATUSES = ("supported", "answered as the Hub does", "refused")
SAMPLE = {"repo": "acme/tiny-bert", "rev": "main", "path": "config.json",
          "branch": "nope", "tag": "gold"}


def _rows() -> list[tuple[list[str], str, str]]:
    text = DOC.read_text()
    table = next(b for b in text[text.index("## Endpoints"):].split("\n\n")
                 if b.startswith("|"))
    rows = []
    for line in table.splitlines()[2:]:
        method, path, status, _ = [c.strip() for c in line.strip("|").split("|", 3)]
        rows.append((method.split(", "), path, status))
    return rows


def _routes(routes: list[Any]) -> Iterator[Any]:
    for r in routes:
        if hasattr(r, "original_router"):  # an included router
            yield from _routes(r.original_router.routes)
        else:
            yield r


def _concrete(path: str, repo: str = "acme/tiny-bert") -> str:
    sample = SAMPLE | {"repo": repo}
    return re.sub(r"\{(\w+)\}", lambda m: sample[m.group(1)], path.split("?")[0])


def _matches(method: str, url: str) -> list[Any]:
    return [r for r in _routes(router.routes)
            if method in r.methods and r.path_regex.match(url)]


def test_every_route_is_documented_with_a_status() -> None:
    rows = _rows()
    assert {status for _, _, status in rows} <= set(STATUSES)
    for methods, path, status in rows:
        if status != "refused":
            for m in methods:
                assert _matches(m, _concrete(path)), (m, path)
    # every route serves at least one documented endpoint
    documented = [(m, _concrete(p, repo)) for methods, p, _ in rows for m in methods
                  for repo in ("acme/tiny-bert", "digits")]  # ids of two and one segment
    for r in _routes(router.routes):
        hits = [(m, u) for m, u in documented if m in r.methods and r.path_regex.match(u)]
        assert hits, f"{sorted(r.methods)} {r.path} is not in docs/huggingface.md"


def test_refused_endpoints_are_refused_with_a_message(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.token}"}
    for methods, path, status in _rows():
        if status != "refused":
            continue
        for m in methods:
            r = httpx.request(m, hub.url + _concrete(path), headers=auth, json={})
            assert 400 <= r.status_code < 500, (m, path, r.status_code)
            assert r.headers.get("x-error-code") != "RepoNotFound", (m, path)
