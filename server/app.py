"""The Starlette application: routes, error handling and the services' lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import redis.exceptions
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from collab.errors import RoomUnavailable
from migrations.runner import migrate
from server import openapi
from server.background import BackgroundJobs
from server.database import DatabaseUnavailable
from server.endpoints import all_endpoints
from server.errors import ApiError, ServiceUnavailable, database_unavailable
from server.live import collab_ws
from server.ml import assist
from server.monitoring import events_ws
from server.routing import build_routes, error_response
from server.security_headers import SecurityHeaders
from server.services import Services
from server.settings import Settings
from server.version import app_version
from server.work.queue_state import rebuild_missing
from server.worker import start_models

log = logging.getLogger(__name__)

# The browser app: built in a checkout, or shipped inside the wheel (see setup.py).
CHECKOUT_CLIENT = Path(__file__).resolve().parent.parent / "client" / "dist"
PACKAGED_CLIENT = Path(__file__).resolve().parent / "webapp"
WELCOME_PAGE = Path(__file__).resolve().parent / "static" / "welcome.html"


def client_dir(settings: Settings) -> Path:
    """Where the browser app is: COLABEL_CLIENT_DIR, else the checkout's build, else the wheel's."""
    if settings.client_dir is not None:
        return settings.client_dir
    return CHECKOUT_CLIENT if (CHECKOUT_CLIENT / "index.html").exists() else PACKAGED_CLIENT


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail), "details": None}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _database_unavailable(conn: HTTPConnection, exc: Exception) -> Response:
    # A WebSocket handshake gets the same answer as a denial response.
    log.warning("database unavailable on %s: %s", conn.url.path, exc)
    settings: Settings = conn.app.state.settings
    return error_response(database_unavailable(settings.db_timeout_s))


async def _engine_down(request: Request, exc: Exception) -> Response:
    """Redis or Postgres cannot be reached (or a live document cannot be loaded for that
    reason): a clear 503 to retry, not an internal error."""
    engine = ("Redis" if isinstance(exc, redis.exceptions.RedisError) else
              "the document store" if isinstance(exc, RoomUnavailable) else "the database")
    log.warning("%s %s: %s unavailable: %s", request.method, request.url.path, engine, exc)
    response = error_response(ServiceUnavailable(f"{engine} is unavailable right now; try again "
                                                 "in a moment"))
    response.headers["Retry-After"] = "2"
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"code": "internal", "message": "internal server error", "details": None}},
        status_code=500,
    )


def _client_routes(client_dist: Path) -> list[BaseRoute]:
    if (client_dist / "index.html").exists():
        return [Mount("/", StaticFiles(directory=client_dist, html=True), name="client")]

    # Until the browser app is built: a sign-in page that lists your projects (its script
    # and styles in files of their own: the Content-Security-Policy allows no inline ones).
    page = WELCOME_PAGE.read_text()
    assets = {name: (WELCOME_PAGE.with_name(name).read_text(), kind)
              for name, kind in (("welcome.js", "text/javascript"), ("welcome.css", "text/css"))}

    async def welcome(request: Request) -> Response:
        return Response(page, media_type="text/html")

    def asset(name: str) -> Route:
        text, kind = assets[name]

        async def serve(request: Request) -> Response:
            return Response(text, media_type=kind)

        return Route(f"/{name}", serve)

    return [Route("/", welcome), *(asset(name) for name in assets)]


def _lifespan(settings: Settings) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.database_url
        applied = await migrate(settings.database_url)
        if applied:
            log.info("migrated: %s", ", ".join(applied))
        services = await Services.open(settings)
        app.state.services = services
        await services.start()
        # Redis may have lost everything while we were down; Postgres has the truth.
        rebuilding = asyncio.create_task(rebuild_missing(services.dispatcher, services.db))
        # Serving processes leave background work to `colabel worker` processes (the ones
        # `colabel serve` starts, or a service of their own); an app built with
        # background_jobs runs it itself.
        jobs = BackgroundJobs(services, await start_models(services) if settings.background_jobs else [])
        if settings.background_jobs:
            await jobs.start()
        else:
            services.models_elsewhere = assist.service_unavailable(settings) is None
        try:
            yield
        finally:
            rebuilding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rebuilding
            await jobs.stop()
            if services.models is not None:
                with contextlib.suppress(Exception):
                    await services.models.shutdown()
            await services.close()

    return lifespan


_EXCEPTION_HANDLERS: dict[Any, Callable[..., Awaitable[Response]]] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    DatabaseUnavailable: _database_unavailable,
    redis.exceptions.ConnectionError: _engine_down,
    redis.exceptions.TimeoutError: _engine_down,
    asyncpg.PostgresConnectionError: _engine_down,
    asyncpg.CannotConnectNowError: _engine_down,
    RoomUnavailable: _engine_down,
    Exception: _unexpected,
}


def app_from_environment() -> Starlette:
    """The app of a worker process of `colabel serve --workers N` (its settings, engines
    included, come from the environment the serving process wrote)."""
    from server.cli import configure_logging

    configure_logging()
    return create_app(replace(Settings.from_env().with_secret(), background_jobs=False))


def create_app(settings: Settings, client_dist: Path | None = None) -> Starlette:
    """Build the app; URLs in `settings` must already point at running Postgres and Redis."""
    endpoints = all_endpoints()
    # Pillow's bomb guard is process-wide; it follows the configured limit (media.py turns
    # its warning into a clear 422, and also checks sizes before any decode).
    Image.MAX_IMAGE_PIXELS = settings.media_max_pixels
    app = Starlette(
        routes=[*build_routes(endpoints), *collab_ws.ROUTES, *events_ws.ROUTES,
                *_client_routes(client_dist or client_dir(settings))],
        lifespan=_lifespan(settings),
        exception_handlers=_EXCEPTION_HANDLERS,
    )
    # Every response carries them but the last-resort 500 of an unhandled error (JSON, so
    # nothing a browser would render or frame).
    app.add_middleware(SecurityHeaders)
    app.state.settings = settings
    app.state.openapi = openapi.document(endpoints, app_version())
    return app


__all__ = ["create_app"]
