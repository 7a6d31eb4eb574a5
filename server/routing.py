"""Declarative endpoints: one description per route drives dispatch, auth and OpenAPI.

Each API module lists its `Endpoint`s; `build_routes` turns them into Starlette routes
whose wrapper authenticates the caller, checks CSRF, validates the body and shapes the
response. The same list feeds `openapi.py`, so the document covers every route.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from server.accounts import auth, csrf
from server.accounts.users import User
from server.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    field_error,
)
from server.validation import INT64_MAX, MAX_JSON_DEPTH, check_json, unprocessable_from

if TYPE_CHECKING:
    from server.services import Services

MAX_JSON_BODY = 2 * 1024 * 1024


class Access(enum.Enum):
    PUBLIC = "public"      # anyone, signed in or not
    USER = "user"          # any signed-in user (project routes check membership inside)
    ADMIN = "admin"        # instance admins only


@dataclass
class Call:
    """What a handler gets: the request, the services, the caller and the parsed body."""

    request: Request
    services: Services
    identity: auth.Identity
    body: Any

    @property
    def user(self) -> User | None:
        return self.identity.user

    @property
    def via_token(self) -> bool:
        return self.identity.via_token

    @property
    def me(self) -> User:
        assert self.user is not None, "only for endpoints that require a user"
        return self.user

    def query_int(self, name: str, default: int, low: int = 0, high: int = INT64_MAX,
                  what: str = "a whole number") -> int:
        """An integer query parameter within low..high; 422 naming it otherwise."""
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise field_error(name, f"must be {what} from {low} to {high}")
        return value

    def page(self, default: int = 100, most: int = 1000) -> tuple[int, int]:
        """`limit` (clamped to 1..most) and `offset` (negative means 0) from the query string."""
        lowest = -INT64_MAX - 1
        limit = min(max(self.query_int("limit", default, lowest), 1), most)
        return limit, max(self.query_int("offset", 0, lowest), 0)

    def after(self) -> int:
        """The `after` cursor (an id) of a keyset-paged listing; 0 from the start."""
        return self.query_int("after", 0, what="an item id")

    def path_int(self, name: str) -> int:
        value: int = self.request.path_params[name]
        return value


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = Access.USER
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    tag: str = ""
    # Statuses this route can answer besides the happy one, for the OpenAPI document.
    errors: tuple[int, ...] = field(default=())
    # A multipart/form-data body, as the JSON Schema of its fields (files: format binary).
    form: dict[str, Any] | None = None
    # False: the caller's credentials are never read (health checks and the OpenAPI
    # document must answer whatever state the database is in, whatever the headers).
    identify: bool = True
    # The API resource the route belongs to, which names its OpenAPI operation
    # (`<method>_<resource>_<handler>`); set by server/endpoints.py.
    resource: str = ""

    def __post_init__(self) -> None:
        assert self.identify or self.access is Access.PUBLIC, "only public routes skip identity"


async def _read_body(request: Request, model: type[BaseModel]) -> BaseModel:
    too_large = PayloadTooLarge(f"request body is larger than {MAX_JSON_BODY} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest(f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                         code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    check_json(data)
    try:
        # Strict: JSON types are what the document says (0 is not false, "1" is not 1).
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise unprocessable_from(exc) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float | int:
    """A JSON number with a fraction or exponent. One with an integral value is an integer
    to JSON Schema (1.0 is 1), and becomes one for the strict validation that follows."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return int(value) if value.is_integer() and abs(value) <= 2**53 else value


def _check_address(request: Request) -> None:
    """Path and query values that no handler can use are refused before any runs: an id
    beyond 64 bits names nothing (404), a NUL cannot be stored or looked up (404 in the
    path, 422 in the query)."""
    for name, value in request.path_params.items():
        if (isinstance(value, int) and not 0 <= value <= INT64_MAX) or (
                isinstance(value, str) and "\x00" in value):
            raise NotFound(f"no such {name.removesuffix('id') or name}: {str(value)[:40]!r}")
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise field_error(name.replace("\x00", "?"), "contains a NUL character", code="nul_character")


def _respond(result: Any, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status_code=204)
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return JSONResponse(result, status_code=status)


def _wrap(ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        _check_address(request)
        services: Services = request.app.state.services
        identity = await auth.identify(services, request) if ep.identify else auth.Identity(None)
        if ep.access is not Access.PUBLIC and identity.user is None:
            raise Unauthorized("sign in or send an API token")
        if identity.via_cookie:
            csrf.check(services.settings, request)
        if ep.access is Access.ADMIN and not (identity.user and identity.user.is_admin):
            raise Forbidden("this needs an instance admin")
        body = await _read_body(request, ep.body) if ep.body is not None else None
        call = Call(request, services, identity, body)
        return _respond(await ep.handler(call), ep.status)

    endpoint.__name__ = ep.handler.__name__
    return endpoint


def build_routes(endpoints: list[Endpoint]) -> list[Route]:
    """Group endpoints by path so one Starlette route answers all its methods."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in endpoints:
        methods = by_path.setdefault(ep.path, {})
        assert ep.method not in methods, f"duplicate endpoint {ep.method} {ep.path}"
        methods[ep.method] = ep
    routes = []
    for path, methods in by_path.items():
        handlers = {m: _wrap(ep) for m, ep in methods.items()}

        def make(handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> Any:
            async def dispatch(request: Request) -> Response:
                method = "GET" if request.method == "HEAD" else request.method
                return await handlers[method](request)

            return dispatch

        routes.append(Route(path, make(handlers), methods=list(methods)))
    return [*routes, _api_fallback(routes)]


def _api_fallback(routes: list[Route]) -> Route:
    """Every other address under /api/ answers the API's own JSON 404 (or 405 where the
    path exists for other methods), not the browser app's static files: `/projects/abc`
    is a missing resource, whatever method asks for it."""

    async def fallback(request: Request) -> Response:
        allowed = sorted({m for r in routes if r.matches(request.scope)[0] is Match.PARTIAL
                          for m in r.methods or ()})
        if allowed:
            raise HTTPException(405, headers={"Allow": ", ".join(allowed)})
        raise NotFound(f"no such API address: {request.method} {request.url.path[:200]}")

    return Route("/api/{rest:path}", fallback,
                 methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])


def error_response(exc: ApiError) -> JSONResponse:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
