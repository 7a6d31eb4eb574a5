"""Errors the API raises; the edge turns each into `{"error": {code, message, details}}`."""

from __future__ import annotations

import math
from typing import Any


class ConfigError(Exception):
    """A setting has an unusable value."""


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a human message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    status = 422
    code = "validation_error"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


def database_unavailable(timeout_s: float) -> ServiceUnavailable:
    """What a client is told while Postgres is out of reach: try again after a deadline."""
    return ServiceUnavailable("the database is not answering right now; try again shortly",
                              code="database_unavailable", retry_after=max(1, math.ceil(timeout_s)))


def field_error(field: str, message: str, *, code: str = "validation_error") -> Unprocessable:
    """A 422 pointing at one field, shaped like the body-validation errors."""
    return Unprocessable(
        f"{field}: {message}", code=code, details=[{"loc": field.split("."), "msg": message}]
    )
