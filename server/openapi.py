"""The OpenAPI 3.1 document, generated from the same Endpoint list that serves requests."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from .routing import Access, Endpoint

_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No content", 400: "Bad request",
    401: "Not signed in", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    413: "Payload too large", 422: "Invalid request body", 429: "Too many requests",
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


def document(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    models = {ep.body for ep in endpoints if ep.body is not None}
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": f"{ep.method.lower()}_{ep.handler.__module__.rsplit('.', 1)[-1]}"
                           f"_{ep.handler.__name__}",
            "tags": [ep.tag] if ep.tag else [],
            "responses": {
                str(ep.status): {"description": _STATUS_TEXT.get(ep.status, "OK")},
            },
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
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}
                }},
            }
        # Whatever reads the database answers 503 while Postgres is out of reach.
        for status in sorted({*ep.errors, *((503,) if ep.identify else ())}):
            op["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}
                }},
            }
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = op
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "Colabel API", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "colabel_session"},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}, {"token": []}],
    }
