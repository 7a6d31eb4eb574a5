"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import JSONResponse, Response

from server.routing import Access, Call, Endpoint

READY_TIMEOUT_S = 2.0


async def healthz(call: Call) -> dict[str, Any]:
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, dict[str, Any]]:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT_S)
        return name, {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; say why
        return name, {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


async def readyz(call: Call) -> Response:
    services = call.services
    results = dict(await asyncio.gather(
        _check("postgres", services.db.fetchval("SELECT 1", timeout=READY_TIMEOUT_S)),
        _check("redis", services.redis.ping()),
    ))
    ready = all(r["ok"] for r in results.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status_code=200 if ready else 503,
    )


async def openapi(call: Call) -> dict[str, Any]:
    doc: dict[str, Any] = call.request.app.state.openapi
    return doc


ENDPOINTS = [
    Endpoint("GET", "/healthz", healthz, "The process is alive", access=Access.PUBLIC,
             tag="meta", identify=False),
    Endpoint("GET", "/readyz", readyz, "Postgres and Redis answer", access=Access.PUBLIC,
             tag="meta", errors=(503,), identify=False),
    Endpoint("GET", "/api/v1/openapi.json", openapi, "This document", access=Access.PUBLIC,
             tag="meta", identify=False),
]
