"""The API schema (/openapi.json) documents every status a route can answer.

FastAPI lists 200 and 422 only; every route of this server can also refuse a request in
the guard (401 before the body, 413 over its cap, 408 when the body stalls), in auth
(403) or with a ModelvcError (its `http_status`: modelvc.errors). Those answers share
one JSON shape, documented once as `Error`; tests/campaign/test_schema.py fuzzes the
schema (schemathesis) and fails on any status the schema does not list.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "the error's type, e.g. RefNotFound"},
        "message": {"type": "string"},
        "hint": {"type": ["string", "null"], "description": "what to do about it"},
    },
}

# Every route (what each means is in docs/server.md and docs/security.md).
ERRORS = {
    "400": "bad input: an invalid name, ref, file or value (UsageError and kin)",
    "401": "no token, or an unknown, expired or revoked one",
    "403": "the token's subject lacks the role (or the version is untrusted)",
    "404": "no such model, version, ref, path or object (or one the caller may not read)",
    "408": "the request body stopped arriving (body_timeout)",
    "409": "a conflict: the ref moved, the name exists, a gate did not pass",
    "413": "the body is over the route's cap",
    "422": "the request does not match this schema",
    "500": "stored data is damaged (Corrupt, CorruptObject)",
    "507": "the object store or the disk failed or is full",
}


def document_errors(app: FastAPI) -> None:
    """Make app.openapi() list ERRORS on every operation (once, then cached)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                for code, why in ERRORS.items():
                    if code == "422" or code not in responses:  # 422: ours, not FastAPI's
                        responses[code] = {"description": why, "content": ref}
                if path == "/readyz":
                    responses.setdefault("503", {"description": "the database or the "
                                                 "object store does not answer"})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
