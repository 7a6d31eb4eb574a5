"""The OpenAPI 3.1 document, generated from the same Endpoint list that serves requests."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from server.routing import Access, Endpoint
from server.validation import INT64_MAX

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No content", 400: "Bad request",
    401: "Not signed in", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    413: "Payload too large", 415: "Unsupported media type", 422: "Invalid request",
    429: "Too many requests",
    503: "Unavailable",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


def _openapi_path(path: str) -> str:
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _implied_errors(ep: Endpoint) -> set[int]:
    """Answers every route of a kind can give, whatever its handler does: 401 unless public,
    404 for ids in the path (one beyond 64 bits names nothing), 400 and 422 for a body (not
    JSON; not what the schema allows), 413 and 415 for a multipart one, 503 for whatever
    reads the database (while Postgres is out of reach)."""
    out: set[int] = set() if ep.access is Access.PUBLIC else {401}
    if ep.identify:
        out.add(503)
    if _PARAM.search(ep.path):
        out.add(404)
    if ep.body is not None:
        out |= {400, 422}
    if ep.form is not None:
        out |= {400, 413, 415, 422}
    return out


# Any text but NUL (which nothing can store); with a minimum length, something besides
# whitespace too (request strings are stripped before their length is checked).
_TEXT = "^[^\x00]*$"
_SOME_TEXT = "^[^\x00]*[^\\s\x00][^\x00]*$"


def _tighten(node: Any) -> None:
    """Say in the schemas what every body is checked for beyond its model: integers are
    64-bit (Postgres bigint) and strings hold no NUL and are stripped."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("minimum", -INT64_MAX - 1)
            node.setdefault("maximum", INT64_MAX)
        if node.get("type") == "string" and "pattern" not in node and "format" not in node \
                and "enum" not in node and "const" not in node:
            node["pattern"] = _SOME_TEXT if node.get("minLength", 0) > 0 else _TEXT
        for value in node.values():
            _tighten(value)
    elif isinstance(node, list):
        for value in node:
            _tighten(value)


def _responses(ep: Endpoint) -> dict[str, Any]:
    """The answer on success, then every error the route can give, all in the one shape."""
    responses: dict[str, Any] = {
        str(ep.status): {"description": _STATUS_TEXT.get(ep.status, "OK")},
    }
    for status in sorted(_implied_errors(ep) | set(ep.errors)):
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}
            }},
        }
    return responses


def _request_body(ep: Endpoint) -> dict[str, Any] | None:
    if ep.body is not None:
        # A body whose fields all have defaults may be left out (it means `{}`).
        required = any(f.is_required() for f in ep.body.model_fields.values())
        return {
            "required": required,
            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}
            }},
        }
    if ep.form is not None:
        return {"required": True, "content": {"multipart/form-data": {"schema": ep.form}}}
    return None


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": f"{ep.method.lower()}_{ep.resource or ep.handler.__module__.rsplit('.', 1)[-1]}"
                       f"_{ep.handler.__name__}",
        "tags": [ep.tag] if ep.tag else [],
        "responses": _responses(ep),
        "x-access": ep.access.value,
    }
    if ep.access is Access.PUBLIC:
        op["security"] = []
    params = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "integer" if conv == "int" else "string"}}
        for name, conv in _PARAM.findall(ep.path)
    ]
    if params:
        op["parameters"] = params
    body = _request_body(ep)
    if body is not None:
        op["requestBody"] = body
    return op


def _schemas(endpoints: list[Endpoint]) -> dict[str, Any]:
    """Every request body's schema (and the models they use), plus the error shape."""
    models = {ep.body for ep in endpoints if ep.body is not None}
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(defs.get("$defs", {}))
    _tighten(schemas)
    schemas["Error"] = ERROR_SCHEMA
    return schemas


def document(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    """The whole document for these endpoints."""
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Colabel API", "version": version},
        "paths": paths,
        "components": {
            "schemas": _schemas(endpoints),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "colabel_session"},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}, {"token": []}],
    }
