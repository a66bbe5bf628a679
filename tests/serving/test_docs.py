"""docs/serving.md lists every endpoint with its status, checked against the route table
of the REST app and the gRPC service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.routing import Route

from modelvc.serving.app import build_app
from modelvc.serving.oipgrpc.messages import METHODS

DOC = Path(__file__).parents[2] / "docs" / "serving.md"


def _rows(header: str) -> list[list[str]]:
    text = DOC.read_text()
    table = next(b for b in text[text.index(header):].split("\n\n") if b.startswith("|"))
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()[2:]]


def test_rest_table_is_the_route_table() -> None:
    app = build_app(None)  # type: ignore[arg-type]  # the routes only, never served
    routes: set[tuple[str, str]] = set()
    for r in app.routes:
        assert isinstance(r, Route)
        for m in (r.methods or set()) - {"HEAD"}:
            routes.add((m, r.path))
    documented: set[tuple[str, str]] = set()
    refused: list[tuple[str, str]] = []
    for method, path, status, _ in _rows("## REST endpoints"):
        assert status in ("supported", "refused"), (method, path, status)
        for m in method.split(", "):
            (documented.add if status == "supported" else refused.append)((m, path))
    assert documented == routes
    for m, path in refused:  # no route serves them: they answer the JSON 404
        concrete = re.sub(r"\{\w+\}", "x", path.replace("...", "status"))
        matched: list[Any] = [r for r in app.routes if isinstance(r, Route)
                              and r.path_regex.match(concrete)]
        assert matched == [], (m, path)


def test_grpc_table_is_the_service() -> None:
    import tritonclient.grpc.service_pb2 as triton

    rows = _rows("## gRPC")
    supported = {rpc for rpc, status, _ in rows if status == "supported"}
    assert supported == set(METHODS)
    assert all(status in ("supported", "refused") for _, status, _ in rows)
    # every call of Triton's service is listed, one way or the other
    service = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {rpc for rpc, _, _ in rows} == {m.name for m in service.methods}
